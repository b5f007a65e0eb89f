/**
 * The caller's half of the identity proof (docs/identity-proof.md, wire format version 1): an
 * `sts:GetCallerIdentity` request presigned with the caller's own AWS credentials, with two
 * headers signed but not sent: the deployment's server id and a hash of the request being made.
 * The vendor rebuilds the request from checked parts, supplies both header values itself, sends it
 * to STS and takes the caller's identity from STS's answer, never from anything in the proof.
 *
 * The shape follows kubernetes-sigs/aws-iam-authenticator (`pkg/token/token.go`: a presigned
 * GetCallerIdentity with a signed `x-k8s-aws-id` header, 60 s) and HashiCorp Vault's AWS IAM auth
 * (`builtin/credential/aws/path_login.go`: a signed `X-Vault-AWS-IAM-Server-ID` header). Only the
 * signed query travels; the header values are the vendor's own, so a proof made for another
 * deployment, audience or scope fails STS's signature check.
 */
import { createHash } from 'node:crypto';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import type { TokenVendorCredentials } from './types.js';

/** The header that carries the proof on `POST /token`. */
export const PROOF_HEADER = 'X-Token-Vendor-Proof';
/** Version 1 of the wire format: `tvp1.` + base64url(presigned URL). */
export const PROOF_PREFIX = 'tvp1.';
/** The signed header naming the deployment (Vault's `X-Vault-AWS-IAM-Server-ID`). */
export const SERVER_ID_HEADER = 'x-token-vendor-server-id';
/** The signed header binding the proof to one audience, scope and organization. */
export const REQUEST_HEADER = 'x-token-vendor-request';
/**
 * Exactly the headers a proof signs (docs/identity-proof.md, check 5). smithy signs every header
 * it is given and hoists only `x-amz-*` ones into the query, so these three stay signed headers.
 */
export const PROOF_SIGNED_HEADERS = `host;${REQUEST_HEADER};${SERVER_ID_HEADER}`;
/**
 * aws-iam-authenticator presigns for 60 s too. STS itself honours a presigned GetCallerIdentity
 * for 15 minutes whatever this says (aws-sdk-go#2167); the vendor enforces the window.
 */
export const PROOF_EXPIRES_SECONDS = 60;

const STS_QUERY = { Action: 'GetCallerIdentity', Version: '2011-06-15' } as const;
/** The order docs/identity-proof.md writes them in; any order signs the same. */
const QUERY_ORDER = [
  'Action',
  'Version',
  'X-Amz-Algorithm',
  'X-Amz-Credential',
  'X-Amz-Date',
  'X-Amz-Expires',
  'X-Amz-SignedHeaders',
  'X-Amz-Signature',
  'X-Amz-Security-Token',
] as const;
/** An AWS region name: it becomes part of a host name, so nothing else gets in. */
const REGION = /^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$/;
/** What the vendor accepts as PROOF_SERVER_ID (functions/config.ts): printable ASCII, no spaces. */
const SERVER_ID = /^[\x21-\x7e]{1,128}$/;

/** Split on spaces, drop duplicates, sort (code-point order): `b a a` and ` a b` are one request. */
export function normalizeScope(scope: string | undefined): string {
  if (scope === undefined) return '';
  // Array.prototype.sort compares UTF-16 code units; for the printable scope tokens OAuth allows
  // (RFC 6749 §3.3: %x21 / %x23-5B / %x5D-7E) that is code-point order.
  return [...new Set(scope.split(' ').filter((s) => s !== ''))].sort().join(' ');
}

/**
 * The value of `x-token-vendor-request`: lower-case hex SHA-256 of `tvp1\n<audience>\n<scope>`,
 * with the scope normalized as {@link normalizeScope} does (empty when none is asked for), and
 * `\n<organization>` appended only when the request names an Auth0 organization (issue 12), so a
 * request without one binds exactly as before (docs/identity-proof.md, `x-token-vendor-request`).
 */
