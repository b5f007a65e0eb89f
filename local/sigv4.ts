/**
 * Server-side AWS Signature Version 4 verification, as API Gateway performs it for a method with
 * `AWS_IAM` authorization. serverless-offline does not enforce AWS_IAM, so the local gateway
 * (`local/gateway.ts`) calls this before it lets a request reach the handler.
 *
 * The canonical request is rebuilt here with node:crypto rather than by re-signing with
 * `@smithy/signature-v4`, because a verifier must not trust anything the signer trusts:
 * the smithy signer takes the payload hash from an `x-amz-content-sha256` header when one is
 * present and picks the headers to sign itself. Here the payload hash always comes from the bytes
 * received and the canonical headers are exactly the ones the caller listed in `SignedHeaders`.
 * The tests check that this agrees with what `SignatureV4` produces and with AWS's published
 * examples.
 *
 * Both forms of authentication share one canonicalization (exported for the local presigner,
 * `local/stsProof.ts`): the `Authorization` header form (`verifySigV4`, what the gateway needs)
 * and the presigned query-string form (`verifyPresignedSigV4`, what the STS stand-in needs for a
 * presigned `sts:GetCallerIdentity`, docs/identity-proof.md).
 *
 * Rules (non-S3 flavour, which execute-api and STS use):
 * https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
 * (section "Signature elements" and "Add the signature to the request": query-string form)
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** A key pair the local gateway accepts, and who it belongs to. */
export interface LocalCredential {
  accessKeyId: string;
  secretAccessKey: string;
  /** who the key belongs to: an IAM role ARN (arn:aws:iam::ACCT:role/[path/]NAME) or an IAM user ARN */
  principalArn: string;
  /** for roles: the session name that appears in the assumed-role ARN */
  sessionName?: string;
  /**
   * For temporary (STS-style) credentials: the session token the request must carry, signed, in
   * `X-Amz-Security-Token`. Unset means a long-term key, and a request that carries a token
   * anyway is refused, as AWS refuses a token it did not issue.
   */
  sessionToken?: string;
  /**
   * The principal's unique id as STS reports it (`AROA…` for a role, `AIDA…` for a user): the
   * `UserId` of GetCallerIdentity (before `:SESSION` for a role). Unset: a stable fake id derived
   * from `principalArn` (`defaultUniqueId`). A role deleted and recreated under the same name gets
   * a new one, which is what a grant pinned to a unique id guards against.
   */
  uniqueId?: string;
}

/**
 * Why a request was refused:
 * - `missing`: no `Authorization` header at all (API Gateway: "Missing Authentication Token");
 * - `malformed`: an `Authorization` header or `X-Amz-Date` that does not parse, or a required
 *   header that is not signed;
 * - `unknown_key`: the access key ID (or its session token) is not one we know;
 * - `wrong_scope`: the credential scope names another region, service or day;
 * - `stale`: `X-Amz-Date` is further from our clock than the allowed skew;
 * - `signature_mismatch`: everything parsed, and the signature is not the one we compute.
 */
export type SigV4Failure = 'missing' | 'malformed' | 'unknown_key' | 'wrong_scope' | 'stale' | 'signature_mismatch';

/** The request as received on the wire. */
export interface SigV4Request {
  method: string;
  /** raw path + query as received (`req.url`), not decoded or normalized */
  url: string;
  /** header names in any case; repeated headers as arrays (Node's `req.headersDistinct`) */
  headers: Record<string, string | string[] | undefined>;
  body: Uint8Array;
}

export interface VerifySigV4Options {
  /** the key store: `undefined` for an access key ID it does not know */
  lookup: (accessKeyId: string) => LocalCredential | undefined;
  region: string;
  /** default `'execute-api'` */
  service?: string;
  /** injectable clock for tests */
  now?: () => Date;
  /** allowed distance between `X-Amz-Date` and `now`; default 5 minutes, like AWS */
  maxSkewMs?: number;
}

export type SigV4Result =
  | { ok: true; credential: LocalCredential }
  | { ok: false; failure: SigV4Failure; message: string };

