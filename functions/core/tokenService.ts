/**
 * The token vendor's orchestration: authorize, then serve from the instance tier, then from the
 * fleet's store, and only then fetch from the IdP, with exactly one fetch in flight per token
 * for the whole fleet. Knows nothing of API Gateway or Lambda. The pieces it orchestrates are
 * each in their own module (ARCHITECTURE.md):
 * - the expiry policy (`expiry.ts`): when a token is usable, due, and what is served;
 * - the instance tier and its single flight (`instanceTier.ts`);
 * - the fleet lease (`lease.ts`): one instance fetches, the others wait for its token;
 * - the IdP as a good citizen (`goodCitizenEndpoint.ts`): back-off, quota guard, retries,
 *   rotation fallback, wrapping the Auth0 endpoint;
 * - running without DynamoDB (`degradedStore.ts`), wrapping the DynamoDB store.
 *
 * Credentials are read only when the IdP must be called: a cached token is found by a key
 * derived from what the deployment declares, so a cold instance serves a stored token while
 * Secrets Manager is unreachable.
 */
import type { AuthorizedRequest, GrantBook } from './grants.js';
import { checkGrantedScope } from './grants.js';
import { DegradedModeStore, UNAVAILABLE } from './degradedStore.js';
import { CallerQuotaError, IdpOrganizationMismatchError, InvalidTokenResponseError, LeaseTimeoutError, describe } from './errors.js';
import { isDue, isFreshFor, isServable, isUsable, serve, type ExpiryPolicy, type VendedToken } from './expiry.js';
import { GoodCitizenEndpoint, type GoodCitizenOptions } from './goodCitizenEndpoint.js';
import { InstanceTier, SingleFlight, type RefreshOutcome } from './instanceTier.js';
import { FleetLease } from './lease.js';
import type { Caller } from './principal.js';
import type { CachedToken, CredentialSource, FetchCause, Log, Observer, TokenEndpoint, TokenStore } from './ports.js';
import { cacheKey, fingerprint } from './tokenIdentity.js';

export type { VendedToken } from './expiry.js';
export type { RefreshOutcome } from './instanceTier.js';

/** The deployment's settings for the whole service (functions/config.ts reads them). */
export interface TokenServiceOptions extends ExpiryPolicy, GoodCitizenOptions {
  /** The longest a fetch lease is held in all, renewals included (must outlast one fetch, retries included). */
  readonly leaseTtlMs: number;
  /** How long a lease lasts unless renewed: a holder that dies is taken over after this (renewed every third of it). */
  readonly leaseHoldMs?: number | undefined;
  /** How long a request waits for another instance's fetch before answering 503. */
  readonly leaseWaitMs: number;
  /** Entries kept in the instance cache; the oldest is dropped past this. */
  readonly memoryCacheEntries: number;
  /** A token's last use is written to the store at most this often per instance. */
  readonly usageWriteIntervalMs: number;
  /** A memory entry is checked against the store at most this often (a flush reaches every instance within it). */
  readonly memoryRevalidateMs: number;
}

/** The outside systems, as the core sees them: each seam is composed over these. */
export interface TokenServiceDeps {
  readonly grants: GrantBook;
  readonly credentials: CredentialSource;
  /** the IdP itself (the good-citizen wrapper is added here) */
  readonly idp: TokenEndpoint;
  /** the fleet's store itself (degraded mode is added here) */
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
  /** an Auth0 organization id or name (issue 12), as the caller named it */
  readonly organization?: string | undefined;
}

/** An authorized request with its cache key, and who asked (the caller's principal), if anyone. */
type KeyedRequest = AuthorizedRequest & { readonly key: string; readonly caller?: string | undefined };

/** After a background refresh fails, this instance leaves the key alone for a while. */
const REFRESH_RETRY_MS = 10_000;
/** A background credentials read that failed is not tried again sooner than this. */
const WARM_RETRY_MS = 30_000;

