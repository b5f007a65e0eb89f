/**
 * The caller's side of the identity proof (docs/identity-proof.md, version 1), synchronous, with
 * node:crypto only: an `sts:GetCallerIdentity` request presigned with the caller's credentials,
 * with the two binding headers (`x-token-vendor-server-id`, `x-token-vendor-request`) signed but
 * not sent, wrapped as `tvp1.` + base64url(URL).
 *
 * Synchronous so that test event builders (test/helpers/events.ts) stay synchronous; the
 * canonicalization is the verifier's own (`local/sigv4.ts`), and test/local/stsProof.test.ts checks
 * that the result agrees with `@smithy/signature-v4`'s `presign()` and with botocore's
 * `SigV4QueryAuth`, so a proof made here is one a real SDK would make.
 *
 * Presigned-URL form: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
 * ("Add the signature to the request", query string); the shape of the token after
 * kubernetes-sigs/aws-iam-authenticator `pkg/token/token.go` (`k8s-aws-v1.` + base64url URL).
 */
import { createHash } from 'node:crypto';
import { EMPTY_PAYLOAD_HASH, awsUriEncode, canonicalRequest, credentialScope, formatAmzDate, signCanonicalRequest } from './sigv4.js';

export const PROOF_PREFIX = 'tvp1.';
export const SERVER_ID_HEADER = 'x-token-vendor-server-id';
export const REQUEST_HEADER = 'x-token-vendor-request';
/** The API path carries the proof in this header (a direct invocation: the event's `proof`). */
export const PROOF_HEADER = 'X-Token-Vendor-Proof';
/** What the proof signs: exactly these, sorted (docs/identity-proof.md "Wire format"). */
export const PROOF_SIGNED_HEADERS = ['host', REQUEST_HEADER, SERVER_ID_HEADER] as const;
/** The expiry a proof asks for; the vendor accepts at most 300 s whatever it says. */
export const DEFAULT_PROOF_EXPIRES_SECONDS = 60;
const STS_API_VERSION = '2011-06-15';

export interface ProofCredential {
  accessKeyId: string;
  secretAccessKey: string;
  /** temporary credentials: signed into the query as `X-Amz-Security-Token` */
  sessionToken?: string;
}

export interface PresignProofOptions {
  credential: ProofCredential;
  /** the region of the STS endpoint (the credential scope's region) */
  region: string;
  /** `https://sts.<region>.amazonaws.com`, or the local stand-in's `http://127.0.0.1:PORT`: an origin, no path */
  stsOrigin: string;
  /** the vendor deployment's server id (PROOF_SERVER_ID) */
  serverId: string;
  audience: string;
  /** the requested scope, space-separated; omitted or empty when none is asked for */
  scope?: string | undefined;
  /** the Auth0 organization the request names (issue 12), exactly as named; omitted for none */
  organization?: string | undefined;
  /** signing time; default now */
  now?: Date;
  /** `X-Amz-Expires`; default 60 */
  expiresSeconds?: number;
}

/**
 * The request binding: lower-case hex SHA-256 of the UTF-8 text `tvp1\n<audience>\n<scope>`, where
 * `<scope>` is the requested scope tokens (split on spaces, RFC 6749 §3.3) de-duplicated, sorted
 * and joined by one space; empty when none is asked for. JavaScript's default sort orders UTF-16
 * code units, which is code-point order for the ASCII that scope tokens are made of. A request
 * naming an Auth0 organization (issue 12) appends `\n<organization>`; one without binds as before.
 */