export interface VerifyPresignedSigV4Options extends VerifySigV4Options {
  /**
   * Accept the request for exactly this long after `X-Amz-Date`, whatever `X-Amz-Expires` says.
   * STS does this for a presigned `GetCallerIdentity`: 15 minutes (aws-iam-authenticator
   * `pkg/token/token.go`, aws-sdk-go#2167). Unset: `X-Amz-Expires` seconds, as every other
   * service honours it.
   */
  validityMs?: number;
}

/** The hex SHA-256 of an empty payload: what a presigned GET signs as its payload hash. */
export const EMPTY_PAYLOAD_HASH = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
/** AWS's ceiling for `X-Amz-Expires`: 7 days (604 800 s). */
export const MAX_PRESIGN_EXPIRES_SECONDS = 604_800;

const ALGORITHM = 'AWS4-HMAC-SHA256';
const TERMINATOR = 'aws4_request';
const DEFAULT_MAX_SKEW_MS = 5 * 60_000;
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
const SIGNATURE = /^[0-9a-fA-F]{64}$/;
/** RFC 9110 token characters, lower case: SignedHeaders must list canonical (lower-case) names. */
const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;
/** Query parameters that mean presigned-URL authentication. */
const PRESIGN_PARAMS = new Set(['x-amz-algorithm', 'x-amz-credential', 'x-amz-signature', 'x-amz-signedheaders']);
/** The authentication parameters of a presigned URL, each at most once (the token only with temporary credentials). */
const PRESIGNED_AUTH_PARAMS = new Set([
  'X-Amz-Algorithm',
  'X-Amz-Credential',
  'X-Amz-Date',
  'X-Amz-Expires',
  'X-Amz-SignedHeaders',
  'X-Amz-Signature',
  'X-Amz-Security-Token',
]);

/**
 * Verify a SigV4 `Authorization` header the way API Gateway does for `AWS_IAM` methods: header
 * form, credential scope (day, region, service), `X-Amz-Date` within the allowed skew, `host`
 * signed, then the signature recomputed over the signed headers, method, path, query and the hash
 * of the body actually received. Presigned (query-string) authentication is refused here, as
 * the local gateway refuses it; `verifyPresignedSigV4` verifies that form.
 *
 * Never throws for a bad request; failure messages never contain a secret, a session token or
 * the expected signature.
 */
