/**
 * The fleet lease (functions/core/lease.ts) against an in-memory LeaseStore with DynamoDB's
 * conditional semantics: a lease is taken only when free or lapsed (`attribute_not_exists(#id)
 * OR #expiry < :now`), released only by its owner. A fake clock (`{ now }`) is advanced by the
 * injected `sleep`, or not at all (a frozen clock).
 */
import { describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../../../functions/core/errors.js';
import { FleetLease, type LeaseRun, type LeaseStore } from '../../../functions/core/lease.js';

const T0 = 1_700_000_000_000;

/** In-memory leases with DynamoDB's conditional write: free or lapsed → taken. */
class FakeLeaseStore implements LeaseStore {
  readonly leases = new Map<string, { owner: string; until: number }>();
  readonly acquired: { name: string; owner: string; untilMs: number }[] = [];
  readonly released: { name: string; owner: string }[] = [];
  /** every call of releaseLease, including those that fail */
  releaseAttempts = 0;
  /** when set, every call throws it (as the adapter would on an outage) */
  failWith: Error | undefined;
  /** when set, only releases throw it */
  failReleaseWith: Error | undefined;

  constructor(private readonly clock: { now: number }) {}

  async acquireLease(name: string, owner: string, untilMs: number): Promise<boolean> {
    if (this.failWith !== undefined) throw this.failWith;
    const held = this.leases.get(name);
    if (held !== undefined && !(held.until < this.clock.now)) return false;
    this.leases.set(name, { owner, until: untilMs });
    this.acquired.push({ name, owner, untilMs });
    return true;
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    this.releaseAttempts += 1;
    const failure = this.failWith ?? this.failReleaseWith;
    if (failure !== undefined) throw failure;
    this.released.push({ name, owner });
    if (this.leases.get(name)?.owner === owner) this.leases.delete(name);
  }
}

interface SetupOptions {
  /** false: the injected sleep does not advance the clock */
  readonly clockMoves?: boolean;
  readonly random?: () => number;
}

function setup({ clockMoves = true, random = () => 0.5 }: SetupOptions = {}) {
  const clock = { now: T0 };
  const pauses: number[] = [];
  const sleep = async (ms: number): Promise<void> => {
    // A wait that never ends would spin on resolved promises and starve the test's timeout.
    if (pauses.length >= 1_000) throw new Error('fake sleep: the wait never ends');
    pauses.push(ms);
    if (clockMoves) clock.now += ms;
  };
  const store = new FakeLeaseStore(clock);
  const degraded: { operation: string; error: StoreUnavailableError }[] = [];
  const lease = new FleetLease({
    store,
    now: () => clock.now,
    sleep,
    random,
    onDegraded: (operation, error) => void degraded.push({ operation, error }),
  });
  return { clock, sleep, pauses, store, degraded, lease };
}

/** A LeaseRun whose calls are counted; `ready` answers from a mutable slot. */
function leaseRun(overrides: Partial<LeaseRun<string>> = {}) {
  const state = { result: undefined as string | undefined, readyCalls: 0, produced: [] as ('taken' | 'degraded')[], waits: 0 };
  const run: LeaseRun<string> = {
    name: 'token#k',
    ttlMs: 10_000,
    waitMs: 1_000,
    ready: async () => {
      state.readyCalls += 1;
      return state.result;
    },
    produce: async (outcome) => {
      state.produced.push(outcome);
      return 'produced';
    },
    onWait: () => {
      state.waits += 1;
    },
    ...overrides,
  };
  return { run, state };
}

describe('FleetLease.run', () => {
  it('returns the ready value without taking the lease', async () => {
    // Arrange
    const { lease, store } = setup();
    const { run, state } = leaseRun();
    state.result = 'already there';
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ value: 'already there' });
    expect(store.acquired).toEqual([]);
    expect(state.produced).toEqual([]);
  });

  it('takes the lease for ttlMs around produce and releases it after', async () => {
    // Arrange
    const { lease, store } = setup();
    let heldDuringProduce: { owner: string; until: number } | undefined;
    const { run } = leaseRun({
      produce: async (outcome) => {
        heldDuringProduce = store.leases.get('token#k');
        return `made (${outcome})`;
      },
    });
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ value: 'made (taken)' });
    expect(heldDuringProduce?.until).toBe(T0 + 10_000);
    expect(store.acquired).toHaveLength(1);
    expect(store.released).toEqual([{ name: 'token#k', owner: heldDuringProduce?.owner }]);
    expect(store.leases.has('token#k')).toBe(false);
  });

  it('releases the lease even when produce throws, and the error propagates', async () => {
    // Arrange
    const { lease, store } = setup();
    const { run } = leaseRun({
      produce: async () => {
        throw new Error('idp refused');
      },
    });
    // Act
    const result = lease.run(run);
    // Assert
    await expect(result).rejects.toThrow('idp refused');
    expect(store.released).toHaveLength(1);
    expect(store.leases.has('token#k')).toBe(false);
  });

  it('waits while another owner holds the lease and returns the value that appears meanwhile', async () => {
    // Arrange
    const { lease, store, clock, pauses } = setup();
    store.leases.set('token#k', { owner: 'other', until: T0 + 60_000 });
    const { run, state } = leaseRun({
      ready: async () => {
        state.readyCalls += 1;
        // the other holder's token lands 100 ms in
        return clock.now >= T0 + 100 ? 'theirs' : undefined;
      },
    });
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ value: 'theirs' });
    expect(state.produced).toEqual([]);
    expect(state.waits).toBe(pauses.length);
    expect(pauses.length).toBeGreaterThan(1);
    expect(store.leases.get('token#k')?.owner).toBe('other');
  });

  it('pauses in jittered steps that grow from 25 ms to a cap of 250 ms', async () => {
    // Arrange: random 0.5 puts each pause at 3/4 of its step
    const { lease, store, pauses } = setup();
    store.leases.set('token#k', { owner: 'other', until: T0 + 60_000 });
    const { run } = leaseRun({ waitMs: 10_000 });
    // Act
    await lease.run(run);
    // Assert
    expect(pauses.slice(0, 6)).toEqual([18.75, 37.5, 75, 150, 187.5, 187.5]);
  });

  it('times out after waitMs measured by the clock', async () => {
    // Arrange: each look at the store takes 300 ms of clock time, far more than the pauses
    const { lease, store, clock, pauses } = setup({ clockMoves: false });
    store.leases.set('token#k', { owner: 'other', until: T0 + 60_000 });
    const { run, state } = leaseRun({
      ready: async () => {
        state.readyCalls += 1;
        clock.now += 300;
        return undefined;
      },
    });
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ timedOut: true, waitedMs: 1_200 });
    expect(state.readyCalls).toBe(4);
    expect(pauses.reduce((a, b) => a + b, 0)).toBeLessThan(1_000);
    expect(state.produced).toEqual([]);
  });

  it('times out after waitMs when the pauses move the clock', async () => {
    // Arrange
    const { lease, store, clock, pauses } = setup();
    store.leases.set('token#k', { owner: 'other', until: T0 + 60_000 });
    const { run, state } = leaseRun();
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ timedOut: true, waitedMs: 1_000 });
    expect(clock.now).toBe(T0 + 1_000);
    expect(state.waits).toBe(pauses.length);
    expect(state.produced).toEqual([]);
  });

  it('times out with a clock that does not move: the sum of pauses ends the wait', async () => {
    // Arrange
    const { lease, store, clock, pauses } = setup({ clockMoves: false });
    store.leases.set('token#k', { owner: 'other', until: T0 + 60_000 });
    const { run, state } = leaseRun();
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ timedOut: true, waitedMs: 1_000 });
    expect(clock.now).toBe(T0);
    expect(pauses.reduce((a, b) => a + b, 0)).toBe(1_000);
    expect(state.waits).toBe(pauses.length);
  });

  it('times out even with random() = 0 and a frozen clock (no zero-length pauses)', async () => {
    // Arrange
    const { lease, store, pauses } = setup({ clockMoves: false, random: () => 0 });
    store.leases.set('token#k', { owner: 'other', until: T0 + 60_000 });
    const { run } = leaseRun();
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ timedOut: true, waitedMs: 1_000 });
    expect(Math.min(...pauses)).toBeGreaterThan(0);
  });

  it('takes over the lease of a dead holder once it lapses', async () => {
    // Arrange: the holder died; its lease lapses 200 ms in
    const { lease, store, clock } = setup();
    store.leases.set('token#k', { owner: 'dead', until: T0 + 200 });
    const { run, state } = leaseRun();
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ value: 'produced' });
    expect(state.produced).toEqual(['taken']);
    expect(state.waits).toBeGreaterThan(0);
    expect(store.acquired[0]?.untilMs).toBe(clock.now + 10_000);
    expect(clock.now).toBeGreaterThan(T0 + 200);
    expect(store.leases.has('token#k')).toBe(false);
  });

  it('takes an already-lapsed lease at once, without waiting', async () => {
    // Arrange
    const { lease, store, pauses } = setup();
    store.leases.set('token#k', { owner: 'dead', until: T0 - 1 });
    const { run, state } = leaseRun();
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ value: 'produced' });
    expect(state.produced).toEqual(['taken']);
    expect(pauses).toEqual([]);
  });

  it('takes the lease on the next step after the holder releases it without a result', async () => {
    // Arrange
    const { lease, store } = setup();
    store.leases.set('token#k', { owner: 'other', until: T0 + 60_000 });
    const { run, state } = leaseRun({
      onWait: () => {
        state.waits += 1;
        if (state.waits === 2) store.leases.delete('token#k');
      },
    });
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ value: 'produced' });
    expect(state.waits).toBe(2);
    expect(state.produced).toEqual(['taken']);
  });

  it("goes ahead alone ('degraded') when the store is unavailable, without a release", async () => {
    // Arrange
    const { lease, store, degraded } = setup();
    const outage = new StoreUnavailableError('DynamoDB PutItem failed (NetworkingError)');
    store.failWith = outage;
    const { run, state } = leaseRun();
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ value: 'produced' });
    expect(state.produced).toEqual(['degraded']);
    expect(degraded).toEqual([{ operation: 'PutItem', error: outage }]);
    expect(store.releaseAttempts).toBe(0);
  });

  it('propagates a store error that is not StoreUnavailableError', async () => {
    // Arrange
    const { lease, store, degraded } = setup();
    store.failWith = new Error('AccessDeniedException');
    const { run, state } = leaseRun();
    // Act
    const result = lease.run(run);
    // Assert
    await expect(result).rejects.toThrow('AccessDeniedException');
    expect(state.produced).toEqual([]);
    expect(degraded).toEqual([]);
  });

  it('still returns the value when the release finds the store unavailable', async () => {
    // Arrange
    const { lease, store, degraded } = setup();
    store.failReleaseWith = new StoreUnavailableError('DynamoDB DeleteItem failed (Throttling)');
    const { run } = leaseRun();
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ value: 'produced' });
    expect(degraded.map((d) => d.operation)).toEqual(['DeleteItem']);
  });
});