export function requestBinding(audience: string, scope?: string, organization?: string): string {
  const tokens = [...new Set((scope ?? '').split(' ').filter((t) => t !== ''))].sort();
  const text = `tvp1\n${audience}\n${tokens.join(' ')}${organization === undefined ? '' : `\n${organization}`}`;
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** The presigned GetCallerIdentity URL a proof wraps (docs/identity-proof.md "Wire format"). */
export function presignProofUrl(opts: PresignProofOptions): string {
  const origin = stsOriginOf(opts.stsOrigin);
  const expires = opts.expiresSeconds ?? DEFAULT_PROOF_EXPIRES_SECONDS;
  if (!Number.isInteger(expires) || expires < 1) throw new Error('expiresSeconds must be a positive whole number');
  const amzDate = formatAmzDate(opts.now ?? new Date());

  const params: Array<[string, string]> = [
    ['Action', 'GetCallerIdentity'],
    ['Version', STS_API_VERSION],
    ['X-Amz-Algorithm', 'AWS4-HMAC-SHA256'],
    ['X-Amz-Credential', `${opts.credential.accessKeyId}/${credentialScope(amzDate.slice(0, 8), opts.region, 'sts')}`],
    ['X-Amz-Date', amzDate],
    ['X-Amz-Expires', String(expires)],
    ['X-Amz-SignedHeaders', PROOF_SIGNED_HEADERS.join(';')],
  ];
  // The session token is a query parameter like the others, so it is signed with them.
  if (opts.credential.sessionToken !== undefined) params.push(['X-Amz-Security-Token', opts.credential.sessionToken]);

  const canonical = canonicalRequest({
    method: 'GET',
    path: '/',
    params,
    headers: [
      ['host', [origin.host]],
      [REQUEST_HEADER, [requestBinding(opts.audience, opts.scope, opts.organization)]],
      [SERVER_ID_HEADER, [opts.serverId]],
    ],
    payloadHash: EMPTY_PAYLOAD_HASH,
  });
  const signature = signCanonicalRequest(opts.credential.secretAccessKey, { amzDate, region: opts.region, service: 'sts' }, canonical);

  // Written in the order docs/identity-proof.md shows, encoded as the canonical query encodes.
  const token = params.find(([name]) => name === 'X-Amz-Security-Token');
  const query = [...params.filter(([name]) => name !== 'X-Amz-Security-Token'), ['X-Amz-Signature', signature] as [string, string], ...(token ? [token] : [])]
    .map(([name, value]) => `${awsUriEncode(name)}=${awsUriEncode(value)}`)
    .join('&');
  return `${origin.origin}/?${query}`;
}

/** `tvp1.` + base64url (RFC 4648 §5, no padding) of the presigned URL. */
export function presignProof(opts: PresignProofOptions): string {
  return `${PROOF_PREFIX}${Buffer.from(presignProofUrl(opts), 'utf8').toString('base64url')}`;
}

/** The URL inside a proof; throws for a string that is not `tvp1.` + base64url. */
export function decodeProof(proof: string): string {
  if (!proof.startsWith(PROOF_PREFIX) || !/^[A-Za-z0-9_-]+$/.test(proof.slice(PROOF_PREFIX.length))) {
    throw new Error('not a tvp1 proof');
  }
  return Buffer.from(proof.slice(PROOF_PREFIX.length), 'base64url').toString('utf8');
}

function stsOriginOf(value: string): URL {
  const url = new URL(value);
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new Error(`stsOrigin must be an origin such as https://sts.eu-west-1.amazonaws.com, not '${value.slice(0, 100)}'`);
  }
  return url;
}

/**
 * Signs a proof for one request; `organization` is the event's Auth0 organization (issue 12), which
 * the proof must bind too (pass it to `presignProof`), undefined when the event names none.
 */
export type ProofSigner = (callerArn: string | undefined, audience: string, scope: string | undefined, organization: string | undefined) => string | undefined;

/**
 * A copy of a sample vend event (events/*.json) with a fresh proof: the sample files cannot hold
 * one (a proof is good for 60 s). An API Gateway event gets the `X-Token-Vendor-Proof` header for
 * the audience, scope and organization of its body, signed for `requestContext.identity.userArn`;
 * a direct invocation `{"audience", "scope", "organization"}` gets `proof`, signed as
 * `directInvoker`. `sign` answers undefined for a caller it has no key for, and the event is then
 * returned as it is (the vendor will refuse it). An event that already carries a proof, or is not
 * a vend request, is unchanged.
 */
export function withFreshProof(event: unknown, sign: ProofSigner, directInvoker?: string): unknown {
  if (typeof event !== 'object' || event === null || Array.isArray(event)) return event;
  const doc = event as Record<string, unknown>;
  if ('requestContext' in doc && 'httpMethod' in doc) {
    const headers = (doc.headers ?? {}) as Record<string, string>;
    if (Object.keys(headers).some((h) => h.toLowerCase() === PROOF_HEADER.toLowerCase()) || typeof doc.body !== 'string') return event;
    let body: unknown;
    try {
      body = JSON.parse(doc.isBase64Encoded === true ? Buffer.from(doc.body, 'base64').toString('utf8') : doc.body);
    } catch {
      return event;
    }
    const { audience, scope, organization } = (body ?? {}) as Record<string, unknown>;
    if (typeof audience !== 'string') return event;
    const identity = (doc.requestContext as { identity?: { userArn?: unknown } } | undefined)?.identity;
    const proof = sign(typeof identity?.userArn === 'string' ? identity.userArn : undefined, audience, stringOrUndefined(scope), stringOrUndefined(organization));
    if (proof === undefined) return event;
    const multi = (doc.multiValueHeaders ?? {}) as Record<string, string[]>;
    return { ...doc, headers: { ...headers, [PROOF_HEADER]: proof }, multiValueHeaders: { ...multi, [PROOF_HEADER]: [proof] } };
  }
  if (typeof doc.audience !== 'string' || doc.proof !== undefined) return event;
  const proof = sign(directInvoker, doc.audience, stringOrUndefined(doc.scope), stringOrUndefined(doc.organization));
  return proof === undefined ? event : { ...doc, proof };
}

/** A field the vendor reads as a string; anything else it refuses before it looks at the proof. */
function stringOrUndefined(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}
