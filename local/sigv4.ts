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
 * Rules (non-S3 flavour, which execute-api uses):
 * https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
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

const ALGORITHM = 'AWS4-HMAC-SHA256';
const TERMINATOR = 'aws4_request';
const DEFAULT_MAX_SKEW_MS = 5 * 60_000;
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
const SIGNATURE = /^[0-9a-fA-F]{64}$/;
/** RFC 9110 token characters, lower case: SignedHeaders must list canonical (lower-case) names. */
const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;
/** Query parameters that mean presigned-URL authentication. */
const PRESIGN_PARAMS = new Set(['x-amz-algorithm', 'x-amz-credential', 'x-amz-signature', 'x-amz-signedheaders']);

/**
 * Verify a SigV4 `Authorization` header the way API Gateway does for `AWS_IAM` methods: header
 * form, credential scope (day, region, service), `X-Amz-Date` within the allowed skew, `host`
 * signed, then the signature recomputed over the signed headers, method, path, query and the hash
 * of the body actually received. Presigned (query-string) authentication is not supported.
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
  const { accessKeyId, scopeDate, scopeRegion, scopeService, signedHeaders, signature } = parsed;

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

  if (scopeService !== service) {
    return fail('wrong_scope', `Credential should be scoped to the correct service: '${service}'.`);
  }
  if (scopeRegion !== opts.region) {
    return fail('wrong_scope', `Credential should be scoped to a valid region: '${opts.region}'.`);
  }
  if (scopeDate !== amzDate.slice(0, 8)) {
    return fail('wrong_scope', 'The date in the credential scope does not match the date of X-Amz-Date.');
  }

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
  if (credential.sessionToken === undefined) {
    if (tokens !== undefined) return fail('unknown_key', 'The security token included in the request is invalid.');
  } else {
    if (tokens === undefined || tokens.length !== 1 || !safeEqualText(tokens[0] ?? '', credential.sessionToken)) {
      return fail('unknown_key', 'The security token included in the request is invalid.');
    }
    if (!signedHeaders.includes('x-amz-security-token')) return fail('malformed', "'x-amz-security-token' must be among the SignedHeaders.");
  }

  const payloadHash = sha256Hex(req.body);
  // A signer that sends x-amz-content-sha256 signs with that value instead of hashing the body
  // (smithy does); we always hash what arrived, so a stale header cannot vouch for a new body.
  const declared = headers.get('x-amz-content-sha256');
  if (declared !== undefined && (declared.length !== 1 || (declared[0] ?? '').trim().toLowerCase() !== payloadHash)) {
    return fail('signature_mismatch', 'The body does not match its x-amz-content-sha256 header.');
  }

  const canonicalHeaderLines: string[] = [];
  for (const name of signedHeaders) {
    const values = headers.get(name);
    if (values === undefined) return fail('signature_mismatch', `Signed header '${name}' is missing from the request.`);
    canonicalHeaderLines.push(`${name}:${values.map(canonicalHeaderValue).join(',')}\n`);
  }

  const canonicalRequest = [
    req.method.toUpperCase(),
    canonicalPath(path),
    canonicalQuery(params),
    canonicalHeaderLines.join(''),
    signedHeaders.join(';'),
    payloadHash,
  ].join('\n');
  const scope = `${scopeDate}/${scopeRegion}/${scopeService}/${TERMINATOR}`;
  const stringToSign = [ALGORITHM, amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  const expected = hmac(signingKey(credential.secretAccessKey, scopeDate, scopeRegion, scopeService), stringToSign);

  if (!timingSafeEqual(expected, Buffer.from(signature, 'hex'))) {
    return fail(
      'signature_mismatch',
      'The request signature we calculated does not match the signature you provided. Check your AWS secret access key and signing method.',
    );
  }
  return { ok: true, credential };
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

  const credentialParts = (fields.get('Credential') ?? '').split('/');
  const [accessKeyId = '', scopeDate = '', scopeRegion = '', scopeService = '', terminator = ''] = credentialParts;
  if (credentialParts.length !== 5 || accessKeyId === '' || scopeRegion === '' || scopeService === '') {
    return 'Credential must be of the form ACCESS_KEY_ID/yyyymmdd/region/service/aws4_request.';
  }
  if (!/^\d{8}$/.test(scopeDate)) return 'The credential scope date must be yyyymmdd.';
  if (terminator !== TERMINATOR) return `The credential scope must end in '${TERMINATOR}'.`;

  const signedHeaders = (fields.get('SignedHeaders') ?? '').split(';');
  if (!signedHeaders.every((h) => HEADER_NAME.test(h))) return 'SignedHeaders must be lower-case header names separated by semicolons.';
  for (let i = 1; i < signedHeaders.length; i++) {
    // The canonical request lists headers sorted; a list in any other order was not made by a
    // conforming signer, and re-sorting it would sign something the caller did not.
    if ((signedHeaders[i - 1] ?? '') >= (signedHeaders[i] ?? '')) return 'SignedHeaders must be sorted and without duplicates.';
  }

  const signature = fields.get('Signature') ?? '';
  if (!SIGNATURE.test(signature)) return 'Signature must be 64 hex digits.';

  return { accessKeyId, scopeDate, scopeRegion, scopeService, signedHeaders, signature };
}

function parseAmzDate(value: string): Date | undefined {
  const m = AMZ_DATE.exec(value);
  if (m === null) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  const date = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
  // Date.UTC rolls 20150231 over to March; a real timestamp survives the round trip.
  return formatAmzDate(date) === value ? date : undefined;
}

function formatAmzDate(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '');
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
function canonicalQuery(params: Array<[string, string]>): string {
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

function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
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