/** The seams a {@link TokenService} orchestrates, already composed. */
export interface TokenServiceParts {
  readonly grants: GrantBook;
  readonly credentials: CredentialSource;
  /** the IdP, as a good citizen */
  readonly idp: TokenEndpoint;
  /** the fleet's store, degrading to nothing when DynamoDB is unavailable */
  readonly store: DegradedModeStore;
  readonly lease: FleetLease;
  readonly tier: InstanceTier;
  readonly observer: Observer;
  readonly log: Log;
  readonly now: () => number;
}

/** Compose the seams over the outside systems: what every composition root calls. */
export function createTokenService(deps: TokenServiceDeps, options: TokenServiceOptions): TokenService {
  const now = deps.now ?? Date.now;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const random = deps.random ?? Math.random;
  const store = new DegradedModeStore(deps.store, deps.observer, deps.log);
  return new TokenService(
    {
      grants: deps.grants,
      credentials: deps.credentials,
      idp: new GoodCitizenEndpoint({ idp: deps.idp, limits: store, credentials: deps.credentials, observer: deps.observer, log: deps.log, now, sleep, random }, options),
      store,
      // Without DynamoDB there is no fleet-wide lease: the instance's single flight still
      // holds, so the IdP sees at most one fetch per instance.
      // The lease is held `leaseHoldMs` at a time and renewed while the fetch runs, up to
      // `leaseTtlMs` in all: a holder that dies is taken over within `leaseHoldMs`.
      lease: new FleetLease({
        store: deps.store,
        now,
        sleep,
        random,
        holdMs: options.leaseHoldMs,
        onDegraded: (operation, error) => store.degraded(operation, error),
        onLost: (name, error) =>
          deps.log.warn('lost the fetch lease while fetching; the token write is conditional', { key: name, ...(error !== undefined ? { error: describe(error) } : {}) }),
      }),
      tier: new InstanceTier(
        { maxEntries: options.memoryCacheEntries, revalidateMs: options.memoryRevalidateMs, usageWriteIntervalMs: options.usageWriteIntervalMs, refreshRetryMs: REFRESH_RETRY_MS },
        now,
      ),
      observer: deps.observer,
      log: deps.log,
      now,
    },
    options,
  );
}

export class TokenService {
  /** background credentials reads, one per secret */
  private readonly warming = new SingleFlight<void>();
  /** when each secret's background read was last tried: one entry per client of the grants */
  private readonly warmedAt = new Map<string, number>();

  constructor(
    private readonly parts: TokenServiceParts,
    private readonly options: Pick<TokenServiceOptions, keyof ExpiryPolicy | 'leaseTtlMs' | 'leaseWaitMs'>,
  ) {}

  /**
   * Vend a token for `request`.
   * @throws AccessDeniedError / InvalidRequestError for the caller's mistakes; IdpRejectedError,
   *   IdpUnavailableError (and its kinds), InvalidTokenResponseError, LeaseTimeoutError otherwise
   */
  async vend(request: VendRequest): Promise<VendedToken> {
    return this.tokenFor(this.parts.grants.authorize(request.caller, request.audience, request.scope, request.organization), request.caller.arn);
  }

  /**
   * A token for a request the caller is already authorized for: by the grants (vend) or by the
   * deployment itself (the rotator's Management API token, from the grants' `rotation` setting).
   * `caller`, when there is one, is charged the fetch its miss causes (the quota guard's
   * per-caller budget).
   */
  async tokenFor(authorized: AuthorizedRequest, caller?: string): Promise<VendedToken> {
    const request = keyed(authorized, caller);
    const { tier, observer } = this.parts;

    let token = tier.get(request.key);
    if (token !== undefined && this.usable(token, request) && tier.needsRevalidation(request.key)) token = await this.revalidate(token);
    if (token !== undefined && this.usable(token, request)) {
      if (isDue(this.options, token, this.parts.now())) token = await this.adoptNewerOrRefresh(token, request);
      else observer.cacheHit('memory');
    } else {
      if (token !== undefined) tier.forget(request.key);
      token = await this.load(request);
    }
    if (tier.claimUseRecord(token)) await this.parts.store.touch(token.key, this.parts.now());
    this.warmCredentials(request.client.secretId);
    return serve(token, this.parts.now());
  }

