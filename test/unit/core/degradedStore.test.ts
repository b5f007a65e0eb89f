/**
 * Running without DynamoDB (functions/core/degradedStore.ts): a TokenStore wrapping a fake inner
 * TokenStore that works, fails with StoreUnavailableError (an outage), or fails otherwise (a bug,
 * a permission). A fake clock (`{ now }` advanced by an injected `sleep`) gives the quota guard
 * its hours.
 */
import { describe, expect, it } from 'vitest';
import { DegradedModeStore, UNAVAILABLE } from '../../../functions/core/degradedStore.js';
import { StoreUnavailableError } from '../../../functions/core/errors.js';
import type { Backoff, CachedToken, TokenRecord, TokenStore } from '../../../functions/core/ports.js';
import { RecordingLog } from '../../helpers/recordingLog.js';

const HOUR_MS = 3_600_000;
const T0 = 472_222 * HOUR_MS;

type Mode = 'up' | 'down' | 'broken';

/** The inner store: in memory while `up`; `down` throws StoreUnavailableError; `broken` throws a plain Error. */
class FakeStore implements TokenStore {
  mode: Mode = 'up';
  readonly tokens = new Map<string, CachedToken>();
  readonly backoffs = new Map<string, Backoff>();
  readonly touched = new Map<string, number>();
  readonly counts = new Map<string, number>();
  readonly leases = new Map<string, string>();
  readonly calls: string[] = [];

  private enter(operation: string): void {
    this.calls.push(operation);
    if (this.mode === 'down') throw new StoreUnavailableError(`DynamoDB ${operation} failed (NetworkingError)`);
    if (this.mode === 'broken') throw new Error(`${operation}: AccessDeniedException`);
  }
  async get(key: string) {
    this.enter('get');
    return this.tokens.get(key);
  }
  async put(token: CachedToken) {
    this.enter('put');
    this.tokens.set(token.key, token);
  }
  async touch(key: string, atMs: number) {
    this.enter('touch');
    this.touched.set(key, atMs);
  }
  async getBackoff(clientKey: string) {
    this.enter('getBackoff');
    return this.backoffs.get(clientKey);
  }
  async putBackoff(clientKey: string, backoff: Backoff) {
    this.enter('putBackoff');
    this.backoffs.set(clientKey, backoff);
  }
  async countFetch(clientKey: string, hourStartMs: number, cap: number) {
    this.enter('countFetch');
    const slot = `${clientKey}#${hourStartMs}`;
    const n = this.counts.get(slot) ?? 0;
    if (n >= cap) return false;
    this.counts.set(slot, n + 1);
    return true;
  }
  async listTokens(): Promise<TokenRecord[]> {
    this.enter('listTokens');
    return [...this.tokens.values()].map(({ accessToken: _accessToken, ...record }) => record);
  }
  async remove(key: string) {
    this.enter('remove');
    this.tokens.delete(key);
  }
  async acquireLease(name: string, owner: string) {
    this.enter('acquireLease');
    if (this.leases.has(name)) return false;
    this.leases.set(name, owner);
    return true;
  }
  async renewLease(name: string, owner: string) {
    this.enter('renewLease');
    return this.leases.get(name) === owner;
  }
  async releaseLease(name: string, owner: string) {
    this.enter('releaseLease');
    if (this.leases.get(name) === owner) this.leases.delete(name);
  }
}

function setup(mode: Mode = 'up') {
  const clock = { now: T0 };
  const sleep = async (ms: number): Promise<void> => {
    clock.now += ms;
  };
  const hourStart = () => Math.floor(clock.now / HOUR_MS) * HOUR_MS;
  const inner = new FakeStore();
  inner.mode = mode;
  const degraded: string[] = [];
  const log = new RecordingLog();
  const store = new DegradedModeStore(inner, { storeDegraded: (operation) => void degraded.push(operation) }, log);
  return { clock, sleep, hourStart, inner, degraded, log, store };
}

function token(key = 'k'): CachedToken {
  return { key, accessToken: `at-${key}`, scope: 'read', expiresAt: T0 / 1000 + 3600, fetchedAt: T0, fingerprint: `fp-${key}`, client: 'c', audience: 'https://api', scopes: ['read'] };
}

