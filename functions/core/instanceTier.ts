/**
 * The instance tier: what one Lambda instance keeps between invocations. It owns every per-key
 * map of the instance and evicts them together, so a key dropped from the cache leaves nothing
 * behind: the tokens (least recently stored first out), when each was last checked against the
 * fleet's store, when its use was last recorded, and when a background refresh of it last failed.
 *
 * Single flight, as jose's `createRemoteJWKSet` keeps its `pendingFetch`: concurrent callers of
 * one key await the same promise, and the promise is dropped when it settles, on failure as on
 * success, so a failure is never cached.
 */
import type { CachedToken } from './ports.js';

/** One promise in flight per key; dropped when it settles. */
export class SingleFlight<T> {
  private readonly pending = new Map<string, Promise<T>>();

  run(key: string, load: () => Promise<T>): Promise<T> {
    const running = this.pending.get(key);
    if (running !== undefined) return running;
    const promise = load().finally(() => this.pending.delete(key));
    this.pending.set(key, promise);
    return promise;
  }

  /** Resolves once everything in flight now has settled. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.pending.values()]);
  }
}

export interface InstanceTierOptions {
  /** Entries kept; the least recently stored is dropped past this. */
  readonly maxEntries: number;
  /** A memory entry is checked against the store at most this often (a flush reaches every instance within it). */
  readonly revalidateMs: number;
  /** A token's use is recorded at most this often. */
  readonly usageWriteIntervalMs: number;
  /** After a background refresh of a key fails, the key is left alone this long. */
  readonly refreshRetryMs: number;
}

/** What a background refresh did. */
export type RefreshOutcome = 'refreshed' | 'fresh' | 'busy' | 'failed';

export class InstanceTier {
  private readonly tokens = new Map<string, CachedToken>();
  /** when each entry was last known to match the store */
  private readonly checkedAt = new Map<string, number>();
  /** when each key's use was last recorded */
  private readonly touchedAt = new Map<string, number>();
  private readonly refreshFailedAt = new Map<string, number>();
  /** callers' misses: one load per key */
  private readonly loads = new SingleFlight<CachedToken>();
  /** background refreshes: one per key */
  private readonly refreshes = new SingleFlight<RefreshOutcome>();

  constructor(
    private readonly options: InstanceTierOptions,
    private readonly now: () => number,
  ) {}

  get(key: string): CachedToken | undefined {
    return this.tokens.get(key);
  }

  remember(token: CachedToken): void {
    this.tokens.delete(token.key);
    this.tokens.set(token.key, token);
    this.checkedAt.set(token.key, this.now());
    if (this.tokens.size > this.options.maxEntries) {
      const oldest = this.tokens.keys().next();
      if (oldest.done !== true) this.forget(oldest.value);
    }
  }

  /** Drop a key and everything kept about it. */
  forget(key: string): void {
    this.tokens.delete(key);
    this.checkedAt.delete(key);
    this.touchedAt.delete(key);
    this.refreshFailedAt.delete(key);
  }

  /** Drop every token matching `doomed` (ops' flush). */
  forgetWhere(doomed: (token: CachedToken) => boolean): void {
    for (const [key, token] of this.tokens) if (doomed(token)) this.forget(key);
  }

  /** Whether the entry is due for its check against the store. */
  needsRevalidation(key: string): boolean {
    return this.now() - (this.checkedAt.get(key) ?? Number.NEGATIVE_INFINITY) >= this.options.revalidateMs;
  }

  markChecked(key: string): void {
    if (this.tokens.has(key)) this.checkedAt.set(key, this.now());
  }

  /** Load a missing token once for all concurrent callers, and keep it. */
  load(key: string, load: () => Promise<CachedToken>): Promise<CachedToken> {
    return this.loads.run(key, async () => {
      const token = await load();
      this.remember(token);
      return token;
    });
  }

  /**
   * Run a background refresh of `key` unless one is running (join it) or one failed within
   * `refreshRetryMs` and `retryAfterFailure` is false (a caller's refresh-ahead backs off; the
   * schedule and ops do not).
   */
  refreshOnce(key: string, retryAfterFailure: boolean, refresh: () => Promise<RefreshOutcome>): Promise<RefreshOutcome> {
    const failedAt = this.refreshFailedAt.get(key);
    if (!retryAfterFailure && failedAt !== undefined && this.now() - failedAt < this.options.refreshRetryMs) {
      return this.refreshes.run(key, async () => 'busy');
    }
    return this.refreshes.run(key, async () => {
      // A refresh that throws counts as failed, like one that says so.
      const outcome = await refresh().catch((): RefreshOutcome => 'failed');
      // Only for keys this instance keeps: the map is evicted with them.
      if (outcome === 'failed' && this.tokens.has(key)) this.refreshFailedAt.set(key, this.now());
      else if (outcome === 'refreshed') this.refreshFailedAt.delete(key);
      return outcome;
    });
  }

  /**
   * Whether this use of `token` should be written to the store: at most once per interval per
   * instance. Counts it as written.
   */
  claimUseRecord(token: CachedToken): boolean {
    const now = this.now();
    const last = this.touchedAt.get(token.key) ?? token.lastUsedAt ?? 0;
    if (now - last < this.options.usageWriteIntervalMs) return false;
    if (this.tokens.has(token.key)) this.touchedAt.set(token.key, now);
    return true;
  }

  /** Resolves once every background refresh started so far has settled. */
  idle(): Promise<void> {
    return this.refreshes.settled();
  }
}
