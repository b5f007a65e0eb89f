/**
 * The token vendor's core: authorize, then serve from the instance cache, then from the
 * fleet-wide store, and only then fetch from the IdP — with exactly one fetch in flight per
 * token for the whole fleet. Knows nothing of API Gateway or Lambda.
 *
 * Semantics follow golang.org/x/oauth2's ReuseTokenSource: a cached token is used until a
 * margin before its expiry, and the expiry is counted from the moment the IdP's response arrived.
 * On top of that:
 * - refresh-ahead: past a token's refresh point, callers keep getting it at once while one
 *   instance (holding the lease) replaces it in the background;
 * - resilience: transient IdP failures are retried with full-jitter back-off inside a deadline;
 *   429s and exhausted retries pause the whole fleet for that client (recorded in DynamoDB);
 *   a quota guard caps fetches per client per hour; if DynamoDB fails, the instance carries on
 *   with its own cache and single flight.
 */
import { randomUUID } from 'node:crypto';
import type { AuthorizedRequest, GrantBook } from './grants.js';
import { parseScope } from './grants.js';
import {
  describe,
  IdpBackoffError,
  IdpRateLimitedError,
  IdpRejectedError,
  IdpUnavailableError,
  InvalidTokenResponseError,
  LeaseTimeoutError,
  QuotaGuardError,
  StoreUnavailableError,
} from './errors.js';
import type { Caller } from './principal.js';
import type {
  Backoff,
  CachedToken,
  ClientCredentials,
  CredentialSource,
  FetchCause,
  IssuedToken,
  Log,
  Observer,
  TokenEndpoint,
  TokenFetchRequest,
  TokenStore,
} from './ports.js';
import { cacheKey, clientKey, fingerprint } from './tokenIdentity.js';

export interface TokenServiceOptions {
  /**
   * A token is not served once fewer than this many seconds are left (capped at half the
   * token's lifetime, so a short-lived token is still cacheable).
   */
  readonly earlyExpirySeconds: number;
  /**
   * Refresh-ahead: a token is refreshed once this fraction of its lifetime is left (default
   * 0.25), and in any case no later than the early-expiry margin.
   */
  readonly refreshAheadRatio: number;
  /** How long a fetch lease is held before others may take it over (must outlast one fetch, retries included). */
  readonly leaseTtlMs: number;
  /** How long a request waits for another instance's fetch before answering 503. */
  readonly leaseWaitMs: number;
  /** Entries kept in the instance cache; the oldest is dropped past this. */
  readonly memoryCacheEntries: number;
  /** Total time one fetch may take, retries of transient failures included. */
  readonly idpDeadlineMs: number;
  /** The longest one attempt can take: a retry starts only if it can finish inside the deadline. */
  readonly idpAttemptMs: number;
  /** Full-jitter back-off between retries: base and cap, ms. */
  readonly retryBaseMs: number;
  readonly retryCapMs: number;
  /** Fleet-wide pause after a fetch failed transiently even with retries, seconds. */
  readonly failureBackoffSeconds: number;
  /** Quota guard: most IdP fetches per client per hour across the fleet; 0 = no cap. */
  readonly quotaPerClientPerHour: number;
  /** A token's last use is written to the store at most this often per instance. */
  readonly usageWriteIntervalMs: number;
  /** A memory entry is checked against the store at most this often (a flush reaches every instance within it). */
  readonly memoryRevalidateMs: number;
}

export interface TokenServiceDeps {
  readonly grants: GrantBook;
  readonly credentials: CredentialSource;
  readonly idp: TokenEndpoint;
  readonly store: TokenStore;
  readonly observer: Observer;
  readonly log: Log;
  /** epoch milliseconds; injectable so tests control time (Go's `timeNow`) */
  readonly now?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
  /** [0, 1); injectable so tests control jitter */
  readonly random?: () => number;
}

export interface VendRequest {
  readonly caller: Caller;
  readonly audience: string;
  readonly scope?: string | undefined;
}

/** What a caller receives (RFC 6749 §5.1), with `expires_in` recomputed at serve time. */
export interface VendedToken {
  readonly access_token: string;
  readonly token_type: 'Bearer';
  readonly expires_in: number;
  readonly scope: string;
}

/** What one scheduled refresh did with one token. */
export type RefreshOutcome = 'refreshed' | 'fresh' | 'busy' | 'failed';

type FetchRequest = TokenFetchRequest & { readonly key: string; readonly clientKey: string };

