/**
 * Running without DynamoDB, as a {@link TokenStore} that wraps a TokenStore. When the shared
 * table is unavailable (throttling, an outage, KMS failing the seal), an instance carries on with
 * its own cache and single flight: a read is a miss, a write is skipped, the fleet's back-off is
 * this instance's own, and the quota guard counts this instance's fetches. Each time, the
 * observer and the log say so.
 *
 * Not degraded: `listTokens` and `remove` (the refresher and ops must learn that the table is
 * unreachable), and the lease operations, which {@link FleetLease} degrades itself because it must
 * tell "no lease without DynamoDB" from "someone else holds it".
 */
import { StoreUnavailableError, describe } from './errors.js';
import type { Backoff, CachedToken, Log, Observer, TokenRecord, TokenStore } from './ports.js';

/** What a read that must tell "gone" from "cannot tell" returns when DynamoDB is down. */
export const UNAVAILABLE = Symbol('store unavailable');

export class DegradedModeStore implements TokenStore {
  /** the quota guard's fallback: this instance's own fetch count per client and hour */
  private readonly localFetchCounts = new Map<string, number>();
  private countsHour = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly store: TokenStore,
    private readonly observer: Pick<Observer, 'storeDegraded'>,
    private readonly log: Log,
  ) {}

  /** A read that tells a missing item from an unavailable store (revalidation: gone means flushed). */
  async probe(key: string): Promise<CachedToken | undefined | typeof UNAVAILABLE> {
    return this.guard<CachedToken | undefined | typeof UNAVAILABLE>('GetItem', () => this.store.get(key), UNAVAILABLE);
  }

  get(key: string): Promise<CachedToken | undefined> {
    return this.guard('GetItem', () => this.store.get(key), undefined);
  }

  put(token: CachedToken): Promise<void> {
    return this.guard('PutItem', () => this.store.put(token), undefined);
  }

  touch(key: string, atMs: number): Promise<void> {
    return this.guard('UpdateItem', () => this.store.touch(key, atMs), undefined);
  }

  getBackoff(clientKey: string): Promise<Backoff | undefined> {
    return this.guard('GetItem', () => this.store.getBackoff(clientKey), undefined);
  }

  putBackoff(clientKey: string, backoff: Backoff): Promise<void> {
    return this.guard('PutItem', () => this.store.putBackoff(clientKey, backoff), undefined);
  }

  /** The fleet's count while DynamoDB answers; this instance's own count while it does not. */
  countFetch(clientKey: string, hourStartMs: number, cap: number): Promise<boolean> {
    // A new hour starts every count afresh: the map only ever holds the current hour's clients.
    if (hourStartMs > this.countsHour) {
      this.localFetchCounts.clear();
      this.countsHour = hourStartMs;
    }
    const local = (this.localFetchCounts.get(clientKey) ?? 0) + 1;
    this.localFetchCounts.set(clientKey, local);
    return this.guard('UpdateItem', () => this.store.countFetch(clientKey, hourStartMs, cap), local <= cap);
  }

  acquireLease(name: string, owner: string, untilMs: number): Promise<boolean> {
    return this.store.acquireLease(name, owner, untilMs);
  }

  renewLease(name: string, owner: string, untilMs: number): Promise<boolean> {
    return this.store.renewLease(name, owner, untilMs);
  }

  releaseLease(name: string, owner: string): Promise<void> {
    return this.store.releaseLease(name, owner);
  }

  listTokens(): Promise<TokenRecord[]> {
    return this.store.listTokens();
  }

  remove(key: string): Promise<void> {
    return this.store.remove(key);
  }

  /** Note that the store failed and carry on without it. */
  degraded(operation: string, error: StoreUnavailableError): void {
    this.observer.storeDegraded(operation);
    this.log.warn('DynamoDB unavailable; serving from the instance cache', { operation, error: describe(error) });
  }

  private async guard<T>(operation: string, run: () => Promise<T>, fallback: T): Promise<T> {
    try {
      return await run();
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      this.degraded(operation, error);
      return fallback;
    }
  }
}