export function requestBindingHash(audience: string, scope: string | undefined, organization?: string): string {
  const text = `tvp1\n${audience}\n${normalizeScope(scope)}${organization === undefined ? '' : `\n${organization}`}`;
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** `sts.<region>.amazonaws.com`, or `.amazonaws.com.cn` in the China partition. */
export function regionalHost(service: string, region: string): string {
  return `${service}.${region}.amazonaws.com${region.startsWith('cn-') ? '.cn' : ''}`;
}

/** @throws TypeError for a value that is not an AWS region name */
export function checkRegion(region: string): void {
  if (typeof region !== 'string' || !REGION.test(region)) throw new TypeError(`region must be an AWS region name like eu-west-1`);
}

/**
 * An http(s) origin an option may point a client at: https anywhere, plain http only on a
 * loopback host (what the local stack and the tests run), because what goes there is signed.
 * @throws TypeError naming `option`
 */
export function parseOriginOption(option: string, value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new TypeError(`${option} must be an http(s) origin`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TypeError(`${option} must be an http(s) origin`);
  if (url.protocol === 'http:' && !isLoopback(url.hostname)) throw new TypeError(`${option} may use plain http only on a loopback host`);
  if (url.username !== '' || url.password !== '' || url.pathname !== '/' || url.search !== '' || url.hash !== '') {
    throw new TypeError(`${option} must be an origin only (scheme, host, port), e.g. http://127.0.0.1:4566`);
  }
  return url;
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(?:\.\d{1,3}){3}$/.test(hostname);
}

export interface IdentityProverOptions {
  /** the caller's region: the credential scope, and the STS host unless `stsEndpoint` is set */
  region: string;
  /** the deployment's server id (PROOF_SERVER_ID: `token-vendor-<stage>-<region>` as deployed) */
  serverId: string;
  credentials: TokenVendorCredentials;
  /** an http(s) origin to name instead of `https://sts.<region>.amazonaws.com` (the local STS stand-in) */
  stsEndpoint?: string;
}

/** Makes proofs: one per vend request, each bound to that request's audience, scope and organization. */
export class IdentityProver {
  readonly #signer: SignatureV4;
  readonly #serverId: string;
  readonly #origin: URL;

  /** @throws TypeError for a bad region, server id or STS endpoint */
  constructor(opts: IdentityProverOptions) {
    checkRegion(opts.region);
    if (typeof opts.serverId !== 'string' || !SERVER_ID.test(opts.serverId)) {
      throw new TypeError('serverId must be the deployment\'s proof server id (1-128 printable ASCII characters, no spaces), e.g. token-vendor-prod-eu-west-1');
    }
    this.#serverId = opts.serverId;
    this.#origin = opts.stsEndpoint === undefined ? new URL(`https://${regionalHost('sts', opts.region)}`) : parseOriginOption('stsEndpoint', opts.stsEndpoint);
    this.#signer = new SignatureV4({
      service: 'sts',
      // The credential scope is the caller's region even when the host is a stand-in's: the
      // vendor checks the scope against its own region (docs/identity-proof.md, check 4).
      region: opts.region,
      credentials: opts.credentials,
      sha256: Hash.bind(null, 'sha256'),
      applyChecksum: false,
    });
  }

  /**
   * A fresh proof for this audience, scope and (when the request names one) organization,
   * presigned now on the real clock (STS and the vendor judge `X-Amz-Date` by theirs). Rejects
   * when the credentials cannot be had.
   */
  async prove(audience: string, scope: string | undefined, organization?: string): Promise<string> {
    const origin = this.#origin;
    const unsigned = new HttpRequest({
      method: 'GET',
      protocol: origin.protocol,
      hostname: origin.hostname,
      ...(origin.port === '' ? {} : { port: Number(origin.port) }),
      path: '/',
      query: { ...STS_QUERY },
      // Signed, never sent by us: the vendor sends its own values for both, and `host` is what
      // the vendor's fetch derives from the same origin.
      headers: { host: origin.host, [SERVER_ID_HEADER]: this.#serverId, [REQUEST_HEADER]: requestBindingHash(audience, scope, organization) },
    });
    const presigned = await this.#signer.presign(unsigned, { expiresIn: PROOF_EXPIRES_SECONDS });
    const query = presigned.query as Record<string, string | string[] | null>;
    // A future signer that picked other headers would make proofs every vendor refuses; fail
    // here, where the cause is visible, rather than as a 403 there.
    if (query['X-Amz-SignedHeaders'] !== PROOF_SIGNED_HEADERS) {
      throw new Error(`the SigV4 presigner signed ${String(query['X-Amz-SignedHeaders'])}, not ${PROOF_SIGNED_HEADERS}`);
    }
    const pairs: string[] = [];
    for (const name of QUERY_ORDER) {
      const value = query[name];
      if (typeof value === 'string') pairs.push(`${name}=${uriEncode(value)}`);
    }
    const url = `${origin.protocol}//${origin.host}/?${pairs.join('&')}`;
    // RFC 4648 §5, unpadded: Node's base64url never pads.
    return `${PROOF_PREFIX}${Buffer.from(url, 'utf8').toString('base64url')}`;
  }
}

/** RFC 3986 unreserved characters stay, everything else is percent-encoded (AWS's UriEncode). */
function uriEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