  /**
   * Load a missing token once for all concurrent callers of the instance. The fetch is charged to
   * the caller who started it: if that caller was over its own budget, a caller who only joined
   * is not refused for it, but loads again as itself (a new fetch, or another caller's).
   */
  private async load(request: KeyedRequest): Promise<CachedToken> {
    try {
      return await this.parts.tier.load(request.key, () => this.fromFleet(request));
    } catch (error) {
      if (!(error instanceof CallerQuotaError) || error.caller === request.caller) throw error;
      return this.parts.tier.load(request.key, () => this.fromFleet(request));
    }
  }

  /**
   * Refresh (or prefetch) one token now, for the scheduled refresher and ops: does nothing if
   * the stored token is not due within `lookaheadMs`, or if another instance holds the lease.
   */
  async refresh(authorized: AuthorizedRequest, lookaheadMs: number, origin?: string): Promise<RefreshOutcome> {
    const request = keyed(authorized, origin);
    const stored = await this.parts.store.get(request.key);
    if (stored !== undefined && this.usable(stored, request) && isFreshFor(this.options, stored, this.parts.now(), lookaheadMs)) return 'fresh';
    return this.backgroundRefresh(request, 'scheduled', lookaheadMs);
  }

  /**
   * Forget every token of a client (or of one of its audiences, or of one Auth0 organization) in
   * this instance and the fleet's store: ops' answer to "a token leaked". Other instances drop
   * theirs at their next revalidation, within `memoryRevalidateMs`.
   * @returns the number of tokens removed from the store
   */
  async flush(clientName: string, audience?: string, organization?: string): Promise<number> {
    const matches = (t: { client: string; audience: string; organization?: string | undefined }) =>
      t.client === clientName && (audience === undefined || t.audience === audience) && (organization === undefined || t.organization === organization);
    this.parts.tier.forgetWhere(matches);
    const doomed = (await this.parts.store.listTokens()).filter(matches);
    for (const token of doomed) await this.parts.store.remove(token.key);
    this.parts.log.warn('flushed cached tokens', { client: clientName, audience, organization, fingerprints: doomed.map((t) => t.fingerprint) });
    return doomed.length;
  }

  /** Resolves once every background refresh and credentials read started so far has settled (tests, graceful ends). */
  async idle(): Promise<void> {
    await Promise.all([this.parts.tier.idle(), this.warming.settled()]);
  }

  /**
   * An instance that serves tokens without ever fetching has not read its credentials: read them
   * once in the background, after the response is decided and never in its way, so that a later
   * fetch still has the last good credentials if Secrets Manager becomes unreachable, and so that
   * `usable` learns the client_id the secret holds. At most one try per secret per
   * {@link WARM_RETRY_MS}; a failure is only logged.
   */
  private warmCredentials(secretId: string): void {
    if (this.parts.credentials.knownClientId(secretId) !== undefined) return;
    const now = this.parts.now();
    if (now - (this.warmedAt.get(secretId) ?? Number.NEGATIVE_INFINITY) < WARM_RETRY_MS) return;
    this.warmedAt.set(secretId, now);
    void this.warming.run(secretId, () =>
      this.parts.credentials.get(secretId).then(
        () => undefined,
        (error: unknown) => this.parts.log.warn('could not read the client credentials in the background; the next fetch tries again', { secretId, error: describe(error) }),
      ),
    );
  }

  /**
   * Usable by the expiry policy (a JWT by its own `exp` too: expiry.ts `isServable`), and issued
   * to the client the secret holds as far as this instance knows (without reading it): a secret
   * switched to another client_id stops the old client's tokens being served here as soon as the
   * instance has read the new value.
   */
  private usable(token: CachedToken, request: KeyedRequest): boolean {
    if (!isServable(this.options, token, this.parts.now(), request.client.tokenFormat)) return false;
    const known = this.parts.credentials.knownClientId(request.client.secretId);
    return known === undefined || token.clientId === undefined || token.clientId === known;
  }

