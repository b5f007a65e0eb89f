/**
 * The identity proof a caller sends (docs/identity-proof.md): an `sts:GetCallerIdentity` request
 * presigned with the caller's own credentials, bound to this deployment (a server id) and to the
 * request (a hash of audience and scope) by two signed headers whose values the vendor supplies.
 *
 * This module checks the proof strictly *before* anything is sent to STS and rebuilds the request
 * to send from the checked parts only, after kubernetes-sigs/aws-iam-authenticator
 * (`pkg/token/token.go`: host allow-list, path `/`, allow-listed query keys, one value each,
 * exactly `GetCallerIdentity`, signed binding header) and HashiCorp Vault's AWS IAM auth method
 * (`builtin/credential/aws/path_login.go`: the server-id header). The lessons of their CVEs:
 * CVE-2020-16250 (pin the forwarded request exactly: nothing the caller chose is sent but the
 * signed query) and CVE-2022-2385 (identity comes from STS's answer, never from a field the caller
 * controls, such as the access key id in the URL). Pure: no I/O, the clock passed in.
 */
import { createHash } from 'node:crypto';
import { IdentityProofError } from './errors.js';

export const PROOF_PREFIX = 'tvp1.';
export const SERVER_ID_HEADER = 'x-token-vendor-server-id';
export const REQUEST_HEADER = 'x-token-vendor-request';
/** The API path carries the proof in this header; a direct invocation in the event's `proof`. */
export const PROOF_HEADER = 'x-token-vendor-proof';
/** A session token makes a proof long; aws-iam-authenticator caps its (unprefixed) token at 4 KiB. */
export const MAX_PROOF_LENGTH = 8192;
/** The longest a proof is accepted after it was signed, whatever X-Amz-Expires says. */
export const MAX_PROOF_AGE_SECONDS = 300;
/**
 * How far in the future X-Amz-Date may be. Less than SigV4's own 5 minutes: a proof dated ahead
 * is usable from that much before its date, which would stretch its window past
 * MAX_PROOF_AGE_SECONDS; NTP-synchronised machines (EC2, Lambda, containers) are far closer.
 */
export const MAX_CLOCK_SKEW_SECONDS = 60;

const SIGNED_HEADERS = ['host', REQUEST_HEADER, SERVER_ID_HEADER].join(';');
const ALLOWED_QUERY_KEYS = new Set([
  'Action',
  'Version',
  'X-Amz-Algorithm',
  'X-Amz-Credential',
  'X-Amz-Date',
  'X-Amz-Expires',
  'X-Amz-SignedHeaders',
  'X-Amz-Signature',
  'X-Amz-Security-Token',
]);
const REQUIRED_QUERY_KEYS = ['Action', 'Version', 'X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders', 'X-Amz-Signature'];
const BASE64URL = /^[A-Za-z0-9_-]+$/;
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
const REGION = /^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$/;
const ACCESS_KEY_ID = /^[A-Z0-9]{16,128}$/;
const SIGNATURE = /^[0-9a-f]{64}$/;

export type Partition = 'aws' | 'aws-cn' | 'aws-us-gov';

export interface ProofPolicy {
  /**
   * The vendor's own region: only its regional STS endpoint (and, in the aws partition, the global
   * sts.amazonaws.com) is accepted. A host of any other region, real or not, would only let a
   * caller send the vendor to a far or unresolvable endpoint and turn its request into a 503.
   */
  readonly region: string;
  /** this deployment's server id (PROOF_SERVER_ID) */
  readonly serverId: string;
  /**
   * The local stack's STS stand-in (`http://127.0.0.1:PORT`), which is then the only host
   * accepted, with credentials scoped to `region`. Unset in a deployment.
   */
  readonly localStsOrigin?: string | undefined;
}

/** What to send to STS, rebuilt from checked parts. */
export interface CheckedProof {
  /** the GET request's URL: an allowed origin, path `/`, the allowed query keys in a fixed order */
  readonly url: string;
  /** the headers the vendor sends: its own values, never the caller's */
  readonly headers: Readonly<Record<string, string>>;
  /** epoch ms after which the proof is refused */
  readonly expiresAt: number;
}