export async function verifySigV4(req: SigV4Request, opts: VerifySigV4Options): Promise<SigV4Result> {
  const service = opts.service ?? 'execute-api';
  const maxSkewMs = opts.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
  const now = (opts.now ?? (() => new Date()))();
  const headers = lowerCaseHeaders(req.headers);

  const { path, query } = splitUrl(req.url);
  const params = parseQuery(query);
  if (params === undefined) return fail('malformed', 'The query string is not valid percent-encoding.');

  const authorization = headers.get('authorization');
  if (authorization === undefined || authorization.length === 0 || authorization.every((v) => v.trim() === '')) {
    if (params.some(([name]) => PRESIGN_PARAMS.has(name.toLowerCase()))) {
      return fail('malformed', 'Query-string (presigned URL) authentication is not supported by the local gateway; sign the Authorization header.');
    }
    return fail('missing', 'Missing Authentication Token: the request must be signed with AWS Signature Version 4.');
  }
  if (authorization.length > 1) return fail('malformed', 'More than one Authorization header.');
  if (params.some(([name]) => PRESIGN_PARAMS.has(name.toLowerCase()))) {
    // API Gateway refuses a request that carries both forms; so do we, rather than ignore one.
    return fail('malformed', 'Only one auth mechanism allowed: the Authorization header or X-Amz-* query parameters, not both.');
  }

  const parsed = parseAuthorization(authorization[0] ?? '');
  if (typeof parsed === 'string') return fail('malformed', parsed);
  const { accessKeyId, signedHeaders } = parsed;

  if (!signedHeaders.includes('host')) return fail('malformed', "'host' must be among the SignedHeaders of the Authorization header.");
  if (signedHeaders.includes('authorization')) return fail('malformed', 'The Authorization header cannot sign itself.');

  // Only X-Amz-Date is accepted: the SDK signers always send it, and the `Date` fallback AWS
  // still honours would need RFC 1123 parsing for no caller we have.
  const amzDateValues = headers.get('x-amz-date');
  if (amzDateValues === undefined || amzDateValues.length !== 1) {
    return fail('malformed', 'The request must carry exactly one X-Amz-Date header.');
  }
  const amzDate = (amzDateValues[0] ?? '').trim();
  const signedAt = parseAmzDate(amzDate);
  if (signedAt === undefined) return fail('malformed', 'X-Amz-Date must be an ISO 8601 basic timestamp like 20150830T123600Z.');
  if (!signedHeaders.includes('x-amz-date')) return fail('malformed', "'x-amz-date' must be among the SignedHeaders.");

  const scopeProblem = checkScope(parsed, { service, region: opts.region, amzDate });
  if (scopeProblem !== undefined) return scopeProblem;

  const skew = signedAt.getTime() - now.getTime();
  if (Math.abs(skew) > maxSkewMs) {
    const direction = skew < 0 ? 'expired' : 'not yet current';
    return fail(
      'stale',
      `Signature ${direction}: X-Amz-Date ${amzDate} is more than ${Math.round(maxSkewMs / 1000)} s from the server time ${formatAmzDate(now)}.`,
    );
  }

  const credential = opts.lookup(accessKeyId);
  if (credential === undefined) return fail('unknown_key', `The access key ID ${accessKeyId} is not known.`);

  const tokens = headers.get('x-amz-security-token');
  const tokenProblem = checkSessionToken(credential, tokens);
  if (tokenProblem !== undefined) return tokenProblem;
  if (tokens !== undefined && !signedHeaders.includes('x-amz-security-token')) {
    return fail('malformed', "'x-amz-security-token' must be among the SignedHeaders.");
  }

  const payloadHash = sha256Hex(req.body);
  // A signer that sends x-amz-content-sha256 signs with that value instead of hashing the body
  // (smithy does); we always hash what arrived, so a stale header cannot vouch for a new body.
  const declared = headers.get('x-amz-content-sha256');
  if (declared !== undefined && (declared.length !== 1 || (declared[0] ?? '').trim().toLowerCase() !== payloadHash)) {
    return fail('signature_mismatch', 'The body does not match its x-amz-content-sha256 header.');
  }

  return checkSignature(req, credential, { path, params, headers, signedHeaders, payloadHash, amzDate, parsed, signature: parsed.signature });
}

/**
 * Verify a presigned (query-string) SigV4 request, as AWS does for a URL made by `presign()`:
 * `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders` and
 * `X-Amz-Signature` in the query (each once), `host` signed, the credential scope (day, region,
 * service), the validity window (`X-Amz-Date` at most the allowed skew ahead of our clock, and
 * not older than `X-Amz-Expires`, or `validityMs` when set), the session token from
 * `X-Amz-Security-Token`, then the signature recomputed with the same canonicalization as
 * `verifySigV4`. The canonical query is every parameter but `X-Amz-Signature`; the payload hash
 * is the SHA-256 of the bytes received (the empty body's for a GET), as the SDK presigners for
 * services other than S3 sign it (botocore `SigV4QueryAuth.payload`, smithy `getPayloadHash`);
 * `UNSIGNED-PAYLOAD` (S3's presigned form) is not accepted.
 *
 * Synchronous: it does no I/O. Never throws for a bad request; failure messages never contain a
 * secret, a session token or the expected signature.
 */
