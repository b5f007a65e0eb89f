import { describe, expect, it } from 'vitest';
import {
  IdpBackoffError,
  IdpRateLimitedError,
  IdpRejectedError,
  IdpUnavailableError,
  InvalidTokenResponseError,
  LeaseTimeoutError,
  QuotaGuardError,
  StoreUnavailableError,
} from '../../functions/core/errors.js';
import { GrantBook } from '../../functions/core/grants.js';
import type { Backoff, CachedToken, CredentialSource, IssuedToken, TokenFetchRequest, TokenStore } from '../../functions/core/ports.js';
import { cacheKey } from '../../functions/core/tokenIdentity.js';
import { createTokenService, type TokenServiceOptions } from '../../functions/core/tokenService.js';

const grants = GrantBook.parse({
  clients: { c: { domain: 'tenant.auth0.com', secretId: 's' } },
  grants: [{ principals: ['arn:aws:iam::111122223333:role/app', 'arn:aws:iam::111122223333:role/other'], client: 'c', audience: 'https://api', scopes: ['read', 'write'] }],
});
const caller = { kind: 'iam', partition: 'aws', account: '111122223333', type: 'role', path: '', name: 'app', arn: 'arn:aws:iam::111122223333:role/app', channel: 'api' } as const;

/** An in-memory TokenStore with DynamoDB's conditional semantics. */
class FakeStore implements TokenStore {
  tokens = new Map<string, CachedToken>();
  leases = new Map<string, { owner: string; until: number }>();
  backoffs = new Map<string, Backoff>();
  counts = new Map<string, number>();
  /** when true, every operation fails as DynamoDB would when unreachable */
  down = false;
  constructor(private readonly clock: { now: number }) {}
  private check() {
    if (this.down) throw new StoreUnavailableError('DynamoDB GetItem failed (NetworkingError)');
  }
  async get(key: string) {
    this.check();
    return this.tokens.get(key);
  }
  async put(token: CachedToken) {
    this.check();
    const existing = this.tokens.get(token.key);
    // DynamoTokenStore's rule: the newest fetch wins, and a token of another client always replaces.
    if (existing === undefined || existing.fetchedAt < token.fetchedAt || existing.clientId !== token.clientId) this.tokens.set(token.key, token);
  }
  async acquireLease(key: string, owner: string, until: number) {
    this.check();
    const lease = this.leases.get(key);
    if (lease !== undefined && lease.until >= this.clock.now) return false;
    this.leases.set(key, { owner, until });
    return true;
  }
  async renewLease(key: string, owner: string, until: number) {
    this.check();
    if (this.leases.get(key)?.owner !== owner) return false;
    this.leases.set(key, { owner, until });
    return true;
  }
  async releaseLease(key: string, owner: string) {
    this.check();
    if (this.leases.get(key)?.owner === owner) this.leases.delete(key);
  }
  async touch(key: string, at: number) {
    this.check();
    const t = this.tokens.get(key);
    if (t) this.tokens.set(key, { ...t, lastUsedAt: at });
  }
  async getBackoff(clientKey: string) {
    this.check();
    return this.backoffs.get(clientKey);
  }
  async putBackoff(clientKey: string, backoff: Backoff) {
    this.check();
    const known = this.backoffs.get(clientKey);
    if (!known || known.until < backoff.until) this.backoffs.set(clientKey, backoff);
  }
  async countFetch(clientKey: string, hour: number, cap: number) {
    this.check();
    const k = `${clientKey}#${hour}`;
    const n = this.counts.get(k) ?? 0;
    if (n >= cap) return false;
    this.counts.set(k, n + 1);
    return true;
  }
  async listTokens() {
    this.check();
    return [...this.tokens.values()];
  }
  async remove(key: string) {
    this.check();
    this.tokens.delete(key);
  }
}

/** Set to make the fake IdP issue tokens of another lifetime from then on (a setting changed in Auth0). */
const lowerLifetime: { seconds?: number } = {};