  /**
   * A token in memory is past its refresh point. Another instance or the refresher may already
   * have replaced it in the store (a read, not an IdP call); if not, serve it anyway (it is
   * still valid) and refresh in the background.
   */
  private async adoptNewerOrRefresh(token: CachedToken, request: KeyedRequest): Promise<CachedToken> {
    const now = this.parts.now();
    const stored = await this.parts.store.get(request.key);
    if (stored !== undefined && this.usable(stored, request) && !isDue(this.options, stored, now) && stored.fetchedAt > token.fetchedAt) {
      this.parts.tier.remember(stored);
      this.parts.observer.cacheHit('dynamodb');
      return stored;
    }
    this.parts.observer.cacheHit('memory');
    // Charged to whoever made the token, not to whoever happened to ask past its refresh point.
    void this.backgroundRefresh({ ...request, caller: token.origin }, 'refresh-ahead', 0);
    return token;
  }

  /**
   * Read the shared store; on a miss take the fleet-wide lease and fetch, or wait for whoever
   * holds it. Expiry is checked on every read: DynamoDB's TTL deletion is lazy and may leave an
   * expired item for days. Without DynamoDB, the instance fetches on its own.
   */
  private async fromFleet(request: KeyedRequest): Promise<CachedToken> {
    const result = await this.parts.lease.run<CachedToken>({
      name: request.key,
      ttlMs: this.options.leaseTtlMs,
      waitMs: this.options.leaseWaitMs,
      ready: async () => {
        const stored = await this.parts.store.get(request.key);
        if (stored === undefined || !this.usable(stored, request)) return undefined;
        this.parts.observer.cacheHit('dynamodb');
        if (isDue(this.options, stored, this.parts.now())) void this.backgroundRefresh({ ...request, caller: stored.origin }, 'refresh-ahead', 0);
        return stored;
      },
      produce: (outcome) => this.fetchUnderLease(request, 'miss', outcome === 'degraded'),
      onWait: () => this.parts.observer.leaseWait(),
    });
    if ('value' in result) return result.value;
    this.parts.observer.leaseTimeout();
    this.parts.log.warn('gave up waiting for another instance to fetch', { key: request.key, waitedMs: Math.round(result.waitedMs) });
    throw new LeaseTimeoutError('another instance holds the fetch lease', 1);
  }

  /**
   * Refresh `request`'s token without making anyone wait: under the fleet lease if it is free
   * (someone else refreshing is fine: their token will land in the store), at most once at a
   * time per key in this instance, and not again soon after a failure.
   */
  private backgroundRefresh(request: KeyedRequest, cause: FetchCause, lookaheadMs: number): Promise<RefreshOutcome> {
    return this.parts.tier.refreshOnce(request.key, cause !== 'refresh-ahead', async () => {
      const outcome = await this.parts.lease.ifFree(request.key, this.options.leaseTtlMs, async (lease): Promise<RefreshOutcome> => {
        try {
          // The lease holder before us may have just refreshed it.
          const stored = await this.parts.store.get(request.key);
          if (stored !== undefined && this.usable(stored, request) && isFreshFor(this.options, stored, this.parts.now(), lookaheadMs)) {
            this.parts.tier.remember(stored);
            return 'fresh';
          }
          this.parts.tier.remember(await this.fetchUnderLease(request, cause, lease === 'degraded', false));
          return 'refreshed';
        } catch (error) {
          this.parts.observer.refreshFailed(cause);
          this.parts.log.warn('refresh failed; the current token is served until its expiry margin', { key: request.key, cause, error: describe(error) });
          return 'failed';
        }
      });
      return outcome ?? 'busy';
    });
  }

