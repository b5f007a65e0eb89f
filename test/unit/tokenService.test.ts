import { describe, expect, it } from 'vitest';
import { IdpUnavailableError, InvalidTokenResponseError, LeaseTimeoutError } from '../../functions/core/errors.js';
import { GrantBook } from '../../functions/core/grants.js';
import type { CachedToken, IssuedToken, TokenFetchRequest, TokenStore } from '../../functions/core/ports.js';
import { TokenService, type TokenServiceOptions } from '../../functions/core/tokenService.js';

const grants = GrantBook.parse({
  clients: { c: { domain: 'tenant.auth0.com', secretId: 's' } },
  grants: [{ principals: ['arn:aws:iam::111122223333:role/app'], client: 'c', audience: 'https://api', scopes: ['read', 'write'] }],
});
const caller = { kind: 'iam', partition: 'aws', account: '111122223333', type: 'role', path: '', name: 'app', arn: 'arn:aws:iam::111122223333:role/app' } as const;

/** An in-memory TokenStore with DynamoDB's conditional semantics. */
class FakeStore implements TokenStore {
  tokens = new Map<string, CachedToken>();
  leases = new Map<string, { owner: string; until: number }>();
  constructor(private readonly clock: { now: number }) {}
  async get(key: string) {
    return this.tokens.get(key);
  }
  async put(token: CachedToken) {
    const existing = this.tokens.get(token.key);
    if (existing === undefined || existing.expiresAt < token.expiresAt) this.tokens.set(token.key, token);
  }
  async acquireLease(key: string, owner: string, until: number) {
    const lease = this.leases.get(key);
    if (lease !== undefined && lease.until >= this.clock.now) return false;
    this.leases.set(key, { owner, until });
    return true;
  }
  async releaseLease(key: string, owner: string) {
    if (this.leases.get(key)?.owner === owner) this.leases.delete(key);
  }
}

function setup(opts: Partial<TokenServiceOptions> = {}, expiresIn = 3600) {
  const clock = { now: 1_700_000_000_000 };
  const store = new FakeStore(clock);
  const requests: TokenFetchRequest[] = [];
  const idp = {
    failNext: undefined as Error | undefined,
    scope: undefined as string | undefined,
    async fetchToken(req: TokenFetchRequest): Promise<IssuedToken> {
      requests.push(req);
      await new Promise((r) => setTimeout(r, 5));
      if (idp.failNext) {
        const e = idp.failNext;
        idp.failNext = undefined;
        throw e;
      }
      return { accessToken: `tok-${requests.length}`, scope: idp.scope ?? req.scopes.join(' '), expiresAt: Math.floor(clock.now / 1000) + expiresIn, fetchedAt: clock.now };
    },
  };
  const events: string[] = [];
  const observer = {
    cacheHit: (t: string) => events.push(`hit:${t}`),
    cacheMiss: () => events.push('miss'),
    idpFetch: () => events.push('fetch'),
    idpError: (c: string) => events.push(`error:${c}`),
    leaseWait: () => events.push('wait'),
    leaseTimeout: () => events.push('timeout'),
  };
  const quiet = { debug() {}, info() {}, warn() {}, error() {} };
  /** runs on each wait step, before the fake clock advances: "meanwhile, elsewhere in the fleet" */
  const meanwhile: Array<() => void> = [];
  const make = () =>
    new TokenService(
      { grants, credentials: { get: async () => ({ clientId: 'cid', clientSecret: 'sekret' }) }, idp, store, observer, log: quiet, now: () => clock.now, sleep: async (ms) => { meanwhile.shift()?.(); clock.now += ms; } },
      { earlyExpirySeconds: 60, leaseTtlMs: 10_000, leaseWaitMs: 2_000, memoryCacheEntries: 10, ...opts },
    );
  return { clock, store, requests, idp, events, make, meanwhile };
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
    const { clock, requests, make, store } = setup();
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
    const { clock, requests, make } = setup({ earlyExpirySeconds: 300 }, 100);
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
    const { requests, make, idp, store, events } = setup();
    const service = make();
    idp.failNext = new IdpUnavailableError('down', 5);
    await expect(service.vend({ caller, audience: 'https://api' })).rejects.toBeInstanceOf(IdpUnavailableError);
    expect(store.tokens.size).toBe(0);
    expect(store.leases.size).toBe(0);
    expect(events).toContain('error:temporarily_unavailable');
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
    const token = { key, accessToken: 'theirs', scope: 'read', expiresAt: Math.floor(clock.now / 1000) + 3600, fetchedAt: clock.now, fingerprint: 'f' };
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
});
