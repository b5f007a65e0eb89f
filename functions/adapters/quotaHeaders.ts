/**
 * Auth0's M2M token quota headers (docs/auth0-wire-behaviour.md §9), sent on successful token
 * responses as well as on a quota 429, and only when a quota applies to the request:
 *
 *     Auth0-Client-Quota-Limit: b=per_hour;q=10;r=7;t=3540,b=per_day;q=50;r=47;t=43200
 *     Auth0-Organization-Quota-Limit: b=per_hour;q=50;r=47;t=3540
 *
 * A comma-separated list of buckets; each is `;`-separated `key=value` pairs: `b` the bucket name
 * (`per_hour`, `per_day`), `q` its size, `r` what remains, `t` seconds until it resets. Auth0's own
 * SDK tests write the bucket name bare (`per_hour;q=100;r=50;t=3600`, node-auth0
 * `tests/lib/HttpResponseHeadersUtils.test.ts`): both forms are read. Unknown keys are ignored; a
 * bucket that lacks a name, `q`, `r` or `t`, or has one that is not an integer, is skipped;
 * nothing here throws. A missing header means "no quota configured", never zero.
 */
import type { QuotaReading } from '../core/ports.js';

export const CLIENT_QUOTA_HEADER = 'auth0-client-quota-limit';
export const ORGANIZATION_QUOTA_HEADER = 'auth0-organization-quota-limit';

/** What Auth0 said of the quotas on one response; empty lists when it sent no header. */
export interface QuotaHeaders {
  readonly client: readonly QuotaReading[];
  readonly organization: readonly QuotaReading[];
}

const BUCKET_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
const INTEGER = /^-?\d{1,15}$/;
/** A header longer than this is not Auth0's (a few buckets are ~100 bytes): ignored. */
const MAX_HEADER_LENGTH = 4096;

/** Every well-formed bucket of one header value, in order. Never throws. */
export function parseQuotaHeader(value: string | null | undefined): QuotaReading[] {
  if (typeof value !== 'string' || value.length > MAX_HEADER_LENGTH) return [];
  const readings: QuotaReading[] = [];
  for (const bucket of value.split(',')) {
    const reading = parseBucket(bucket);
    if (reading !== undefined) readings.push(reading);
  }
  return readings;
}

/** Both quota headers of a response. */
export function readQuotaHeaders(headers: Headers): QuotaHeaders {
  return {
    client: parseQuotaHeader(headers.get(CLIENT_QUOTA_HEADER)),
    organization: parseQuotaHeader(headers.get(ORGANIZATION_QUOTA_HEADER)),
  };
}

/**
 * The bucket that will refuse this client's next token first: the least `remaining` over the
 * client's and the organisation's buckets (either one, used up, gets the request refused), ties
 * going to the one that resets last. `undefined` when Auth0 sent no (well-formed) quota header.
 */
export function tightestQuota(quota: QuotaHeaders): QuotaReading | undefined {
  let tightest: QuotaReading | undefined;
  for (const reading of [...quota.client, ...quota.organization]) {
    if (
      tightest === undefined ||
      reading.remaining < tightest.remaining ||
      (reading.remaining === tightest.remaining && reading.resetsInSeconds > tightest.resetsInSeconds)
    ) {
      tightest = reading;
    }
  }
  return tightest;
}

/**
 * Seconds until every used-up bucket (`remaining` 0) has reset: how long asking again is
 * pointless. `undefined` when no bucket is used up.
 */
export function quotaExhaustedForSeconds(quota: QuotaHeaders): number | undefined {
  let wait: number | undefined;
  for (const reading of [...quota.client, ...quota.organization]) {
    if (reading.remaining === 0) wait = Math.max(wait ?? 0, reading.resetsInSeconds);
  }
  return wait;
}

/** `per_hour 7/10 left, resets in 3540 s`: for log messages. */
export function describeQuota(reading: QuotaReading): string {
  return `${reading.bucket} ${reading.remaining}/${reading.limit} left, resets in ${reading.resetsInSeconds} s`;
}

function parseBucket(text: string): QuotaReading | undefined {
  const fields = new Map<string, string>();
  let bucket: string | undefined;
  for (const raw of text.split(';')) {
    const part = raw.trim();
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq === -1) {
      // The bare form: the bucket name comes first, with no `b=`.
      if (bucket !== undefined || fields.size > 0 || !BUCKET_NAME.test(part)) return undefined;
      bucket = part;
      continue;
    }
    const key = part.slice(0, eq).trim().toLowerCase();
    const value = part.slice(eq + 1).trim();
    if (fields.has(key)) return undefined; // ambiguous: which one would Auth0 mean?
    fields.set(key, value);
  }
  const named = fields.get('b');
  if (named !== undefined) {
    if (bucket !== undefined || !BUCKET_NAME.test(named)) return undefined;
    bucket = named;
  }
  const limit = integer(fields.get('q'));
  const remaining = integer(fields.get('r'));
  const resetsInSeconds = integer(fields.get('t'));
  if (bucket === undefined || limit === undefined || remaining === undefined || resetsInSeconds === undefined) return undefined;
  if (limit < 0 || resetsInSeconds < 0) return undefined;
  // Under `enforce: false` Auth0 keeps counting past the quota; "nothing left" is all that means to us.
  return { bucket, limit, remaining: Math.max(0, remaining), resetsInSeconds };
}

function integer(value: string | undefined): number | undefined {
  return value !== undefined && INTEGER.test(value) ? Number(value) : undefined;
}
