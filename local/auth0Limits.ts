/**
 * The local Auth0 tenant's counters: the tenant-wide rate limit (docs/auth0-wire-behaviour.md §8)
 * and the fine-grained M2M token quotas per client and per organization (§9). Pure bookkeeping:
 * the tenant (auth0Tenant.ts) decides when to count, and auth0Answers.ts shapes the headers.
 * Time is `Date.now()` unless given, so a test or the bench that moves the clock moves these too.
 */

/** A token bucket: `limit` requests at once (the burst), refilled at `perSecond` requests a second. */
export interface RateLimit {
  limit: number;
  perSecond: number;
}

/** What `X-RateLimit-*` report after a request (§8). */
export interface RateLimitState {
  limit: number;
  remaining: number;
  /** epoch seconds: when the next request is added to the bucket (§8: "UNIX timestamp, in seconds") */
  reset: number;
  /** whole seconds until a request is let through again, at least 1 */
  retryAfter: number;
}

export function checkedRateLimit(rate: RateLimit, what = 'rate limit'): RateLimit {
  const ok = (value: number): boolean => Number.isFinite(value) && value > 0;
  if (!ok(rate.limit) || !Number.isInteger(rate.limit) || !ok(rate.perSecond)) {
    throw new Error(`${what} needs a positive integer limit and a positive perSecond, got ${JSON.stringify(rate)}`);
  }
  return { limit: rate.limit, perSecond: rate.perSecond };
}

/** The tenant-wide limit of one API (§8: the headers "always report tenant-level capacity"). */
export class TokenBucket {
  #rate: RateLimit;
  #tokens: number;
  #at: number;

  constructor(rate: RateLimit, now = Date.now()) {
    this.#rate = checkedRateLimit(rate);
    this.#tokens = this.#rate.limit;
    this.#at = now;
  }

  /** a new limit, with a full bucket */
  set(rate: RateLimit, now = Date.now()): void {
    this.#rate = checkedRateLimit(rate);
    this.#tokens = this.#rate.limit;
    this.#at = now;
  }

  /** Counts one request (a refused one too, §9: "Requests that result in a 429 … count"); allowed = the bucket had room. */
  take(now = Date.now()): { allowed: boolean; state: RateLimitState } {
    // A clock moved back (a test restoring real time) refills nothing and does not stall the bucket.
    const elapsed = Math.max(0, now - this.#at);
    this.#at = now;
    this.#tokens = Math.min(this.#rate.limit, this.#tokens + (elapsed * this.#rate.perSecond) / 1000);
    const allowed = this.#tokens >= 1;
    if (allowed) this.#tokens -= 1;
    const whole = Math.floor(this.#tokens);
    const msUntilNext = this.#tokens >= this.#rate.limit ? 0 : ((whole + 1 - this.#tokens) * 1000) / this.#rate.perSecond;
    return {
      allowed,
      state: {
        limit: this.#rate.limit,
        remaining: whole,
        reset: Math.ceil((now + msUntilNext) / 1000),
        retryAfter: Math.max(1, Math.ceil(msUntilNext / 1000)),
      },
    };
  }
}

/**
 * A fine-grained M2M token quota (§9, Early Access): tokens per UTC hour and/or per UTC day.
 * `enforce: false` only reports (headers), never refuses.
 */
export interface M2mQuota {
  perHour?: number;
  perDay?: number;
  /** default true */
  enforce?: boolean;
}

export type QuotaBucketName = 'per_hour' | 'per_day';

/** One bucket as the quota headers report it (§9: `b=…;q=…;r=…;t=…`). */
export interface QuotaBucket {
  name: QuotaBucketName;
  quota: number;
  /** what remains; negative only past the quota when not enforced */
  remaining: number;
  /** seconds until the bucket resets (`t`) */
  resetsIn: number;
  /** epoch seconds of that reset */
  resetAt: number;
}

/** §9: "resets at the beginning of each UTC hour" / "each UTC day". */
const PERIOD_MS: Record<QuotaBucketName, number> = { per_hour: 3_600_000, per_day: 86_400_000 };

interface QuotaEntry {
  quota: Readonly<Record<QuotaBucketName, number | undefined>>;
  enforce: boolean;
  /** tokens counted in the current period of each bucket */
  used: Map<QuotaBucketName, { period: number; count: number }>;
}

export function checkedQuota(quota: M2mQuota, what: string): M2mQuota {
  const ok = (value: number | undefined): boolean => value === undefined || (Number.isInteger(value) && value > 0);
  if ((quota.perHour === undefined && quota.perDay === undefined) || !ok(quota.perHour) || !ok(quota.perDay)) {
    throw new Error(`${what}: give perHour and/or perDay as positive integers, got ${JSON.stringify(quota)}`);
  }
  return quota;
}

/** Quotas keyed by client id (or by organization id, in a second book). */
export class QuotaBook {
  readonly #entries = new Map<string, QuotaEntry>();

  /** configure (counting from zero) or, with null, remove the quota of `key` */
  set(key: string, quota: M2mQuota | null): void {
    if (quota === null) {
      this.#entries.delete(key);
      return;
    }
    checkedQuota(quota, `quota of ${key}`);
    this.#entries.set(key, {
      quota: { per_hour: quota.perHour, per_day: quota.perDay },
      enforce: quota.enforce ?? true,
      used: new Map(),
    });
  }

  /** the buckets of `key` now, per_hour first; [] when no quota applies */
  buckets(key: string, now = Date.now()): QuotaBucket[] {
    const entry = this.#entries.get(key);
    if (!entry) return [];
    const buckets: QuotaBucket[] = [];
    for (const name of ['per_hour', 'per_day'] as const) {
      const quota = entry.quota[name];
      if (quota === undefined) continue;
      const period = Math.floor(now / PERIOD_MS[name]);
      const usage = entry.used.get(name);
      const count = usage?.period === period ? usage.count : 0;
      const resetAtMs = (period + 1) * PERIOD_MS[name];
      buckets.push({ name, quota, remaining: quota - count, resetsIn: Math.ceil((resetAtMs - now) / 1000), resetAt: resetAtMs / 1000 });
    }
    return buckets;
  }

  /** an enforced bucket with nothing left (the one that resets last), or undefined */
  exhausted(key: string, now = Date.now()): QuotaBucket | undefined {
    if (this.#entries.get(key)?.enforce !== true) return undefined;
    return this.buckets(key, now)
      .filter((bucket) => bucket.remaining <= 0)
      .sort((a, b) => b.resetsIn - a.resetsIn)[0];
  }

  /** counts one issued token in every bucket of `key` */
  consume(key: string, now = Date.now()): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    for (const name of ['per_hour', 'per_day'] as const) {
      if (entry.quota[name] === undefined) continue;
      const period = Math.floor(now / PERIOD_MS[name]);
      const usage = entry.used.get(name);
      entry.used.set(name, { period, count: usage?.period === period ? usage.count + 1 : 1 });
    }
  }
}
