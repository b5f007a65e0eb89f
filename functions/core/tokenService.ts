/**
 * The token vendor's core: authorize, then serve from the instance cache, then from the
 * fleet-wide store, and only then fetch from the IdP — with exactly one fetch in flight per
 * token for the whole fleet. Knows nothing of API Gateway or Lambda.
 *
 * Semantics follow golang.org/x/oauth2's ReuseTokenSource: a cached token is used until a
 * margin before its expiry, and the expiry is counted from the moment the IdP's response arrived.
 */
import { randomUUID } from 'node:crypto';
import type { GrantBook } from './grants.js';
import { parseScope } from './grants.js';
import { InvalidTokenResponseError, LeaseTimeoutError } from './errors.js';
import type { Caller } from './principal.js';
import type { CachedToken, CredentialSource, IssuedToken, Log, Observer, TokenEndpoint, TokenFetchRequest, TokenStore } from './ports.js';
import { cacheKey, fingerprint } from './tokenIdentity.js';

export interface TokenServiceOptions {
  /**
   * A token is not served once fewer than this many seconds are left (capped at half the
   * token's lifetime, so a short-lived token is still cacheable).
   */
  readonly earlyExpirySeconds: number;
  /** How long a fetch lease is held before others may take it over (must outlast one IdP call). */
  readonly leaseTtlMs: number;
  /** How long a request waits for another instance's fetch before answering 503. */
  readonly leaseWaitMs: number;
  /** Entries kept in the instance cache; the oldest is dropped past this. */
  readonly memoryCacheEntries: number;
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

const WAIT_STEP_MIN_MS = 25;
const WAIT_STEP_MAX_MS = 250;

export class TokenService {
  private readonly memory = new Map<string, CachedToken>();
  private readonly inFlight = new Map<string, Promise<CachedToken>>();
  private readonly instanceId = randomUUID();
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    private readonly deps: TokenServiceDeps,
    private readonly options: TokenServiceOptions,
  ) {
    this.now = deps.now ?? Date.now;
    this.sleep = deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /**
   * Vend a token for `request`.
   * @throws AccessDeniedError / InvalidRequestError for the caller's mistakes; IdpRejectedError,
   *   IdpUnavailableError, InvalidTokenResponseError, LeaseTimeoutError, StoreUnavailableError otherwise
   */
  async vend(request: VendRequest): Promise<VendedToken> {
    const authorized = this.deps.grants.authorize(request.caller, request.audience, request.scope);
    const credentials = await this.deps.credentials.get(authorized.client.secretId);
    const key = cacheKey(authorized.client.issuer, credentials.clientId, authorized.audience, authorized.scopes);

    const cached = this.memory.get(key);
    let token: CachedToken;
    if (cached !== undefined && this.isUsable(cached)) {
      this.deps.observer.cacheHit('memory');
      token = cached;
    } else {
      if (cached !== undefined) this.memory.delete(key);
      token = await this.singleFlight(key, () => this.fromFleet(key, { ...authorized, credentials }));
    }
    return this.serve(token);
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
   * Read the shared store; on a miss take the fleet-wide lease and fetch, or wait for whoever
   * holds it. Expiry is checked on every read: DynamoDB's TTL deletion is lazy and may leave an
   * expired item for days.
   */
  private async fromFleet(key: string, request: TokenFetchRequest): Promise<CachedToken> {
    const deadline = this.now() + this.options.leaseWaitMs;
    let waitStep = WAIT_STEP_MIN_MS;
    for (;;) {
      const stored = await this.deps.store.get(key);
      if (stored !== undefined && this.isUsable(stored)) {
        this.deps.observer.cacheHit('dynamodb');
        return stored;
      }
      const owner = `${this.instanceId}/${randomUUID()}`;
      if (await this.deps.store.acquireLease(key, owner, this.now() + this.options.leaseTtlMs)) {
        try {
          return await this.fetchUnderLease(key, request);
        } finally {
          await this.deps.store.releaseLease(key, owner).catch((error: unknown) => {
            // The lease expires on its own; a failed release only delays the next fetcher.
            this.deps.log.warn('lease release failed', { key, error: describe(error) });
          });
        }
      }
      const left = deadline - this.now();
      if (left <= 0) {
        this.deps.observer.leaseTimeout();
        this.deps.log.warn('gave up waiting for another instance to fetch', { key, waitedMs: this.options.leaseWaitMs });
        throw new LeaseTimeoutError('another instance holds the fetch lease', 1);
      }
      this.deps.observer.leaseWait();
      // Jittered, growing steps: a holder's token usually lands within one IdP round trip.
      await this.sleep(Math.min(left, waitStep / 2 + Math.random() * (waitStep / 2)));
      waitStep = Math.min(WAIT_STEP_MAX_MS, waitStep * 2);
    }
  }

  private async fetchUnderLease(key: string, request: TokenFetchRequest): Promise<CachedToken> {
    // Another holder may have written the token and released the lease between our read and
    // our acquisition; re-read under the lease so that case costs a read, not an IdP call.
    const justWritten = await this.deps.store.get(key);
    if (justWritten !== undefined && this.isUsable(justWritten)) {
      this.deps.observer.cacheHit('dynamodb');
      return justWritten;
    }
    this.deps.observer.cacheMiss();
    this.deps.observer.idpFetch();
    let issued;
    try {
      issued = await this.deps.idp.fetchToken(request);
    } catch (error) {
      this.deps.observer.idpError(typeof (error as { code?: unknown }).code === 'string' ? (error as { code: string }).code : 'unknown');
      throw error;
    }
    const scope = this.checkGrantedScope(issued.scope, request);
    const token: CachedToken = { ...issued, scope, key, fingerprint: fingerprint(issued.accessToken) };
    if (!this.isUsable(token)) {
      throw new InvalidTokenResponseError(`the IdP issued a token that is already within its expiry margin (expires ${token.expiresAt})`);
    }
    await this.deps.store.put(token);
    this.deps.log.info('fetched token from the IdP', {
      key,
      fingerprint: token.fingerprint,
      client: request.client.name,
      audience: request.audience,
      scope,
      expiresAt: token.expiresAt,
    });
    return token;
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

  private remember(token: CachedToken): void {
    this.memory.delete(token.key);
    this.memory.set(token.key, token);
    if (this.memory.size > this.options.memoryCacheEntries) {
      const oldest = this.memory.keys().next();
      if (oldest.done !== true) this.memory.delete(oldest.value);
    }
  }

  /** Usable while more than the margin is left; the margin is at most half the lifetime. */
  private isUsable(token: IssuedToken): boolean {
    const lifetime = token.expiresAt - token.fetchedAt / 1000;
    const margin = Math.min(this.options.earlyExpirySeconds, lifetime / 2);
    return this.now() / 1000 < token.expiresAt - margin;
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

/** An error's name and message, for logs: never the object itself (it may carry a request). */
export function describe(error: unknown): { name: string; message: string; code?: string } {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return { name: error.name, message: error.message, ...(typeof code === 'string' ? { code } : {}) };
  }
  // Not an Error: its type only, since its contents are unknown (jose's claim errors carry the payload as cause).
  return { name: 'NonError', message: typeof error };
}