/**
 * Retries per fetch, whatever the deadline says: with full jitter a pause can be near zero, and
 * a deadline alone would let a fast-failing IdP be hit many times in a row.
 */
const MAX_ATTEMPTS = 5;
const WAIT_STEP_MIN_MS = 25;
const WAIT_STEP_MAX_MS = 250;
/** After a background refresh fails, this instance leaves the key alone for a while. */
const REFRESH_RETRY_MS = 10_000;

export class TokenService {
  private readonly memory = new Map<string, CachedToken>();
  /** when each memory entry was last known to match the store */
  private readonly memoryCheckedAt = new Map<string, number>();
  private readonly inFlight = new Map<string, Promise<CachedToken>>();
  private readonly refreshing = new Map<string, Promise<RefreshOutcome>>();
  private readonly refreshFailedAt = new Map<string, number>();
  private readonly lastTouch = new Map<string, number>();
  private readonly backoffs = new Map<string, Backoff>();
  /** the quota guard's fallback while DynamoDB is unavailable: this instance's own count */
  private readonly localFetchCounts = new Map<string, number>();
  private readonly instanceId = randomUUID();
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;

  constructor(
    private readonly deps: TokenServiceDeps,
    private readonly options: TokenServiceOptions,
  ) {
    this.now = deps.now ?? Date.now;
    this.sleep = deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.random = deps.random ?? Math.random;
  }

  /**
   * Vend a token for `request`.
   * @throws AccessDeniedError / InvalidRequestError for the caller's mistakes; IdpRejectedError,
   *   IdpUnavailableError (and its kinds), InvalidTokenResponseError, LeaseTimeoutError otherwise
   */
  async vend(request: VendRequest): Promise<VendedToken> {
    return this.tokenFor(this.deps.grants.authorize(request.caller, request.audience, request.scope));
  }

  /**
   * A token for a request the caller is already authorized for — by the grants (vend) or by the
   * deployment itself (the rotator's Management API token, from the grants' `rotation` setting).
   */
  async tokenFor(authorized: AuthorizedRequest): Promise<VendedToken> {
    const fetchRequest = await this.prepare(authorized);
    const { key } = fetchRequest;

    let token = this.memory.get(key);
    if (token !== undefined && this.isUsable(token) && this.isStale(key)) token = await this.revalidate(token);
    if (token !== undefined && this.isUsable(token)) {
      if (this.isDue(token)) token = await this.adoptNewerOrRefresh(token, fetchRequest);
      else this.deps.observer.cacheHit('memory');
    } else {
      if (token !== undefined) this.memory.delete(key);
      token = await this.singleFlight(key, () => this.fromFleet(fetchRequest));
    }
    await this.recordUse(token);
    return this.serve(token);
  }

  /**
   * Refresh (or prefetch) one token now, for the scheduled refresher: does nothing if the stored
   * token is not due within `lookaheadMs`, or if another instance holds the lease.
   */
  async refresh(authorized: AuthorizedRequest, lookaheadMs: number): Promise<RefreshOutcome> {
    const fetchRequest = await this.prepare(authorized);
    const stored = await this.readStore(fetchRequest.key);
    if (stored !== undefined && this.isUsable(stored) && this.refreshAt(stored) > this.now() + lookaheadMs) {
      return 'fresh';
    }
    return this.backgroundRefresh(fetchRequest, 'scheduled', lookaheadMs);
  }

  /**
   * Forget every token of a client (or of one of its audiences) in this instance and the fleet's
   * store: ops' answer to "a token leaked". Other instances drop theirs at their next
   * revalidation, within `memoryRevalidateMs`.
   * @returns the number of tokens removed from the store
   */
  async flush(clientName: string, audience?: string): Promise<number> {
    for (const [key, token] of this.memory) {
      if (token.client === clientName && (audience === undefined || token.audience === audience)) this.memory.delete(key);
    }
    const stored = await this.deps.store.listTokens();
    const doomed = stored.filter((t) => t.client === clientName && (audience === undefined || t.audience === audience));
    for (const token of doomed) await this.deps.store.remove(token.key);
    this.deps.log.warn('flushed cached tokens', { client: clientName, audience, fingerprints: doomed.map((t) => t.fingerprint) });
    return doomed.length;
  }

