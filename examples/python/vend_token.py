#!/usr/bin/env python3
"""Get an access token from the token vendor from Python, with botocore only.

For services not written in TypeScript: what the TypeScript client (client/) does, in one file.

1. Make the identity proof (docs/identity-proof.md, version 1): an sts:GetCallerIdentity
   request presigned with your AWS credentials for 60 s, signing two headers the vendor supplies
   itself (the deployment's server id and a hash of this audience, scope and organization), sent as
   ``tvp1.`` + base64url(presigned URL). The same construction as ``aws eks get-token``
   (botocore's presigned GetCallerIdentity with a signed ``x-k8s-aws-id`` header).
2. POST {endpoint}/token with the JSON body, SigV4-signed for API Gateway (service
   ``execute-api``), with the proof in ``X-Token-Vendor-Proof``.

Usage (prints only the token, so ``TOKEN=$(python3 vend_token.py ...)`` works)::

    python3 vend_token.py --audience https://orders.example.com --scope read:orders \\
        --endpoint https://abc123.execute-api.eu-west-1.amazonaws.com/prod \\
        --region eu-west-1 --server-id token-vendor-prod-eu-west-1

``--organization ORG`` (``organization=`` in ``vend_token()``) asks for a token of that Auth0
organization (its ``org_...`` id or its name, as your grant names it); without it the token has none.

Every option but --audience, --scope and --organization may come from the environment instead:
TOKEN_VENDOR_ENDPOINT, AWS_REGION (or AWS_DEFAULT_REGION), TOKEN_VENDOR_SERVER_ID (the
deployment's proof server id, ``token-vendor-<stage>`` by default) and, for a local stack only,
TOKEN_VENDOR_STS_ENDPOINT. Credentials come from botocore's default chain (environment, profile,
SSO, container or instance role).

In a long-running service, call ``vend_token()`` and keep the token until shortly before
``expires_in`` runs out: one request per token lifetime, as the TypeScript client does.

Exit status: 0 a token was printed; 1 no token (the reason on stderr); 2 bad usage. Never prints
a credential, a signature or the proof.
"""

import argparse
import base64
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlsplit

import botocore.session
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest

PROOF_PREFIX = "tvp1."
PROOF_HEADER = "X-Token-Vendor-Proof"
SERVER_ID_HEADER = "x-token-vendor-server-id"
REQUEST_HEADER = "x-token-vendor-request"
# The vendor refuses a proof that signs anything else (docs/identity-proof.md, check 5).
PROOF_SIGNED_HEADERS = "host;x-token-vendor-request;x-token-vendor-server-id"
# aws-iam-authenticator presigns for 60 s too; the vendor accepts at most 300 s whatever this says.
PROOF_EXPIRES_SECONDS = 60
# The TypeScript client's rule (client/organization.ts): no Auth0 organization id or name is longer.
MAX_ORGANIZATION_LENGTH = 100


class VendError(Exception):
    """The vendor (or the way to it) refused or failed; ``code`` is its OAuth error."""

    def __init__(self, message, status=0, code="http_error", retry_after=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after


def normalize_scope(scope):
    """Split on spaces, drop duplicates, sort by code point (what the vendor hashes)."""
    return " ".join(sorted({token for token in (scope or "").split(" ") if token}))


def request_binding(audience, scope, organization=None):
    """x-token-vendor-request: hex SHA-256 of ``tvp1\\n<audience>\\n<normalized scope>``.

    ``\\n<organization>`` is appended only when the request names an Auth0 organization, so a
    request without one binds exactly as before (docs/identity-proof.md).
    """
    text = f"tvp1\n{audience}\n{normalize_scope(scope)}" + (f"\n{organization}" if organization is not None else "")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def organization_problem(organization):
    """Why ``organization`` cannot name an organization, or None (the TypeScript client's rule)."""
    if not isinstance(organization, str) or not organization.strip():
        return "organization must be a non-empty string"
    # Counted as JavaScript counts (UTF-16 code units), so both clients refuse the same values.
    if len(organization.encode("utf-16-le")) // 2 > MAX_ORGANIZATION_LENGTH:
        return f"organization must be at most {MAX_ORGANIZATION_LENGTH} characters"
    # Unicode Cc (C0, DEL, C1): a newline would make the binding text ambiguous.
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in organization):
        return "organization must not contain control characters"
    return None


def sts_origin(region):
    """The regional STS endpoint the vendor accepts (``.amazonaws.com.cn`` in China)."""
    return f"https://sts.{region}.amazonaws.com{'.cn' if region.startswith('cn-') else ''}"