const backoff: Backoff = { until: T0 + 30_000, reason: 'rate_limited' };

describe('while the inner store works', () => {
  it('passes get and probe through', async () => {
    // Arrange
    const { store, inner, degraded } = setup();
    inner.tokens.set('k', token());
    // Act
    const got = await store.get('k');
    const probed = await store.probe('k');
    const missing = await store.probe('gone');
    // Assert
    expect(got?.accessToken).toBe('at-k');
    expect(probed).toEqual(token());
    expect(missing).toBeUndefined();
    expect(degraded).toEqual([]);
  });

  it('passes put and touch through', async () => {
    // Arrange
    const { store, inner } = setup();
    // Act
    await store.put(token());
    await store.touch('k', T0 + 5);
    // Assert
    expect(inner.tokens.get('k')?.accessToken).toBe('at-k');
    expect(inner.touched.get('k')).toBe(T0 + 5);
  });

  it('passes getBackoff and putBackoff through', async () => {
    // Arrange
    const { store, inner } = setup();
    // Act
    await store.putBackoff('client', backoff);
    const read = await store.getBackoff('client');
    // Assert
    expect(inner.backoffs.get('client')).toEqual(backoff);
    expect(read).toEqual(backoff);
  });

  it("answers countFetch with the fleet's count, not the instance's", async () => {
    // Arrange: the fleet has already used the whole cap
    const { store, inner, hourStart } = setup();
    inner.counts.set(`client#${hourStart()}`, 2);
    // Act
    const allowed = await store.countFetch('client', hourStart(), 2);
    // Assert
    expect(allowed).toBe(false);
  });

  it('passes listTokens, remove and the lease operations through', async () => {
    // Arrange
    const { store, inner } = setup();
    inner.tokens.set('k', token());
    // Act
    const listed = await store.listTokens();
    await store.remove('k');
    const taken = await store.acquireLease('lease#k', 'me', T0 + 1_000);
    const takenAgain = await store.acquireLease('lease#k', 'other', T0 + 1_000);
    const renewed = await store.renewLease('lease#k', 'me', T0 + 2_000);
    const renewedByOther = await store.renewLease('lease#k', 'other', T0 + 2_000);
    await store.releaseLease('lease#k', 'me');
    // Assert
    expect(listed.map((r) => r.key)).toEqual(['k']);
    expect(JSON.stringify(listed)).not.toContain('at-k');
    expect(inner.tokens.has('k')).toBe(false);
    expect([taken, takenAgain]).toEqual([true, false]);
    expect([renewed, renewedByOther]).toEqual([true, false]);
    expect(inner.leases.has('lease#k')).toBe(false);
  });
});