function setup(opts: Partial<TokenServiceOptions> = {}, expiresIn = 3600) {
  delete lowerLifetime.seconds;
  const clock = { now: 1_700_000_000_000 };
  const store = new FakeStore(clock);
  const requests: TokenFetchRequest[] = [];
  const idp = {
    /** errors to throw, one per call, before succeeding again */
    failures: [] as Error[],
    scope: undefined as string | undefined,
    async fetchToken(req: TokenFetchRequest): Promise<IssuedToken> {
      requests.push(req);
      await new Promise((r) => setTimeout(r, 5));
      const failure = idp.failures.shift();
      if (failure) throw failure;
      return { accessToken: `tok-${requests.length}`, scope: idp.scope ?? req.scopes.join(' '), expiresAt: Math.floor(clock.now / 1000) + (lowerLifetime.seconds ?? expiresIn), fetchedAt: clock.now, clientId: req.credentials.clientId };
    },
  };
  const events: string[] = [];
  const observer = {
    cacheHit: (t: string) => events.push(`hit:${t}`),
    cacheMiss: () => events.push('miss'),
    idpFetch: (cause: string) => events.push(`fetch:${cause}`),
    idpError: (c: string) => events.push(`error:${c}`),
    leaseWait: () => events.push('wait'),
    leaseTimeout: () => events.push('timeout'),
    backoffRecorded: (reason: string) => events.push(`backoff:${reason}`),
    backoffActive: () => events.push('backoff-active'),
    quotaGuardTripped: () => events.push('quota'),
    idpQuota: () => events.push('idp-quota'),
    sealedRecordRejected: (defect: string) => events.push(`rejected:${defect}`),
    storeDegraded: (op: string) => events.push(`degraded:${op}`),
    refreshFailed: (cause: string) => events.push(`refresh-failed:${cause}`),
  };
  const quiet = { debug() {}, info() {}, warn() {}, error() {} };
  /** runs on each wait step, before the fake clock advances: "meanwhile, elsewhere in the fleet" */
  const meanwhile: Array<() => void> = [];
  /** what the instance's secret holds; `knownClientId` is what it has read so far */
  const secretHolds = { clientId: 'cid', readable: true };
  const make = (credentials: CredentialSource = fakeCredentials(secretHolds)) =>
    createTokenService(
      { grants, credentials, idp, store, observer, log: quiet, now: () => clock.now, sleep: async (ms) => { meanwhile.shift()?.(); clock.now += ms; } },
      {
        earlyExpirySeconds: 60,
        refreshAheadRatio: 0.25,
        leaseTtlMs: 10_000,
        leaseWaitMs: 2_000,
        memoryCacheEntries: 10,
        idpDeadlineMs: 3_000,
        idpAttemptMs: 0,
        retryBaseMs: 100,
        retryCapMs: 1_000,
        failureBackoffSeconds: 10,
        quotaPerClientPerHour: 0,
        quotaReserveRatio: 0,
        quotaPerCallerPerHour: 0,
        refusalMemoryMs: 0,
        usageWriteIntervalMs: 60_000,
        memoryRevalidateMs: 60_000,
        ...opts,
      },
    );
  return { clock, store, requests, idp, events, make, meanwhile, secretHolds };
}

/** A credential source over a secret the test can change or make unreachable. */
function fakeCredentials(secret: { clientId: string; readable: boolean }): CredentialSource & { reads: number } {
  let known: string | undefined;
  const source = {
    reads: 0,
    async get(_secretId: string) {
      source.reads += 1;
      if (!secret.readable) throw new StoreUnavailableError('Secrets Manager failed reading s (NetworkingError)');
      known = secret.clientId;
      return { kind: 'secret' as const, clientId: secret.clientId, clientSecret: 'sekret' };
    },
    alternatives: async () => [],
    prefer: () => {},
    knownClientId: () => known,
  };
  return source;
}