def make_proof(credentials, region, server_id, audience, scope=None, sts_endpoint=None, organization=None):
    """The identity proof for one request: ``tvp1.`` + base64url(presigned GetCallerIdentity URL).

    ``sts_endpoint`` (a loopback ``http://127.0.0.1:PORT``) is only for a local stack whose vendor
    has the same STS_ENDPOINT; the credential scope stays ``region`` either way. ``organization``
    must be the one the request body names (None for none).
    """
    origin = (sts_endpoint or sts_origin(region)).rstrip("/")
    request = AWSRequest(
        method="GET",
        url=f"{origin}/?Action=GetCallerIdentity&Version=2011-06-15",
        # Signed, never sent: the vendor sends its own values for both when it calls STS.
        headers={SERVER_ID_HEADER: server_id, REQUEST_HEADER: request_binding(audience, scope, organization)},
    )
    SigV4QueryAuth(credentials, "sts", region, expires=PROOF_EXPIRES_SECONDS).add_auth(request)
    signed = parse_qs(urlsplit(request.url).query).get("X-Amz-SignedHeaders")
    if signed != [PROOF_SIGNED_HEADERS]:
        # A botocore that signed other headers would make proofs every vendor refuses: say so here.
        raise RuntimeError(f"botocore signed {signed}, not {PROOF_SIGNED_HEADERS}")
    # RFC 4648 section 5, without padding.
    return PROOF_PREFIX + base64.urlsafe_b64encode(request.url.encode("utf-8")).decode("ascii").rstrip("=")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would resend the signed request elsewhere; API Gateway never sends one."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def vend_token(audience, scope=None, *, endpoint, region, server_id, organization=None, sts_endpoint=None, credentials=None, timeout=10):
    """POST {endpoint}/token with a fresh proof; returns the token response as a dict.

    ``organization``: the Auth0 organization (``org_...`` id or name) the token is for; None for a
    token without organization.

    Raises VendError for a refusal (``code`` is the vendor's OAuth error, e.g. access_denied) or
    when the vendor cannot be reached; ValueError for an organization no request may name.
    """
    if organization is not None and organization_problem(organization):
        raise ValueError(organization_problem(organization))
    if credentials is None:
        found = botocore.session.get_session().get_credentials()
        if found is None:
            raise VendError("no AWS credentials found (botocore's default chain)", code="credentials_unavailable")
        # One frozen set for the proof and the request: a refresh in between would mix two.
        credentials = found.get_frozen_credentials()

    fields = {"audience": audience}
    if normalize_scope(scope):
        fields["scope"] = normalize_scope(scope)
    if organization is not None:
        fields["organization"] = organization
    body = json.dumps(fields).encode("utf-8")
    request = AWSRequest(
        method="POST",
        url=endpoint.rstrip("/") + "/token",
        data=body,
        headers={
            "content-type": "application/json",
            PROOF_HEADER: make_proof(credentials, region, server_id, audience, scope, sts_endpoint, organization),
        },
    )
    # Every header is signed, the proof header included.
    SigV4Auth(credentials, "execute-api", region).add_auth(request)
    prepared = request.prepare()

    outgoing = urllib.request.Request(prepared.url, data=body, headers=dict(prepared.headers.items()), method="POST")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(outgoing, timeout=timeout) as response:
            status, text = response.status, response.read().decode("utf-8", "replace")
            retry_after = None
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode("utf-8", "replace")
        retry_after = error.headers.get("Retry-After")
    except (urllib.error.URLError, OSError) as error:
        raise VendError(f"could not reach the token vendor: {type(error).__name__}", code="network_error") from None

    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    if 200 <= status <= 299:
        if not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str) or not answer["access_token"]:
            # Never quote the body: it may hold a token.
            raise VendError(f"the token vendor answered {status} without a usable token", status, "invalid_response")
        return answer
    code = answer.get("error") if isinstance(answer, dict) and isinstance(answer.get("error"), str) else "http_error"
    description = answer.get("error_description") if isinstance(answer, dict) else None
    message = f"the token vendor answered {status} {code}" + (f": {description[:300]}" if isinstance(description, str) else "")
    raise VendError(message, status, code, int(retry_after) if retry_after and retry_after.isdigit() else None)


def main(argv=None):
    env = os.environ
    parser = argparse.ArgumentParser(description="Print an access token from the token vendor (stdout: the token only).")
    parser.add_argument("--audience", required=True, help="the API the token is for")
    parser.add_argument("--scope", help='space-separated scopes, e.g. "read:orders write:orders"; default: all granted')
    parser.add_argument("--organization", help="the Auth0 organization the token is for (org_... id or name); default: none")
    parser.add_argument("--endpoint", default=env.get("TOKEN_VENDOR_ENDPOINT"), help="the REST API with its stage (TOKEN_VENDOR_ENDPOINT)")
    parser.add_argument("--region", default=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"), help="the vendor's region (AWS_REGION)")
    parser.add_argument("--server-id", default=env.get("TOKEN_VENDOR_SERVER_ID"), help="proof server id, token-vendor-<stage> by default (TOKEN_VENDOR_SERVER_ID)")
    parser.add_argument("--sts-endpoint", default=env.get("TOKEN_VENDOR_STS_ENDPOINT"), help="a loopback STS stand-in (local stack only; TOKEN_VENDOR_STS_ENDPOINT)")
    args = parser.parse_args(argv)
    for name in ("endpoint", "region", "server_id"):
        if not getattr(args, name):
            parser.error(f"--{name.replace('_', '-')} is required (or its environment variable)")
    if args.organization is not None and organization_problem(args.organization):
        parser.error(f"--{organization_problem(args.organization)}")

    try:
        token = vend_token(
            args.audience,
            args.scope,
            endpoint=args.endpoint,
            region=args.region,
            server_id=args.server_id,
            organization=args.organization,
            sts_endpoint=args.sts_endpoint,
        )
    except VendError as error:
        retry = f" (retry after {error.retry_after} s)" if error.retry_after is not None else ""
        print(f"vend_token: {error.code}: {error}{retry}", file=sys.stderr)
        return 1
    print(token["access_token"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