describe('while the inner store is unavailable', () => {
  it('reads a miss from get, and reports GetItem once', async () => {
    // Arrange
    const { store, degraded, log } = setup('down');
    // Act
    const got = await store.get('k');
    // Assert
    expect(got).toBeUndefined();
    expect(degraded).toEqual(['GetItem']);
    expect(log.lines.filter((l) => l.level === 'warn')).toHaveLength(1);
  });

  it('answers probe with UNAVAILABLE, told apart from a missing item', async () => {
    // Arrange
    const { store, inner, degraded } = setup();
    const missing = await store.probe('k');
    inner.mode = 'down';
    // Act
    const unreachable = await store.probe('k');
    // Assert
    expect(missing).toBeUndefined();
    expect(unreachable).toBe(UNAVAILABLE);
    expect(degraded).toEqual(['GetItem']);
  });

  it('skips put without throwing, and reports PutItem', async () => {
    // Arrange
    const { store, degraded } = setup('down');
    // Act
    const result = store.put(token());
    // Assert
    await expect(result).resolves.toBeUndefined();
    expect(degraded).toEqual(['PutItem']);
  });

  it('skips touch without throwing, and reports UpdateItem', async () => {
    // Arrange
    const { store, degraded } = setup('down');
    // Act
    const result = store.touch('k', T0);
    // Assert
    await expect(result).resolves.toBeUndefined();
    expect(degraded).toEqual(['UpdateItem']);
  });

  it('reads no back-off from getBackoff, and reports GetItem', async () => {
    // Arrange
    const { store, degraded } = setup('down');
    // Act
    const read = await store.getBackoff('client');
    // Assert
    expect(read).toBeUndefined();
    expect(degraded).toEqual(['GetItem']);
  });

  it('skips putBackoff without throwing, and reports PutItem', async () => {
    // Arrange
    const { store, degraded } = setup('down');
    // Act
    const result = store.putBackoff('client', backoff);
    // Assert
    await expect(result).resolves.toBeUndefined();
    expect(degraded).toEqual(['PutItem']);
  });

  it("counts fetches against this instance's own count (cap 2: true, true, false), reporting each failure", async () => {
    // Arrange
    const { store, degraded, hourStart } = setup('down');
    // Act
    const answers: boolean[] = [];
    for (let i = 0; i < 3; i += 1) answers.push(await store.countFetch('client', hourStart(), 2));
    // Assert
    expect(answers).toEqual([true, true, false]);
    expect(degraded).toEqual(['UpdateItem', 'UpdateItem', 'UpdateItem']);
  });

  it('starts the count afresh in a new hour', async () => {
    // Arrange
    const { store, sleep, hourStart } = setup('down');
    await store.countFetch('client', hourStart(), 2);
    await store.countFetch('client', hourStart(), 2);
    const exhausted = await store.countFetch('client', hourStart(), 2);
    // Act
    await sleep(HOUR_MS);
    const nextHour = await store.countFetch('client', hourStart(), 2);
    // Assert
    expect(exhausted).toBe(false);
    expect(nextHour).toBe(true);
  });

  it('keeps a count per client', async () => {
    // Arrange
    const { store, hourStart } = setup('down');
    await store.countFetch('a', hourStart(), 1);
    // Act
    const otherClient = await store.countFetch('b', hourStart(), 1);
    const sameClient = await store.countFetch('a', hourStart(), 1);
    // Assert
    expect(otherClient).toBe(true);
    expect(sameClient).toBe(false);
  });

  it("counts the instance's fetches made while the store still answered", async () => {
    // Arrange: two fetches counted by the fleet, then DynamoDB goes away
    const { store, inner, hourStart } = setup();
    await store.countFetch('client', hourStart(), 2);
    await store.countFetch('client', hourStart(), 2);
    inner.mode = 'down';
    // Act
    const third = await store.countFetch('client', hourStart(), 2);
    // Assert
    expect(third).toBe(false);
  });

  it('works again, without reporting, once the inner store is back', async () => {
    // Arrange
    const { store, inner, degraded } = setup('down');
    await store.get('k');
    inner.mode = 'up';
    inner.tokens.set('k', token());
    // Act
    const got = await store.get('k');
    // Assert
    expect(got?.key).toBe('k');
    expect(degraded).toEqual(['GetItem']);
  });

  it('does not degrade listTokens, remove or the lease operations: the error propagates', async () => {
    // Arrange
    const { store, degraded } = setup('down');
    // Act
    const results = await Promise.allSettled([store.listTokens(), store.remove('k'), store.acquireLease('lease#k', 'me', T0), store.renewLease('lease#k', 'me', T0), store.releaseLease('lease#k', 'me')]);
    // Assert
    for (const result of results) {
      expect(result.status).toBe('rejected');
      expect((result as PromiseRejectedResult).reason).toBeInstanceOf(StoreUnavailableError);
    }
    expect(degraded).toEqual([]);
  });
});

describe('other errors of the inner store', () => {
  it('propagate from every degradable operation, unreported', async () => {
    // Arrange
    const { store, degraded, hourStart } = setup('broken');
    // Act
    const results = await Promise.allSettled([
      store.get('k'),
      store.probe('k'),
      store.put(token()),
      store.touch('k', T0),
      store.getBackoff('client'),
      store.putBackoff('client', backoff),
      store.countFetch('client', hourStart(), 2),
    ]);
    // Assert
    expect(results.map((r) => r.status)).toEqual(Array(7).fill('rejected'));
    for (const result of results) expect((result as PromiseRejectedResult).reason).not.toBeInstanceOf(StoreUnavailableError);
    expect(degraded).toEqual([]);
  });
});