  /**
   * Fetch from the IdP and store the result. `recheck` re-reads the store first: another holder
   * may have written the token and released the lease between our read and our acquisition,
   * and that case should cost a read, not an IdP call.
   */
  private async fetchUnderLease(request: KeyedRequest, cause: FetchCause, degraded: boolean, recheck = true): Promise<CachedToken> {
    const { store, observer, log } = this.parts;
    if (recheck && !degraded) {
      const justWritten = await store.get(request.key);
      if (justWritten !== undefined && this.usable(justWritten, request)) {
        observer.cacheHit('dynamodb');
        return justWritten;
      }
    }
    if (cause === 'miss') observer.cacheMiss();
    // The only place credentials are read: when the IdP must be called.
    const credentials = await this.parts.credentials.get(request.client.secretId);
    const issued = await this.parts.idp.fetchToken({ ...request, credentials, cause });
    const scope = checkGrantedScope(issued.scope, request.scopes);
    const token: CachedToken = {
      ...issued,
      scope,
      clientId: issued.clientId ?? credentials.clientId,
      key: request.key,
      fingerprint: fingerprint(issued.accessToken),
      client: request.client.name,
      audience: request.audience,
      scopes: request.scopes,
      ...(request.organization !== undefined ? { organization: request.organization } : {}),
      lastUsedAt: issued.fetchedAt,
      ...(request.caller !== undefined ? { origin: request.caller } : {}),
    };
    // The endpoint checked the token's org_id against the request (adapters/auth0TokenEndpoint.ts);
    // checked here again for any other endpoint, so that no token of another organization, or of
    // one where none was asked for, is ever stored or served under this key.
    checkOrganization(request.organization, issued.organizationId, request.client.tokenFormat);
    if (!isUsable(this.options, token, this.parts.now())) {
      throw new InvalidTokenResponseError(`the IdP issued a token that is already within its expiry margin (expires ${token.expiresAt})`);
    }
    await store.put(token);
    log.info('fetched token from the IdP', {
      key: request.key,
      fingerprint: token.fingerprint,
      client: request.client.name,
      audience: request.audience,
      ...(request.organization !== undefined ? { organization: request.organization } : {}),
      scope,
      cause,
      expiresAt: token.expiresAt,
    });
    return token;
  }

  /**
   * One read, at most once per interval per key: if the store no longer has this token (flushed
   * by ops) drop it; if it has a newer one, take it. Without DynamoDB, keep serving memory.
   */
  private async revalidate(token: CachedToken): Promise<CachedToken | undefined> {
    const { tier, store, log } = this.parts;
    const stored = await store.probe(token.key);
    if (stored === UNAVAILABLE) {
      tier.markChecked(token.key);
      return token;
    }
    if (stored === undefined) {
      tier.forget(token.key);
      log.info('token no longer in the store (flushed); dropping it', { fingerprint: token.fingerprint });
      return undefined;
    }
    tier.markChecked(token.key);
    if (stored.fingerprint !== token.fingerprint && isUsable(this.options, stored, this.parts.now())) {
      tier.remember(stored);
      return stored;
    }
    return token;
  }
}

function keyed(authorized: AuthorizedRequest, caller?: string): KeyedRequest {
  return { ...authorized, caller, key: cacheKey(authorized.client.issuer, authorized.client.secretId, authorized.audience, authorized.scopes, authorized.organization) };
}

/**
 * A JWT's organization must be the one asked for: an `org_…` id exactly; a name is checked by the
 * endpoint against `org_name` and must come with some `org_id`. A token for a request without
 * organization must carry no `org_id`: a default organization (docs/auth0-wire-behaviour.md §14.5)
 * would otherwise be served as the organization-less token. Opaque tokens carry no claims, and
 * grants refuse organizations for them (grants.ts). The same error the Auth0 endpoint raises for it
 * (adapters/auth0TokenEndpoint.ts), which this repeats for any other endpoint.
 */
function checkOrganization(requested: string | undefined, orgId: string | undefined, format: 'jwt' | 'opaque'): void {
  if (format !== 'jwt') return;
  if (requested === undefined) {
    if (orgId !== undefined) throw new IdpOrganizationMismatchError(`the IdP issued a token for organization ${orgId.slice(0, 60)} to a request without organization`);
    return;
  }
  if (orgId === undefined) throw new IdpOrganizationMismatchError(`the IdP issued a token without org_id for organization ${requested}`);
  if (requested.startsWith('org_') && orgId !== requested) {
    throw new IdpOrganizationMismatchError(`the IdP issued a token for organization ${orgId.slice(0, 60)} to a request for ${requested}`);
  }
}