  /** Resolves once every background refresh started so far has settled (tests, graceful ends). */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.refreshing.values()]);
  }

  private async prepare(authorized: AuthorizedRequest): Promise<FetchRequest> {
    const credentials = await this.deps.credentials.get(authorized.client.secretId);
    return {
      ...authorized,
      credentials,
      key: cacheKey(authorized.client.issuer, credentials.clientId, authorized.audience, authorized.scopes),
      clientKey: clientKey(authorized.client.issuer, credentials.clientId),
    };
  }

  /** One fetch per key inside this instance: concurrent callers await the same promise. */
  private singleFlight(key: string, load: () => Promise<CachedToken>): Promise<CachedToken> {
    const pending = this.inFlight.get(key);
    if (pending !== undefined) return pending;
    const promise = load()
      .then((token) => {
        this.remember(token);
        return token;
      })
      // Evicted on failure as on success: a failure is never cached.
      .finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, promise);
    return promise;
  }

  /**
   * A token in memory is past its refresh point. Another instance or the refresher may already
   * have replaced it in the store (a read, not an IdP call); if not, serve it anyway — it is
   * still valid — and refresh in the background.
   */
  private async adoptNewerOrRefresh(token: CachedToken, request: FetchRequest): Promise<CachedToken> {
    const stored = await this.readStore(request.key);
    if (stored !== undefined && this.isUsable(stored) && !this.isDue(stored) && stored.expiresAt > token.expiresAt) {
      this.remember(stored);
      this.deps.observer.cacheHit('dynamodb');
      return stored;
    }
    this.deps.observer.cacheHit('memory');
    void this.backgroundRefresh(request, 'refresh-ahead', 0);
    return token;
  }

  /**
   * Read the shared store; on a miss take the fleet-wide lease and fetch, or wait for whoever
   * holds it. Expiry is checked on every read: DynamoDB's TTL deletion is lazy and may leave an
   * expired item for days. Without DynamoDB, the instance fetches on its own.
   */
  private async fromFleet(request: FetchRequest): Promise<CachedToken> {
    const started = this.now();
    let waited = 0;
    let waitStep = WAIT_STEP_MIN_MS;
    for (;;) {
      const stored = await this.readStore(request.key);
      if (stored !== undefined && this.isUsable(stored)) {
        this.deps.observer.cacheHit('dynamodb');
        if (this.isDue(stored)) void this.backgroundRefresh(request, 'refresh-ahead', 0);
        return stored;
      }
      const owner = this.newLeaseOwner();
      const lease = await this.takeLease(request.key, owner);
      if (lease !== 'held-elsewhere') {
        try {
          return await this.fetchUnderLease(request, 'miss', lease === 'degraded');
        } finally {
          if (lease === 'taken') await this.releaseLease(request.key, owner);
        }
      }
      // Time is measured both ways (clock and the sum of pauses) so that the wait ends even under
      // a clock that does not move, such as a test's.
      const left = this.options.leaseWaitMs - Math.max(this.now() - started, waited);
      if (left <= 0) {
        this.deps.observer.leaseTimeout();
        this.deps.log.warn('gave up waiting for another instance to fetch', { key: request.key, waitedMs: this.options.leaseWaitMs });
        throw new LeaseTimeoutError('another instance holds the fetch lease', 1);
      }
      this.deps.observer.leaseWait();
      // Jittered, growing steps: a holder's token usually lands within one IdP round trip.
      const pause = Math.min(left, waitStep / 2 + this.random() * (waitStep / 2));
      await this.sleep(pause);
      waited += pause;
      waitStep = Math.min(WAIT_STEP_MAX_MS, waitStep * 2);
    }
  }

  /**
   * Refresh `request`'s token without making anyone wait: under the fleet lease if it is free
   * (someone else refreshing is fine: their token will land in the store), at most once at a
   * time per key in this instance, and not again soon after a failure.
   */
  private backgroundRefresh(request: FetchRequest, cause: FetchCause, lookaheadMs: number): Promise<RefreshOutcome> {
    const running = this.refreshing.get(request.key);
    if (running !== undefined) return running;
    const failedAt = this.refreshFailedAt.get(request.key);
    if (cause === 'refresh-ahead' && failedAt !== undefined && this.now() - failedAt < REFRESH_RETRY_MS) return Promise.resolve('busy');

    const run = async (): Promise<RefreshOutcome> => {
      const owner = this.newLeaseOwner();
      const lease = await this.takeLease(request.key, owner);
      if (lease === 'held-elsewhere') return 'busy';
      try {
        // The lease holder before us may have just refreshed it.
        const stored = await this.readStore(request.key);
        if (stored !== undefined && this.isUsable(stored) && this.refreshAt(stored) > this.now() + lookaheadMs) {
          this.remember(stored);
          return 'fresh';
        }
        const token = await this.fetchUnderLease(request, cause, lease === 'degraded', false);
        this.remember(token);
        this.refreshFailedAt.delete(request.key);
        return 'refreshed';
      } catch (error) {
        this.refreshFailedAt.set(request.key, this.now());
        this.deps.observer.refreshFailed(cause);
        this.deps.log.warn('refresh failed; the current token is served until its expiry margin', {
          key: request.key,
          cause,
          error: describe(error),
        });
        return 'failed';
      } finally {
        if (lease === 'taken') await this.releaseLease(request.key, owner);
      }
    };
    const promise = run().finally(() => this.refreshing.delete(request.key));
    this.refreshing.set(request.key, promise);
    return promise;
  }

  /**
   * Fetch from the IdP and store the result. `recheck` re-reads the store first: another holder
   * may have written the token and released the lease between our read and our acquisition,
   * and that case should cost a read, not an IdP call.
   */
  private async fetchUnderLease(request: FetchRequest, cause: FetchCause, degraded: boolean, recheck = true): Promise<CachedToken> {
    if (recheck && !degraded) {
      const justWritten = await this.readStore(request.key);
      if (justWritten !== undefined && this.isUsable(justWritten)) {
        this.deps.observer.cacheHit('dynamodb');
        return justWritten;
      }
    }
    if (cause === 'miss') this.deps.observer.cacheMiss();
    const issued = await this.fetchFromIdp(request, cause);
    const scope = this.checkGrantedScope(issued.scope, request);
    const token: CachedToken = {
      ...issued,
      scope,
      key: request.key,
      fingerprint: fingerprint(issued.accessToken),
      client: request.client.name,
      audience: request.audience,
      scopes: request.scopes,
      lastUsedAt: issued.fetchedAt,
    };
    if (!this.isUsable(token)) {
      throw new InvalidTokenResponseError(`the IdP issued a token that is already within its expiry margin (expires ${token.expiresAt})`);
    }
    await this.guardStore('PutItem', () => this.deps.store.put(token), undefined);
    this.deps.log.info('fetched token from the IdP', {
      key: request.key,
      fingerprint: token.fingerprint,
      client: request.client.name,
      audience: request.audience,
      scope,
      cause,
      expiresAt: token.expiresAt,
    });
    return token;
  }

  /**
   * One fetch, as the fleet's good citizen: not while a back-off is recorded, not past the
   * quota guard, transient failures retried with full jitter inside the deadline, and a 429 (or
   * retries exhausted) recorded as a back-off for every instance.
   */
  private async fetchFromIdp(request: FetchRequest, cause: FetchCause): Promise<IssuedToken> {
    await this.checkBackoff(request.clientKey);
    await this.checkQuota(request.clientKey);
    const started = this.now();
    let paused = 0;
    let credentials = request.credentials;
    let alternatives: ClientCredentials[] | undefined;
    for (let attempt = 0; ; attempt += 1) {
      this.deps.observer.idpFetch(cause);
      try {
        const issued = await this.deps.idp.fetchToken({ ...request, credentials });
        if (credentials !== request.credentials) this.deps.credentials.prefer(request.client.secretId, credentials);
        return issued;
      } catch (error) {
        const code = typeof (error as { code?: unknown }).code === 'string' ? (error as { code: string }).code : 'unknown';
        this.deps.observer.idpError(error instanceof IdpRateLimitedError ? 'rate_limited' : code);
        if (error instanceof IdpRejectedError && error.code === 'invalid_client') {
          // Auth0's rotate-secret kills the old secret at once: the new one may already be
          // AWSCURRENT (a finished rotation) or still AWSPENDING (one in progress). Try each
          // once; nothing learnt from the failure is cached.
          alternatives ??= await this.deps.credentials.alternatives(request.client.secretId, credentials);
          const next = alternatives.shift();
          if (next === undefined) throw error;
          this.deps.log.warn('the IdP refused the client credentials; trying the secret as it is now (rotation?)', { client: request.client.name });
          credentials = next;
          continue;
        }
        if (error instanceof IdpRateLimitedError) {
          await this.recordBackoff(request.clientKey, { until: this.now() + error.retryAfterSeconds * 1000, reason: 'rate_limited' });
          throw error;
        }
        if (!(error instanceof IdpUnavailableError)) throw error;
        // Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter").
        const pause = this.random() * Math.min(this.options.retryCapMs, this.options.retryBaseMs * 2 ** attempt);
        const spent = Math.max(this.now() - started, paused);
        if (attempt + 1 >= MAX_ATTEMPTS || spent + pause + this.options.idpAttemptMs > this.options.idpDeadlineMs) {
          const until = this.now() + this.options.failureBackoffSeconds * 1000;
          await this.recordBackoff(request.clientKey, { until, reason: 'unavailable' });
          throw new IdpUnavailableError(`${error.message} (after ${attempt + 1} attempts)`, Math.max(error.retryAfterSeconds, this.options.failureBackoffSeconds), { cause: error });
        }
        this.deps.log.debug('retrying the IdP', { attempt: attempt + 1, pauseMs: Math.round(pause), error: describe(error) });
        await this.sleep(pause);
        paused += pause;
      }
    }
  }

  private async checkBackoff(clientKey: string): Promise<void> {
    const now = this.now();
    let backoff = this.backoffs.get(clientKey);
    if (backoff === undefined || backoff.until <= now) {
      backoff = await this.guardStore('GetItem', () => this.deps.store.getBackoff(clientKey), undefined);
      if (backoff !== undefined) this.backoffs.set(clientKey, backoff);
    }
    if (backoff !== undefined && backoff.until > now) {
      this.deps.observer.backoffActive();
      throw new IdpBackoffError(`backing off from the IdP (${backoff.reason}) until ${new Date(backoff.until).toISOString()}`, Math.ceil((backoff.until - now) / 1000));
    }
  }

  private async recordBackoff(clientKey: string, backoff: Backoff): Promise<void> {
    const known = this.backoffs.get(clientKey);
    if (known === undefined || known.until < backoff.until) this.backoffs.set(clientKey, backoff);
    this.deps.observer.backoffRecorded(backoff.reason);
    this.deps.log.warn('backing off from the IdP', { clientKey, reason: backoff.reason, until: new Date(backoff.until).toISOString() });
    await this.guardStore('PutItem', () => this.deps.store.putBackoff(clientKey, backoff), undefined);
  }

  /** The quota guard: a fleet-wide count per client per clock hour; this instance's own count without DynamoDB. */
  private async checkQuota(clientKey: string): Promise<void> {
    const cap = this.options.quotaPerClientPerHour;
    if (cap <= 0) return;
    const hourStart = Math.floor(this.now() / 3_600_000) * 3_600_000;
    const localKey = `${clientKey}#${hourStart}`;
    const local = (this.localFetchCounts.get(localKey) ?? 0) + 1;
    this.localFetchCounts.set(localKey, local);
    const allowed = await this.guardStore('UpdateItem', () => this.deps.store.countFetch(clientKey, hourStart, cap), local <= cap);
    if (!allowed) {
      this.deps.observer.quotaGuardTripped();
      this.deps.log.error('quota guard: hourly cap on IdP fetches reached', { clientKey, cap });
      throw new QuotaGuardError(`quota guard: ${cap} fetches this hour for client ${clientKey}`, Math.max(1, Math.ceil((hourStart + 3_600_000 - this.now()) / 1000)));
    }
  }

  /** Record the token's use, at most once per interval per instance; never fails a request. */
  private async recordUse(token: CachedToken): Promise<void> {
    const now = this.now();
    const last = this.lastTouch.get(token.key) ?? token.lastUsedAt ?? 0;
    if (now - last < this.options.usageWriteIntervalMs) return;
    this.lastTouch.set(token.key, now);
    await this.guardStore('UpdateItem', () => this.deps.store.touch(token.key, now), undefined);
  }

  private async takeLease(key: string, owner: string): Promise<'taken' | 'held-elsewhere' | 'degraded'> {
    try {
      return (await this.deps.store.acquireLease(key, owner, this.now() + this.options.leaseTtlMs)) ? 'taken' : 'held-elsewhere';
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      // Without DynamoDB there is no fleet-wide lease: this instance's single flight still
      // holds, so the IdP sees at most one fetch per instance.
      this.degraded('PutItem', error);
      return 'degraded';
    }
  }

  private async releaseLease(key: string, owner: string): Promise<void> {
    // The lease expires on its own; a failed release only delays the next fetcher.
    await this.guardStore('DeleteItem', () => this.deps.store.releaseLease(key, owner), undefined);
  }

  private readStore(key: string): Promise<CachedToken | undefined> {
    return this.guardStore('GetItem', () => this.deps.store.get(key), undefined);
  }

  /** Run a store operation; if DynamoDB is unavailable, note it and carry on with `fallback`. */
  private async guardStore<T>(operation: string, run: () => Promise<T>, fallback: T): Promise<T> {
    try {
      return await run();
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      this.degraded(operation, error);
      return fallback;
    }
  }

  private degraded(operation: string, error: StoreUnavailableError): void {
    this.deps.observer.storeDegraded(operation);
    this.deps.log.warn('DynamoDB unavailable; serving from the instance cache', { operation, error: describe(error) });
  }

  /**
   * The IdP may grant fewer scopes than asked (RFC 6749 §3.3) but never more: a caller must not
   * end up holding more than its grant. An omitted `scope` means exactly what was asked.
   */
  private checkGrantedScope(granted: string, request: TokenFetchRequest): string {
    if (granted === '') return request.scopes.join(' ');
    const grantedScopes = parseScope(granted);
    const extra = grantedScopes.filter((s) => !request.scopes.includes(s));
    if (extra.length > 0) {
      throw new InvalidTokenResponseError(`the IdP granted scopes that were not requested: ${extra.join(' ')}`);
    }
    return grantedScopes.join(' ');
  }

  private newLeaseOwner(): string {
    return `${this.instanceId}/${randomUUID()}`;
  }

  /** Memory entries are checked against the store at most this often: how a flush reaches every instance. */
  private isStale(key: string): boolean {
    return this.now() - (this.memoryCheckedAt.get(key) ?? 0) >= this.options.memoryRevalidateMs;
  }

  /**
   * One read, at most once per interval per key: if the store no longer has this token (flushed
   * by ops) drop it; if it has a newer one, take it. Without DynamoDB, keep serving memory.
   */
  private async revalidate(token: CachedToken): Promise<CachedToken | undefined> {
    let stored: CachedToken | undefined;
    try {
      stored = await this.deps.store.get(token.key);
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      this.degraded('GetItem', error);
      this.memoryCheckedAt.set(token.key, this.now());
      return token;
    }
    if (stored === undefined) {
      this.memory.delete(token.key);
      this.memoryCheckedAt.delete(token.key);
      this.deps.log.info('token no longer in the store (flushed); dropping it', { fingerprint: token.fingerprint });
      return undefined;
    }
    this.memoryCheckedAt.set(token.key, this.now());
    if (stored.fingerprint !== token.fingerprint && this.isUsable(stored)) {
      this.remember(stored);
      return stored;
    }
    return token;
  }

  private remember(token: CachedToken): void {
    this.memory.delete(token.key);
    this.memory.set(token.key, token);
    this.memoryCheckedAt.set(token.key, this.now());
    if (this.memory.size > this.options.memoryCacheEntries) {
      const oldest = this.memory.keys().next();
      if (oldest.done !== true) this.memory.delete(oldest.value);
    }
  }

  /** The early-expiry margin: at most half the lifetime. */
  private margin(token: IssuedToken): number {
    const lifetime = token.expiresAt - token.fetchedAt / 1000;
    return Math.min(this.options.earlyExpirySeconds, lifetime / 2);
  }

  /** Usable while more than the margin is left. */
  private isUsable(token: IssuedToken): boolean {
    return this.now() / 1000 < token.expiresAt - this.margin(token);
  }

  /** epoch ms at which a token should be replaced: a share of its lifetime left, and before the margin. */
  refreshAt(token: IssuedToken): number {
    const lifetime = token.expiresAt - token.fetchedAt / 1000;
    const byRatio = token.expiresAt - lifetime * this.options.refreshAheadRatio;
    return Math.min(byRatio, token.expiresAt - this.margin(token)) * 1000;
  }

  private isDue(token: IssuedToken): boolean {
    return this.now() >= this.refreshAt(token);
  }

  private serve(token: CachedToken): VendedToken {
    return {
      access_token: token.accessToken,
      token_type: 'Bearer',
      // Whole seconds left now, never the lifetime the IdP first announced.
      expires_in: Math.floor(token.expiresAt - this.now() / 1000),
      scope: token.scope,
    };
  }
}