export function verifyPresignedSigV4(req: SigV4Request, opts: VerifyPresignedSigV4Options): SigV4Result {
  const service = opts.service ?? 'execute-api';
  const maxSkewMs = opts.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
  const now = (opts.now ?? (() => new Date()))();
  const headers = lowerCaseHeaders(req.headers);

  const { path, query } = splitUrl(req.url);
  const params = parseQuery(query);
  if (params === undefined) return fail('malformed', 'The query string is not valid percent-encoding.');

  const auth = new Map<string, string[]>();
  for (const [name, value] of params) {
    if (PRESIGNED_AUTH_PARAMS.has(name)) auth.set(name, [...(auth.get(name) ?? []), value]);
  }
  if (![...PRESIGN_PARAMS].some((lower) => params.some(([name]) => name.toLowerCase() === lower))) {
    return fail('missing', 'Missing Authentication Token: the request must carry a presigned AWS Signature Version 4 query.');
  }
  const authorization = headers.get('authorization');
  if (authorization !== undefined && authorization.some((v) => v.trim() !== '')) {
    return fail('malformed', 'Only one auth mechanism allowed: the Authorization header or X-Amz-* query parameters, not both.');
  }
  for (const name of PRESIGNED_AUTH_PARAMS) {
    const values = auth.get(name);
    if (name === 'X-Amz-Security-Token' && values === undefined) continue;
    if (values === undefined) return fail('malformed', `The presigned query requires the parameter '${name}'.`);
    if (values.length !== 1) return fail('malformed', `The presigned query repeats the parameter '${name}'.`);
  }
  const get = (name: string): string => auth.get(name)?.[0] ?? '';

  if (get('X-Amz-Algorithm') !== ALGORITHM) return fail('malformed', `Unsupported X-Amz-Algorithm: only ${ALGORITHM} is accepted.`);
  const credentialScope = parseCredential(get('X-Amz-Credential'));
  if (typeof credentialScope === 'string') return fail('malformed', credentialScope);
  const signedHeaders = parseSignedHeaders(get('X-Amz-SignedHeaders'));
  if (typeof signedHeaders === 'string') return fail('malformed', signedHeaders);
  const signature = get('X-Amz-Signature');
  if (!SIGNATURE.test(signature)) return fail('malformed', 'X-Amz-Signature must be 64 hex digits.');
  if (!signedHeaders.includes('host')) return fail('malformed', "'host' must be among the X-Amz-SignedHeaders.");

  const amzDate = get('X-Amz-Date');
  const signedAt = parseAmzDate(amzDate);
  if (signedAt === undefined) return fail('malformed', 'X-Amz-Date must be an ISO 8601 basic timestamp like 20150830T123600Z.');
  const expiresText = get('X-Amz-Expires');
  if (!/^\d{1,6}$/.test(expiresText) || Number(expiresText) < 1 || Number(expiresText) > MAX_PRESIGN_EXPIRES_SECONDS) {
    return fail('malformed', `X-Amz-Expires must be a whole number of seconds from 1 to ${MAX_PRESIGN_EXPIRES_SECONDS}.`);
  }

  const parsed: ParsedAuthorization = { ...credentialScope, signedHeaders, signature };
  const scopeProblem = checkScope(parsed, { service, region: opts.region, amzDate });
  if (scopeProblem !== undefined) return scopeProblem;

  if (signedAt.getTime() - now.getTime() > maxSkewMs) {
    return fail('stale', `Signature not yet current: X-Amz-Date ${amzDate} is more than ${Math.round(maxSkewMs / 1000)} s after the server time ${formatAmzDate(now)}.`);
  }
  const validityMs = opts.validityMs ?? Number(expiresText) * 1000;
  if (now.getTime() > signedAt.getTime() + validityMs) {
    // STS words it so: "Signature expired: <X-Amz-Date> is now earlier than <now - window>".
    return fail('stale', `Signature expired: ${amzDate} is now earlier than ${formatAmzDate(new Date(now.getTime() - validityMs))} (${formatAmzDate(now)} - ${Math.round(validityMs / 1000)} s).`);
  }

  const credential = opts.lookup(credentialScope.accessKeyId);
  if (credential === undefined) return fail('unknown_key', `The access key ID ${credentialScope.accessKeyId} is not known.`);
  const tokenProblem = checkSessionToken(credential, auth.get('X-Amz-Security-Token'));
  if (tokenProblem !== undefined) return tokenProblem;

  // The signature cannot sign itself: every other parameter, auth ones included, is canonical.
  const signedParams = params.filter(([name]) => name !== 'X-Amz-Signature');
  return checkSignature(req, credential, { path, params: signedParams, headers, signedHeaders, payloadHash: sha256Hex(req.body), amzDate, parsed, signature });
}