/** The partition a region belongs to (AWS's partitions as the SDK's endpoint rules name them). */
export function partitionOf(region: string): Partition {
  if (region.startsWith('cn-')) return 'aws-cn';
  if (region.startsWith('us-gov-')) return 'aws-us-gov';
  return 'aws';
}

/**
 * The request binding: lower-case hex SHA-256 of `tvp1\n<audience>\n<scope>`, the scope being the
 * requested scope tokens de-duplicated, sorted and joined by one space (empty when none were asked
 * for), and `\n<organization>` appended when the request names an Auth0 organization. Neither the
 * audience nor the organization can hold a control character (vendRequest.ts refuses one), so the
 * text is unambiguous, and a request without an organization binds exactly as before.
 */
export function requestBinding(audience: string, scope: string | undefined, organization?: string): string {
  const tokens = [...new Set((scope ?? '').split(' ').filter((s) => s !== ''))].sort();
  const text = `tvp1\n${audience}\n${tokens.join(' ')}${organization === undefined ? '' : `\n${organization}`}`;
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/**
 * Check a proof for the request (`audience`, `scope`, and `organization` if it names one) at `nowMs`, and return the request to send to
 * STS. Every refusal is an {@link IdentityProofError} (403) that names what is wrong; nothing is
 * sent anywhere for a proof this function refuses.
 */
export function checkProof(
  proof: unknown,
  binding: { readonly audience: string; readonly scope: string | undefined; readonly organization?: string | undefined },
  policy: ProofPolicy,
  nowMs: number,
): CheckedProof {
  if (typeof proof !== 'string' || proof === '') {
    throw new IdentityProofError('No identity proof: the request must carry a presigned sts:GetCallerIdentity proof (docs/identity-proof.md); use the token vendor client.');
  }
  if (proof.length > MAX_PROOF_LENGTH) throw new IdentityProofError(`The identity proof is longer than ${MAX_PROOF_LENGTH} characters.`);
  if (!proof.startsWith(PROOF_PREFIX)) throw new IdentityProofError(`The identity proof must start with "${PROOF_PREFIX}".`);
  const encoded = proof.slice(PROOF_PREFIX.length);
  if (!BASE64URL.test(encoded)) throw new IdentityProofError('The identity proof is not base64url.');
  const text = Buffer.from(encoded, 'base64url').toString('utf8');

  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new IdentityProofError('The identity proof does not hold a URL.');
  }
  const region = checkOrigin(url, policy);
  if (url.pathname !== '/') throw new IdentityProofError('The identity proof must be for the path "/".');

  const params = queryParams(url.search);
  const get = (key: string): string => params.get(key) ?? '';
  if (get('Action') !== 'GetCallerIdentity') throw new IdentityProofError('The identity proof must be for sts:GetCallerIdentity.');
  if (get('Version') !== '2011-06-15') throw new IdentityProofError('The identity proof must be for STS API version 2011-06-15.');
  if (get('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256') throw new IdentityProofError('The identity proof must be signed with AWS4-HMAC-SHA256.');
  if (get('X-Amz-SignedHeaders') !== SIGNED_HEADERS) {
    throw new IdentityProofError(`The identity proof must sign exactly the headers ${SIGNED_HEADERS}: it binds the proof to this deployment and to this request.`);
  }
  if (!SIGNATURE.test(get('X-Amz-Signature'))) throw new IdentityProofError('The identity proof has no valid X-Amz-Signature.');

  const amzDate = get('X-Amz-Date');
  const signedAt = parseAmzDate(amzDate);
  if (signedAt === undefined) throw new IdentityProofError('The identity proof has no valid X-Amz-Date.');
  const credential = get('X-Amz-Credential').split('/');
  const [accessKeyId = '', scopeDate = '', scopeRegion = '', scopeService = '', terminator = ''] = credential;
  if (credential.length !== 5 || !ACCESS_KEY_ID.test(accessKeyId) || terminator !== 'aws4_request' || scopeDate !== amzDate.slice(0, 8)) {
    throw new IdentityProofError('The identity proof has no valid X-Amz-Credential.');
  }
  if (scopeService !== 'sts' || scopeRegion !== region) {
    throw new IdentityProofError(`The identity proof must be scoped to sts in ${region}, the region of its host.`);
  }

  const expiresRaw = get('X-Amz-Expires');
  if (!/^\d{1,3}$/.test(expiresRaw) || Number(expiresRaw) < 1 || Number(expiresRaw) > 900) {
    throw new IdentityProofError('The identity proof must have X-Amz-Expires between 1 and 900.');
  }
  // STS accepts a presigned GetCallerIdentity for 15 minutes whatever X-Amz-Expires says
  // (aws-iam-authenticator pkg/token/token.go, aws-sdk-go#2167): the window is enforced here.
  const expiresAt = signedAt + Math.min(Number(expiresRaw), MAX_PROOF_AGE_SECONDS) * 1000;
  if (nowMs > expiresAt) throw new IdentityProofError('The identity proof has expired: sign a new one for each request.');
  if (signedAt - nowMs > MAX_CLOCK_SKEW_SECONDS * 1000) throw new IdentityProofError('The identity proof is dated in the future: check the caller\'s clock.');

  // Rebuilt in a fixed order from the checked values: the caller's encoding and order are not sent.
  const query = new URLSearchParams();
  for (const key of REQUIRED_QUERY_KEYS) query.append(key, get(key));
  if (params.has('X-Amz-Security-Token')) query.append('X-Amz-Security-Token', get('X-Amz-Security-Token'));
  return {
    url: `${url.origin}/?${query.toString()}`,
    headers: {
      [SERVER_ID_HEADER]: policy.serverId,
      [REQUEST_HEADER]: requestBinding(binding.audience, binding.scope, binding.organization),
      accept: 'application/json',
    },
    expiresAt,
  };
}

/** The region the URL's host serves, if it is an STS host of the vendor's partition. */
function checkOrigin(url: URL, policy: ProofPolicy): string {
  if (url.username !== '' || url.password !== '' || url.hash !== '') throw new IdentityProofError('The identity proof URL must not carry credentials or a fragment.');
  if (policy.localStsOrigin !== undefined) {
    if (url.origin !== policy.localStsOrigin) throw new IdentityProofError(`The identity proof must be for the local STS at ${policy.localStsOrigin}.`);
    return policy.region;
  }
  if (url.protocol !== 'https:' || url.port !== '') throw new IdentityProofError('The identity proof must be an https URL of STS on the default port.');
  const host = url.hostname;
  const partition = partitionOf(policy.region);
  if (partition === 'aws' && host === 'sts.amazonaws.com') return 'us-east-1';
  const regional = `sts.${policy.region}${partition === 'aws-cn' ? '.amazonaws.com.cn' : '.amazonaws.com'}`;
  if (!REGION.test(policy.region) || host !== regional) {
    throw new IdentityProofError(`The identity proof must be for STS in this vendor's region (${regional}), not "${host.slice(0, 100)}".`);
  }
  return policy.region;
}

/** Decoded query parameters; a key outside the allow-list, or given twice, is refused. */
function queryParams(search: string): Map<string, string> {
  const params = new Map<string, string>();
  for (const [key, value] of new URLSearchParams(search)) {
    if (!ALLOWED_QUERY_KEYS.has(key)) throw new IdentityProofError(`The identity proof has a query parameter that is not allowed: "${key.slice(0, 40)}".`);
    if (params.has(key)) throw new IdentityProofError(`The identity proof repeats the query parameter "${key}".`);
    params.set(key, value);
  }
  return params;
}

function parseAmzDate(value: string): number | undefined {
  const m = AMZ_DATE.exec(value);
  if (m === null) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  const ms = Date.UTC(y, mo - 1, d, h, mi, s);
  // Date.UTC rolls 20250231 over to March; a real timestamp survives the round trip.
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '') === value ? ms : undefined;
}