describe('FleetLease.ifFree', () => {
  it('returns undefined, without working, when the lease is held elsewhere', async () => {
    // Arrange
    const { lease, store } = setup();
    store.leases.set('token#k', { owner: 'other', until: T0 + 60_000 });
    let worked = false;
    // Act
    const result = await lease.ifFree('token#k', 10_000, async () => {
      worked = true;
      return 'done';
    });
    // Assert
    expect(result).toBeUndefined();
    expect(worked).toBe(false);
    expect(store.leases.get('token#k')?.owner).toBe('other');
  });

  it('works under the lease when it is free, and releases it', async () => {
    // Arrange
    const { lease, store } = setup();
    // Act
    const result = await lease.ifFree('token#k', 10_000, async (outcome) => `done (${outcome}, held by us: ${store.leases.has('token#k')})`);
    // Assert
    expect(result).toBe('done (taken, held by us: true)');
    expect(store.leases.has('token#k')).toBe(false);
  });

  it("works alone ('degraded') when the store is unavailable", async () => {
    // Arrange
    const { lease, store, degraded } = setup();
    store.failWith = new StoreUnavailableError('DynamoDB PutItem failed');
    // Act
    const result = await lease.ifFree('token#k', 10_000, async (outcome) => outcome);
    // Assert
    expect(result).toBe('degraded');
    expect(degraded.map((d) => d.operation)).toEqual(['PutItem']);
    expect(store.releaseAttempts).toBe(0);
  });
});

describe('FleetLease.newOwner', () => {
  it('is distinct per holding and names the instance', () => {
    // Arrange
    const { lease } = setup();
    const other = setup().lease;
    // Act
    const owners = Array.from({ length: 100 }, () => lease.newOwner());
    const otherOwner = other.newOwner();
    // Assert
    expect(new Set(owners).size).toBe(100);
    const instances = new Set(owners.map((o) => o.split('/')[0]));
    expect(instances.size).toBe(1);
    expect(instances.has(otherOwner.split('/')[0])).toBe(false);
  });
});