/** The parts of a canonical request (the first step of SigV4, shared by signer and verifiers). */
export interface CanonicalRequestParts {
  /** upper-cased here */
  method: string;
  /** the path as sent on the wire (percent-encoded); normalized and encoded once more here */
  path: string;
  /** decoded query pairs, in any order (for a presigned request: without `X-Amz-Signature`) */
  params: ReadonlyArray<readonly [string, string]>;
  /** the signed headers, lower-case names sorted, each with every value it has */
  headers: ReadonlyArray<readonly [string, readonly string[]]>;
  /** hex SHA-256 of the payload */
  payloadHash: string;
}

/** The canonical request: method, canonical URI, canonical query, canonical headers, signed headers, payload hash. */
export function canonicalRequest(parts: CanonicalRequestParts): string {
  return [
    parts.method.toUpperCase(),
    canonicalPath(parts.path),
    canonicalQuery(parts.params),
    parts.headers.map(([name, values]) => `${name}:${values.map(canonicalHeaderValue).join(',')}\n`).join(''),
    parts.headers.map(([name]) => name).join(';'),
    parts.payloadHash,
  ].join('\n');
}

/** `yyyymmdd/region/service/aws4_request` */
export function credentialScope(date: string, region: string, service: string): string {
  return `${date}/${region}/${service}/${TERMINATOR}`;
}

/**
 * The hex signature of a canonical request: the string to sign (algorithm, `X-Amz-Date`, scope,
 * hash of the canonical request) under the key derived from the secret, day, region and service.
 */
export function signCanonicalRequest(
  secretAccessKey: string,
  scope: { amzDate: string; region: string; service: string },
  canonical: string,
): string {
  const date = scope.amzDate.slice(0, 8);
  const stringToSign = [ALGORITHM, scope.amzDate, credentialScope(date, scope.region, scope.service), sha256Hex(canonical)].join('\n');
  return hmac(signingKey(secretAccessKey, date, scope.region, scope.service), stringToSign).toString('hex');
}

/** `20150830T123600Z`: SigV4's ISO 8601 basic timestamp, in UTC, whole seconds. */
export function formatAmzDate(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '');
}

/** The date of an ISO 8601 basic timestamp; `undefined` for anything else, an impossible day included. */
export function parseAmzDate(value: string): Date | undefined {
  const m = AMZ_DATE.exec(value);
  if (m === null) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  const date = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
  // Date.UTC rolls 20150231 over to March; a real timestamp survives the round trip.
  return formatAmzDate(date) === value ? date : undefined;
}

/** Lower-case hex SHA-256. */
export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

interface SignatureInputs {
  path: string;
  params: Array<[string, string]>;
  headers: Map<string, string[]>;
  signedHeaders: string[];
  payloadHash: string;
  amzDate: string;
  parsed: ParsedAuthorization;
  signature: string;
}

/** The last step of both verifiers: the canonical request rebuilt, the signature compared in constant time. */
function checkSignature(req: SigV4Request, credential: LocalCredential, input: SignatureInputs): SigV4Result {
  const signed: Array<[string, string[]]> = [];
  for (const name of input.signedHeaders) {
    const values = input.headers.get(name);
    if (values === undefined) return fail('signature_mismatch', `Signed header '${name}' is missing from the request.`);
    signed.push([name, values]);
  }
  const canonical = canonicalRequest({ method: req.method, path: input.path, params: input.params, headers: signed, payloadHash: input.payloadHash });
  const expected = signCanonicalRequest(
    credential.secretAccessKey,
    { amzDate: input.amzDate, region: input.parsed.scopeRegion, service: input.parsed.scopeService },
    canonical,
  );
  if (!timingSafeEqual(Buffer.from(expected, 'hex'), Buffer.from(input.signature, 'hex'))) {
    return fail(
      'signature_mismatch',
      'The request signature we calculated does not match the signature you provided. Check your AWS secret access key and signing method.',
    );
  }
  return { ok: true, credential };
}