describe('TokenService', () => {
  it('fetches once, then serves from memory with expires_in recomputed at serve time', async () => {
    const { clock, requests, make, events } = setup();
    const service = make();
    const first = await service.vend({ caller, audience: 'https://api' });
    clock.now += 600_000;
    const second = await service.vend({ caller, audience: 'https://api', scope: 'write read' });
    expect(requests).toHaveLength(1);
    expect(requests[0]?.scopes).toEqual(['read', 'write']);
    expect(first).toEqual({ access_token: 'tok-1', token_type: 'Bearer', expires_in: 3600, scope: 'read write' });
    expect(second.expires_in).toBe(3000);
    expect(events.filter((e) => e === 'hit:memory')).toHaveLength(1);
  });

  it('a second instance reads the shared store instead of the IdP', async () => {
    const { requests, make, events } = setup();
    await make().vend({ caller, audience: 'https://api' });
    await make().vend({ caller, audience: 'https://api' });
    expect(requests).toHaveLength(1);
    expect(events).toContain('hit:dynamodb');
  });

  it('never serves a token within the early-expiry margin, from either tier', async () => {
    const { clock, requests, make, store } = setup({ refreshAheadRatio: 0 });
    const service = make();
    await service.vend({ caller, audience: 'https://api' });
    clock.now += (3600 - 60) * 1000; // exactly at the margin
    const refreshed = await service.vend({ caller, audience: 'https://api' });
    expect(requests).toHaveLength(2);
    expect(refreshed.access_token).toBe('tok-2');
    expect(refreshed.expires_in).toBe(3600);
    expect([...store.tokens.values()][0]?.accessToken).toBe('tok-2');
  });

  it('caps the margin at half the lifetime so short tokens stay cacheable', async () => {
    const { clock, requests, make } = setup({ earlyExpirySeconds: 300, refreshAheadRatio: 0 }, 100);
    const service = make();
    await service.vend({ caller, audience: 'https://api' });
    clock.now += 49_000;
    await service.vend({ caller, audience: 'https://api' });
    expect(requests).toHaveLength(1);
    clock.now += 1_000;
    await service.vend({ caller, audience: 'https://api' });
    expect(requests).toHaveLength(2);
  });

  it('shares one fetch between concurrent requests in an instance', async () => {
    const { requests, make } = setup();
    const service = make();
    const results = await Promise.all(Array.from({ length: 20 }, () => service.vend({ caller, audience: 'https://api' })));
    expect(requests).toHaveLength(1);
    expect(new Set(results.map((r) => r.access_token))).toEqual(new Set(['tok-1']));
  });

  it('never caches a failure', async () => {
    const { requests, make, idp, store, events } = setup({ idpDeadlineMs: 0, failureBackoffSeconds: 0 });
    const service = make();
    idp.failures.push(new IdpUnavailableError('down', 5));
    await expect(service.vend({ caller, audience: 'https://api' })).rejects.toBeInstanceOf(IdpUnavailableError);
    expect(store.tokens.size).toBe(0);
    expect(store.leases.size).toBe(0);
    expect(events).toContain('error:ERR_IDP_UNAVAILABLE');
    const ok = await service.vend({ caller, audience: 'https://api' });
    expect(ok.access_token).toBe('tok-2');
    expect(requests).toHaveLength(2);
  });

  it('waits for another instance holding the lease and serves its token', async () => {
    const { clock, requests, make, store, events, meanwhile } = setup();
    const service = make();
    const other = make();
    await other.vend({ caller, audience: 'https://api', scope: 'read' }); // learn the key
    const key = [...store.tokens.keys()][0]!;
    store.tokens.clear();
    store.leases.set(key, { owner: 'someone', until: clock.now + 10_000 });
    const token = { key, accessToken: 'theirs', scope: 'read', expiresAt: Math.floor(clock.now / 1000) + 3600, fetchedAt: clock.now, fingerprint: 'f', client: 'c', audience: 'https://api', scopes: ['read'] };
    // The lease holder's write lands while we wait.
    meanwhile.push(() => store.tokens.set(key, token));
    const served = await service.vend({ caller, audience: 'https://api', scope: 'read' });
    expect(served.access_token).toBe('theirs');
    expect(requests).toHaveLength(1);
    expect(events).toContain('wait');
  });

  it('answers LeaseTimeoutError when the lease holder never delivers', async () => {
    const { clock, make, store, requests, events } = setup();
    const probe = make();
    await probe.vend({ caller, audience: 'https://api', scope: 'read' });
    const key = [...store.tokens.keys()][0]!;
    store.tokens.clear();
    store.leases.set(key, { owner: 'someone', until: clock.now + 60_000 });
    await expect(make().vend({ caller, audience: 'https://api', scope: 'read' })).rejects.toBeInstanceOf(LeaseTimeoutError);
    expect(requests).toHaveLength(1);
    expect(events).toContain('timeout');
  });

  it('refuses a token whose granted scope exceeds the request', async () => {
    const { make, idp, store } = setup();
    idp.scope = 'read write admin';
    await expect(make().vend({ caller, audience: 'https://api', scope: 'read' })).rejects.toBeInstanceOf(InvalidTokenResponseError);
    expect(store.tokens.size).toBe(0);
  });

  describe('refresh-ahead', () => {
    it('past the refresh point, serves the still-valid token at once and refreshes once in the background', async () => {
      const { clock, requests, make, store, events } = setup();
      const service = make();
      await service.vend({ caller, audience: 'https://api' });
      clock.now += 2701_000; // 3600 s lifetime, refresh when 25% (900 s) is left
      const served = await Promise.all(Array.from({ length: 10 }, () => service.vend({ caller, audience: 'https://api' })));
      expect(served.every((t) => t.access_token === 'tok-1')).toBe(true);
      await service.idle();
      expect(requests).toHaveLength(2);
      expect(events.filter((e) => e === 'fetch:refresh-ahead')).toHaveLength(1);
      expect([...store.tokens.values()][0]?.accessToken).toBe('tok-2');
      expect((await service.vend({ caller, audience: 'https://api' })).access_token).toBe('tok-2');
    });

    it('adopts a newer token another instance (or the refresher) stored, without the IdP', async () => {
      const { clock, requests, make } = setup();
      const a = make();
      const b = make();
      await a.vend({ caller, audience: 'https://api' });
      await b.vend({ caller, audience: 'https://api' });
      clock.now += 2701_000;
      await a.vend({ caller, audience: 'https://api' });
      await a.idle();
      expect(requests).toHaveLength(2);
      expect((await b.vend({ caller, audience: 'https://api' })).access_token).toBe('tok-2');
      await b.idle();
      expect(requests).toHaveLength(2);
    });

    it('keeps serving the old token while refreshes fail, and never past its margin', async () => {
      const { clock, make, idp, events } = setup({ idpDeadlineMs: 0, failureBackoffSeconds: 0 });
      const service = make();
      await service.vend({ caller, audience: 'https://api' });
      clock.now += 2701_000;
      idp.failures.push(new IdpUnavailableError('down', 5), new IdpUnavailableError('down', 5));
      expect((await service.vend({ caller, audience: 'https://api' })).access_token).toBe('tok-1');
      await service.idle();
      expect(events).toContain('refresh-failed:refresh-ahead');
      clock.now += (900 - 60) * 1000; // at the margin: no longer servable
      idp.failures.push(new IdpUnavailableError('down', 5));
      await expect(service.vend({ caller, audience: 'https://api' })).rejects.toBeInstanceOf(IdpUnavailableError);
    });
  });

  describe('resilience', () => {
    it('retries transient failures with full-jitter back-off inside the deadline', async () => {
      const { make, idp, requests, events } = setup();
      idp.failures.push(new IdpUnavailableError('500', 5), new IdpUnavailableError('timeout', 5));
      const token = await make().vend({ caller, audience: 'https://api' });
      expect(token.access_token).toBe('tok-3');
      expect(requests).toHaveLength(3);
      expect(events.filter((e) => e.startsWith('fetch:'))).toHaveLength(3);
    });

    it('does not retry a refusal', async () => {
      const { make, idp, requests } = setup();
      idp.failures.push(new IdpRejectedError('invalid_client', 401, 'bad secret'));
      await expect(make().vend({ caller, audience: 'https://api' })).rejects.toBeInstanceOf(IdpRejectedError);
      expect(requests).toHaveLength(1);
    });

    it('after retries run out, the whole fleet backs off for a while', async () => {
      const { clock, make, idp, requests, store } = setup({ idpDeadlineMs: 500, failureBackoffSeconds: 10 });
      idp.failures.push(...Array.from({ length: 50 }, () => new IdpUnavailableError('down', 5)));
      await expect(make().vend({ caller, audience: 'https://api' })).rejects.toBeInstanceOf(IdpUnavailableError);
      const attempts = requests.length;
      expect(attempts).toBeGreaterThan(1);
      expect([...store.backoffs.values()][0]?.reason).toBe('unavailable');
      await expect(make().vend({ caller, audience: 'https://api' })).rejects.toBeInstanceOf(IdpBackoffError);
      expect(requests).toHaveLength(attempts);
      clock.now += 10_001;
      idp.failures.length = 0;
      expect((await make().vend({ caller, audience: 'https://api' })).access_token).toMatch(/^tok-/);
    });

    it('a 429 is not retried: the fleet backs off for Retry-After and keeps serving valid tokens', async () => {
      const { clock, make, idp, requests, store, events } = setup();
      const a = make();
      await a.vend({ caller, audience: 'https://api', scope: 'read' });
      idp.failures.push(new IdpRateLimitedError('429', 30));
      const b = make();
      const err = await b.vend({ caller, audience: 'https://api', scope: 'write' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IdpRateLimitedError);
      expect(requests).toHaveLength(2);
      expect([...store.backoffs.values()][0]).toMatchObject({ reason: 'rate_limited', until: clock.now + 30_000 });
      expect(events).toContain('backoff:rate_limited');
      // another instance does not call the IdP while the back-off lasts...
      const c = make();
      const paused = await c.vend({ caller, audience: 'https://api', scope: 'write' }).catch((e: unknown) => e);
      expect(paused).toBeInstanceOf(IdpBackoffError);
      expect((paused as IdpBackoffError).retryAfterSeconds).toBe(30);
      expect(requests).toHaveLength(2);
      // ...but serves the tokens it can
      expect((await c.vend({ caller, audience: 'https://api', scope: 'read' })).access_token).toBe('tok-1');
      clock.now += 30_001;
      expect((await c.vend({ caller, audience: 'https://api', scope: 'write' })).access_token).toBe('tok-3');
    });

    it('the quota guard caps fetches per client per hour across the fleet', async () => {
      const { clock, make, requests, events } = setup({ quotaPerClientPerHour: 2 });
      clock.now = Math.floor(clock.now / 3_600_000) * 3_600_000; // top of an hour
      await make().vend({ caller, audience: 'https://api', scope: 'read' });
      await make().vend({ caller, audience: 'https://api', scope: 'write' });
      const refused = await make().vend({ caller, audience: 'https://api' }).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(QuotaGuardError);
      expect((refused as QuotaGuardError).retryAfterSeconds).toBe(3600);
      expect(requests).toHaveLength(2);
      expect(events).toContain('quota');
      clock.now += 3_600_000;
      await make().vend({ caller, audience: 'https://api' });
      expect(requests).toHaveLength(3);
    });

    it('without DynamoDB, serves from memory and keeps one fetch per instance', async () => {
      const { make, store, requests, events } = setup();
      const service = make();
      await service.vend({ caller, audience: 'https://api', scope: 'read' });
      store.down = true;
      const results = await Promise.all([
        ...Array.from({ length: 10 }, () => service.vend({ caller, audience: 'https://api', scope: 'read' })),
        ...Array.from({ length: 10 }, () => service.vend({ caller, audience: 'https://api', scope: 'write' })),
      ]);
      expect(results.map((r) => r.access_token)).toEqual([...Array(10).fill('tok-1'), ...Array(10).fill('tok-2')]);
      expect(requests).toHaveLength(2);
      expect(events.some((e) => e.startsWith('degraded:'))).toBe(true);
    });
  });

  describe('credentials only when the IdP must be called', () => {
    it('finds a cached token without reading the secret: memory and store hits make no read', async () => {
      const { make, requests, secretHolds } = setup();
      const first = fakeCredentials(secretHolds);
      const a = make(first);
      await a.vend({ caller, audience: 'https://api' });
      await a.vend({ caller, audience: 'https://api' });
      const second = fakeCredentials({ ...secretHolds, readable: false });
      const b = make(second);

      const served = await b.vend({ caller, audience: 'https://api' });

      expect(served.access_token).toBe('tok-1');
      expect(requests).toHaveLength(1);
      expect(first.reads).toBe(1); // the fetch's read only
    });

    it('a cold instance serves the stored token while the secret is unreadable, and warms up once it is readable', async () => {
      const { clock, make, requests, secretHolds } = setup();
      await make().vend({ caller, audience: 'https://api' });
      secretHolds.readable = false;
      const credentials = fakeCredentials(secretHolds);
      const cold = make(credentials);

      expect((await cold.vend({ caller, audience: 'https://api' })).access_token).toBe('tok-1');
      await cold.idle();
      expect(credentials.reads).toBe(1); // one background try, failed
      expect((await cold.vend({ caller, audience: 'https://api' })).access_token).toBe('tok-1');
      await cold.idle();
      expect(credentials.reads).toBe(1); // not again within the retry window
      secretHolds.readable = true;
      clock.now += 30_000;
      await cold.vend({ caller, audience: 'https://api' });
      await cold.idle();
      expect(credentials.reads).toBe(2);
      expect(credentials.knownClientId('s')).toBe('cid');
      expect(requests).toHaveLength(1);
    });

    it('a secret switched to another client_id never serves the old client\'s token, from either tier', async () => {
      const { make, requests, store, secretHolds } = setup();
      const a = make();
      expect((await a.vend({ caller, audience: 'https://api' })).access_token).toBe('tok-1');
      secretHolds.clientId = 'another-client';
      // An instance that has read the new value (the warm-up after its first serve).
      const credentials = fakeCredentials(secretHolds);
      await credentials.get('s');
      const b = make(credentials);

      const served = await b.vend({ caller, audience: 'https://api' });

      expect(served.access_token).toBe('tok-2');
      expect(requests.map((r) => r.credentials.clientId)).toEqual(['cid', 'another-client']);
      // the old client's longer-or-equal-lived token was replaced in the store, not kept
      expect([...store.tokens.values()].map((t) => t.clientId)).toEqual(['another-client']);
      // and instance a drops its memory copy once it knows the new client_id
      const aFresh = fakeCredentials(secretHolds);
      await aFresh.get('s');
      expect((await make(aFresh).vend({ caller, audience: 'https://api' })).access_token).toBe('tok-2');
    });

    it('the key is what the deployment declares: tenant, secret, audience and scopes, never the secret value', () => {
      const base = cacheKey('https://t/', 'vendor/orders', 'https://api', ['read', 'write']);
      expect(cacheKey('https://t/', 'vendor/orders', 'https://api', ['write', 'read', 'read'])).toBe(base);
      expect(cacheKey('https://other/', 'vendor/orders', 'https://api', ['read', 'write'])).not.toBe(base);
      expect(cacheKey('https://t/', 'vendor/billing', 'https://api', ['read', 'write'])).not.toBe(base);
      expect(cacheKey('https://t/', 'vendor/orders', 'https://api2', ['read', 'write'])).not.toBe(base);
      expect(cacheKey('https://t/', 'vendor/orders', 'https://api', ['read'])).not.toBe(base);
    });
  });

  describe('a lifetime lowered in Auth0', () => {
    it('is adopted by the store (the newest fetch wins): one fetch per refresh point, not one per refresher run', async () => {
      // Arrange: a 3600 s token is cached; then Auth0 starts issuing 600 s tokens.
      const { clock, make, requests, store } = setup();
      const service = make();
      await service.vend({ caller, audience: 'https://api' });
      const ttl = { seconds: 600 };
      const { Refresher } = await import('../../functions/core/refresher.js');
      const quiet = { debug() {}, info() {}, warn() {}, error() {} };
      const refresher = new Refresher({ service, store, grants, log: quiet, now: () => clock.now }, { lookaheadMs: 120_000, recentUseMs: 7_200_000, concurrency: 1 });
      // From now on the IdP issues shorter tokens.
      lowerLifetime.seconds = ttl.seconds;
      // Act: the schedule runs every minute for two hours; a caller uses the token each minute.
      const fetchMinutes: number[] = [];
      for (let minute = 0; minute < 120; minute += 1) {
        clock.now += 60_000;
        const before = requests.length;
        await refresher.run();
        await service.vend({ caller, audience: 'https://api' });
        await service.idle();
        if (requests.length > before) fetchMinutes.push(minute);
      }
      // Assert: a 600 s token is due when 150 s are left, and the refresher looks 120 s ahead, so
      // one fetch every 5 or 6 minutes: never in two runs in a row (the old "later expiry wins"
      // rule kept the 3600 s token and fetched on every run until it expired).
      const gaps = fetchMinutes.slice(1).map((m, i) => m - fetchMinutes[i]!);
      expect(fetchMinutes.length).toBeGreaterThan(10);
      expect(Math.min(...gaps)).toBeGreaterThanOrEqual(5);
      expect([...store.tokens.values()][0]!.expiresAt - Math.floor(([...store.tokens.values()][0]!.fetchedAt) / 1000)).toBe(600);
    });
  });

  describe('the quota guard\'s per-caller budget and the single flight', () => {
    it('a caller who only joined an over-budget caller\'s fetch is not refused for it: it loads as itself', async () => {
      // Arrange: a budget of 1 new token per caller; `app` has spent its one
      const { make, requests } = setup({ quotaPerCallerPerHour: 1 });
      const service = make();
      const other = { ...caller, name: 'other', arn: 'arn:aws:iam::111122223333:role/other' } as const;
      await service.vend({ caller, audience: 'https://api', scope: 'read' });
      // Act: both ask for a token no one holds, `app` first, at the same moment
      const [mine, theirs] = await Promise.allSettled([
        service.vend({ caller, audience: 'https://api', scope: 'write' }),
        service.vend({ caller: other, audience: 'https://api', scope: 'write' }),
      ]);
      // Assert
      expect(mine.status === 'rejected' && (mine.reason as { code?: string }).code).toBe('ERR_CALLER_QUOTA');
      expect(theirs.status === 'fulfilled' && theirs.value.access_token).toBe('tok-2');
      expect(requests).toHaveLength(2);
    });
  });

  describe('refreshes are charged to the caller that made the token', () => {
    it('a caller that made many tokens pays for keeping them fresh: the refresher refreshes another caller\'s token, and refuses only theirs', async () => {
      // Arrange: a budget of 2 fetches an hour per caller, at the top of an hour
      const { clock, make, requests, store } = setup({ quotaPerCallerPerHour: 2 });
      clock.now = Math.ceil(clock.now / 3_600_000) * 3_600_000;
      const service = make();
      const other = { ...caller, name: 'other', arn: 'arn:aws:iam::111122223333:role/other' } as const;
      await service.vend({ caller, audience: 'https://api', scope: 'read' }); // app: 1 of 2
      await service.vend({ caller, audience: 'https://api', scope: 'write' }); // app: 2 of 2
      await service.vend({ caller: other, audience: 'https://api', scope: 'read write' }); // other: 1 of 2
      expect(requests).toHaveLength(3);
      expect([...store.tokens.values()].map((t) => t.origin)).toEqual([caller.arn, caller.arn, other.arn]);
      const { Refresher } = await import('../../functions/core/refresher.js');
      const quiet = { debug() {}, info() {}, warn() {}, error() {} };
      // Act: at the refresh point of all three, the schedule runs
      clock.now += 2_700_000;
      const report = await new Refresher({ service, store, grants, log: quiet, now: () => clock.now }, { lookaheadMs: 0, recentUseMs: 7_200_000, concurrency: 1 }).run();
      // Assert: other's token refreshed on other's budget; app's two refused on app's
      expect(report).toMatchObject({ refreshed: 1, failed: 2 });
      expect(requests).toHaveLength(4);
      expect(requests[3]!.caller).toBe(other.arn);
      expect(requests[3]!.cause).toBe('scheduled');
    });

    it('a refresh of a token whose maker is over budget is refused, and the token is left to lapse', async () => {
      // Arrange
      const { clock, make, requests, store } = setup({ quotaPerCallerPerHour: 1 });
      clock.now = Math.ceil(clock.now / 3_600_000) * 3_600_000;
      const service = make();
      await service.vend({ caller, audience: 'https://api', scope: 'read' }); // app: 1 of 1
      const { Refresher } = await import('../../functions/core/refresher.js');
      const quiet = { debug() {}, info() {}, warn() {}, error() {} };
      clock.now += 2_700_000;
      // Act
      const report = await new Refresher({ service, store, grants, log: quiet, now: () => clock.now }, { lookaheadMs: 0, recentUseMs: 7_200_000, concurrency: 1 }).run();
      // Assert: no IdP call; the refusal is app's alone
      expect(report).toMatchObject({ refreshed: 0, failed: 1 });
      expect(requests).toHaveLength(1);
      expect([...store.tokens.values()][0]!.origin).toBe(caller.arn);
    });
  });
});