/** The credential scope against what this server serves: service, region, and the day of X-Amz-Date. */
function checkScope(parsed: ParsedAuthorization, expected: { service: string; region: string; amzDate: string }): SigV4Result | undefined {
  if (parsed.scopeService !== expected.service) {
    return fail('wrong_scope', `Credential should be scoped to the correct service: '${expected.service}'.`);
  }
  if (parsed.scopeRegion !== expected.region) {
    return fail('wrong_scope', `Credential should be scoped to a valid region: '${expected.region}'.`);
  }
  if (parsed.scopeDate !== expected.amzDate.slice(0, 8)) {
    return fail('wrong_scope', 'The date in the credential scope does not match the date of X-Amz-Date.');
  }
  return undefined;
}

/** A temporary credential needs its own session token, exactly once; a long-term key must carry none. */
function checkSessionToken(credential: LocalCredential, tokens: string[] | undefined): SigV4Result | undefined {
  if (credential.sessionToken === undefined) {
    if (tokens !== undefined) return fail('unknown_key', 'The security token included in the request is invalid.');
  } else if (tokens === undefined || tokens.length !== 1 || !safeEqualText(tokens[0] ?? '', credential.sessionToken)) {
    return fail('unknown_key', 'The security token included in the request is invalid.');
  }
  return undefined;
}

/**
 * AWS's UriEncode: everything but the RFC 3986 unreserved characters is percent-encoded, with
 * upper-case hex. encodeURIComponent leaves `!'()*` alone, so those are encoded on top.
 */
export function awsUriEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * Parse a raw query string into decoded `[name, value]` pairs, in order. `+` is a space, as the
 * URLSearchParams that callers build queries with writes it; `undefined` for broken
 * percent-encoding. Shared with the gateway so the handler sees what was signed.
 */
export function parseQuery(query: string): Array<[string, string]> | undefined {
  const pairs: Array<[string, string]> = [];
  for (const piece of query.split('&')) {
    if (piece === '') continue;
    const eq = piece.indexOf('=');
    const rawName = eq === -1 ? piece : piece.slice(0, eq);
    const rawValue = eq === -1 ? '' : piece.slice(eq + 1);
    try {
      pairs.push([decodeURIComponent(rawName.replace(/\+/g, ' ')), decodeURIComponent(rawValue.replace(/\+/g, ' '))]);
    } catch {
      return undefined;
    }
  }
  return pairs;
}

/** Split `req.url` at the first `?` (a fragment is never sent, but drop one if it is). */
export function splitUrl(url: string): { path: string; query: string } {
  const withoutFragment = url.split('#', 1)[0] ?? '';
  const q = withoutFragment.indexOf('?');
  return q === -1 ? { path: withoutFragment, query: '' } : { path: withoutFragment.slice(0, q), query: withoutFragment.slice(q + 1) };
}

function fail(failure: SigV4Failure, message: string): SigV4Result {
  return { ok: false, failure, message };
}

function lowerCaseHeaders(headers: SigV4Request['headers']): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    const key = name.toLowerCase();
    const values = Array.isArray(value) ? value : [value];
    out.set(key, [...(out.get(key) ?? []), ...values]);
  }
  return out;
}

interface ParsedAuthorization {
  accessKeyId: string;
  scopeDate: string;
  scopeRegion: string;
  scopeService: string;
  signedHeaders: string[];
  signature: string;
}

/** `AWS4-HMAC-SHA256 Credential=AKID/yyyymmdd/region/service/aws4_request, SignedHeaders=a;b, Signature=hex` */
function parseAuthorization(header: string): ParsedAuthorization | string {
  const value = header.trim();
  const space = value.indexOf(' ');
  const algorithm = space === -1 ? value : value.slice(0, space);
  if (algorithm !== ALGORITHM) return `Unsupported authorization type: only ${ALGORITHM} is accepted.`;

  const fields = new Map<string, string>();
  for (const part of value.slice(space + 1).split(',')) {
    const item = part.trim();
    const eq = item.indexOf('=');
    if (eq <= 0) return `Authorization header field '${item.slice(0, 40)}' is not of the form Name=Value.`;
    const name = item.slice(0, eq);
    if (fields.has(name)) return `Authorization header repeats '${name}'.`;
    fields.set(name, item.slice(eq + 1));
  }
  for (const required of ['Credential', 'SignedHeaders', 'Signature']) {
    if (!fields.has(required)) return `Authorization header requires a '${required}' parameter.`;
  }
  if (fields.size !== 3) return 'Authorization header has fields other than Credential, SignedHeaders and Signature.';

  const credential = parseCredential(fields.get('Credential') ?? '');
  if (typeof credential === 'string') return credential;
  const signedHeaders = parseSignedHeaders(fields.get('SignedHeaders') ?? '');
  if (typeof signedHeaders === 'string') return signedHeaders;

  const signature = fields.get('Signature') ?? '';
  if (!SIGNATURE.test(signature)) return 'Signature must be 64 hex digits.';

  return { ...credential, signedHeaders, signature };
}

/** `AKID/yyyymmdd/region/service/aws4_request` (the Credential field, or X-Amz-Credential); a string is the problem. */
function parseCredential(value: string): Pick<ParsedAuthorization, 'accessKeyId' | 'scopeDate' | 'scopeRegion' | 'scopeService'> | string {
  const credentialParts = value.split('/');
  const [accessKeyId = '', scopeDate = '', scopeRegion = '', scopeService = '', terminator = ''] = credentialParts;
  if (credentialParts.length !== 5 || accessKeyId === '' || scopeRegion === '' || scopeService === '') {
    return 'Credential must be of the form ACCESS_KEY_ID/yyyymmdd/region/service/aws4_request.';
  }
  if (!/^\d{8}$/.test(scopeDate)) return 'The credential scope date must be yyyymmdd.';
  if (terminator !== TERMINATOR) return `The credential scope must end in '${TERMINATOR}'.`;
  return { accessKeyId, scopeDate, scopeRegion, scopeService };
}

/** `a;b;c` (the SignedHeaders field, or X-Amz-SignedHeaders); a string is the problem. */
function parseSignedHeaders(value: string): string[] | string {
  const signedHeaders = value.split(';');
  if (!signedHeaders.every((h) => HEADER_NAME.test(h))) return 'SignedHeaders must be lower-case header names separated by semicolons.';
  for (let i = 1; i < signedHeaders.length; i++) {
    // The canonical request lists headers sorted; a list in any other order was not made by a
    // conforming signer, and re-sorting it would sign something the caller did not.
    if ((signedHeaders[i - 1] ?? '') >= (signedHeaders[i] ?? '')) return 'SignedHeaders must be sorted and without duplicates.';
  }
  return signedHeaders;
}

/**
 * Canonical URI for every service but S3: dot segments and empty segments removed, then each
 * segment URI-encoded once more on top of the encoding it arrived with ("double encoding"), `/`
 * kept. This is what smithy's signer does to the already-encoded path it is given.
 */
function canonicalPath(rawPath: string): string {
  const segments: string[] = [];
  for (const segment of rawPath.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(segment);
  }
  const trailing = segments.length > 0 && rawPath.endsWith('/') ? '/' : '';
  return `/${segments.map(awsUriEncode).join('/')}${trailing}`;
}

/** Names and values UriEncoded, then sorted by name and, for a repeated name, by value. */
function canonicalQuery(params: ReadonlyArray<readonly [string, string]>): string {
  return params
    .map(([name, value]) => [awsUriEncode(name), awsUriEncode(value)] as const)
    .sort(([an, av], [bn, bv]) => (an < bn ? -1 : an > bn ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
}

/** Trimall: sequential spaces collapse to one, ends trimmed (the same steps as smithy's signer). */
function canonicalHeaderValue(value: string): string {
  return value
    .replace(/[\r\n]/g, ' ')
    .replace(/[ \t]+/g, ' ')
    .replace(/^ | $/g, '');
}

function hmac(key: Uint8Array | string, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

function signingKey(secret: string, date: string, region: string, service: string): Buffer {
  return hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), TERMINATOR);
}

/** Constant-time string equality that tolerates different lengths (hash first). */
function safeEqualText(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}
