/**
 * The fleet lease (functions/core/lease.ts) against an in-memory LeaseStore with DynamoDB's
 * conditional semantics: a lease is taken only when free or lapsed (`attribute_not_exists(#id)
 * OR #expiry < :now`), renewed and released only by its owner. A fake clock (`{ now }`) is
 * advanced by the injected `sleep`, or not at all (a frozen clock); advancing it fires the fake
 * timers the renewals are scheduled on, in order, as real time would.
 */
import { describe, expect, it, vi } from 'vitest';
import { StoreUnavailableError } from '../../../functions/core/errors.js';
import { FleetLease, unrefSchedule, type LeaseRun, type LeaseStore, type Schedule } from '../../../functions/core/lease.js';

const T0 = 1_700_000_000_000;

/** In-memory leases with DynamoDB's conditional write: free or lapsed → taken. */
class FakeLeaseStore implements LeaseStore {
  readonly leases = new Map<string, { owner: string; until: number }>();
  readonly acquired: { name: string; owner: string; untilMs: number }[] = [];
  /** every renewal that held, with the clock at the time */
  readonly renewed: { name: string; owner: string; untilMs: number; at: number }[] = [];
  /** every call of renewLease, including those that fail */
  renewAttempts = 0;
  /** when set, only renewals throw it */
  failRenewWith: Error | undefined;
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

  async renewLease(name: string, owner: string, untilMs: number): Promise<boolean> {
    this.renewAttempts += 1;
    const failure = this.failWith ?? this.failRenewWith;
    if (failure !== undefined) throw failure;
    if (this.leases.get(name)?.owner !== owner) return false;
    this.leases.set(name, { owner, until: untilMs });
    this.renewed.push({ name, owner, untilMs, at: this.clock.now });
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

/** Lets every promise chain that is ready to run settle (the fake store answers at once). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Timers on the fake clock: `advance` moves the clock to each due timer in turn, fires it and
 * lets what it started settle, then moves to the end. A `dead` instance's timers never fire.
 */
class FakeTimers {
  private readonly timers: { at: number; fn: () => void }[] = [];
  /** every delay a timer was scheduled with */
  readonly delays: number[] = [];

  constructor(private readonly clock: { now: number }) {}

  readonly schedule: Schedule = (ms, fn) => {
    const timer = { at: this.clock.now + ms, fn };
    this.timers.push(timer);
    this.delays.push(ms);
    return () => {
      const at = this.timers.indexOf(timer);
      if (at >= 0) this.timers.splice(at, 1);
    };
  };

  get pending(): number {
    return this.timers.length;
  }

  async advance(ms: number): Promise<void> {
    const end = this.clock.now + ms;
    for (;;) {
      await settle();
      const due = this.timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      this.timers.splice(this.timers.indexOf(due), 1);
      this.clock.now = Math.max(this.clock.now, due.at);
      due.fn();
    }
    this.clock.now = end;
    await settle();
  }
}

interface SetupOptions {
  /** false: the injected sleep does not advance the clock */
  readonly clockMoves?: boolean;
  readonly random?: () => number;
  /** the lease's hold; none by default (taken for the whole ttlMs) */
  readonly holdMs?: number;
}

function setup({ clockMoves = true, random = () => 0.5, holdMs }: SetupOptions = {}) {
  const clock = { now: T0 };
  const timers = new FakeTimers(clock);
  const pauses: number[] = [];
  const sleep = async (ms: number): Promise<void> => {
    // A wait that never ends would spin on resolved promises and starve the test's timeout.
    if (pauses.length >= 1_000) throw new Error('fake sleep: the wait never ends');
    pauses.push(ms);
    if (clockMoves) await timers.advance(ms);
  };
  const store = new FakeLeaseStore(clock);
  const degraded: { operation: string; error: StoreUnavailableError }[] = [];
  const lost: { name: string; error: unknown }[] = [];
  /** another instance of the fleet: same store and clock; `dead`: its timers never fire (it stops renewing) */
  const instance = ({ dead = false, instanceSleep = sleep }: { dead?: boolean; instanceSleep?: (ms: number) => Promise<void> } = {}) =>
    new FleetLease({
      store,
      now: () => clock.now,
      sleep: instanceSleep,
      random,
      onDegraded: (operation, error) => void degraded.push({ operation, error }),
      onLost: (name, error) => void lost.push({ name, error }),
      ...(holdMs !== undefined ? { holdMs } : {}),
      schedule: dead ? () => () => undefined : timers.schedule,
    });
  const lease = instance();
  return { clock, timers, sleep, pauses, store, degraded, lost, lease, instance };
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

describe('a short hold, renewed while the work runs', () => {
  /** A holding whose work never ends: its run never settles (a hung fetch, a dead or frozen instance). */
  const forever = () => new Promise<string>(() => undefined);

  it('takes the lease for holdMs and renews it every holdMs / 3 while produce runs, each renewal for holdMs', async () => {
    // Arrange
    const { lease, store, timers } = setup({ holdMs: 3_000 });
    const { run } = leaseRun({
      ttlMs: 25_000,
      produce: async () => {
        await timers.advance(10_000);
        return 'made';
      },
    });
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ value: 'made' });
    expect(store.acquired.map((a) => a.untilMs)).toEqual([T0 + 3_000]);
    expect(store.renewed.map((r) => r.at - T0)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((s) => s * 1_000));
    expect(store.renewed.every((r) => r.untilMs === r.at + 3_000)).toBe(true);
    expect(new Set(store.renewed.map((r) => r.owner))).toEqual(new Set([store.acquired[0]?.owner]));
    // every renewal landed while the lease was still held
    const untils = [T0 + 3_000, ...store.renewed.map((r) => r.untilMs)];
    expect(store.renewed.every((r, i) => r.at < (untils[i] ?? 0))).toBe(true);
    expect(new Set(timers.delays)).toEqual(new Set([1_000]));
  });

  it('stops renewing when produce settles: no timer is left, none fires later, the lease is released', async () => {
    // Arrange
    const { lease, store, timers } = setup({ holdMs: 3_000 });
    const { run } = leaseRun({
      ttlMs: 25_000,
      produce: async () => {
        await timers.advance(2_500);
        return 'made';
      },
    });
    // Act
    const result = await lease.run(run);
    const pendingAfter = timers.pending;
    await timers.advance(60_000);
    // Assert
    expect(result).toEqual({ value: 'made' });
    expect(pendingAfter).toBe(0);
    expect(store.renewed.map((r) => r.at - T0)).toEqual([1_000, 2_000]);
    expect(store.renewAttempts).toBe(2);
    expect(store.leases.has('token#k')).toBe(false);
  });

  it('stops renewing when produce throws', async () => {
    // Arrange
    const { lease, store, timers } = setup({ holdMs: 3_000 });
    const { run } = leaseRun({
      ttlMs: 25_000,
      produce: async () => {
        await timers.advance(1_500);
        throw new Error('idp refused');
      },
    });
    // Act
    const result = lease.run(run);
    // Assert
    await expect(result).rejects.toThrow('idp refused');
    expect(timers.pending).toBe(0);
    await timers.advance(60_000);
    expect(store.renewAttempts).toBe(1);
    expect(store.leases.has('token#k')).toBe(false);
  });

  it('a dead holder (it stops renewing) is taken over after holdMs, not ttlMs', async () => {
    // Arrange: the holder took the lease at T0, then died: its timers never fire again
    const { lease, store, clock, instance } = setup({ holdMs: 3_000 });
    const dead = instance({ dead: true });
    void dead.run({ ...leaseRun().run, ttlMs: 25_000, produce: forever });
    await settle();
    const { run, state } = leaseRun({ ttlMs: 25_000, waitMs: 12_000 });
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ value: 'produced' });
    expect(state.produced).toEqual(['taken']);
    expect(store.acquired.map((a) => a.untilMs - T0)).toEqual([3_000, clock.now + 3_000 - T0]);
    expect(clock.now - T0).toBeGreaterThan(3_000);
    expect(clock.now - T0).toBeLessThanOrEqual(3_000 + 250); // at most one wait step after the hold lapsed
    expect(store.renewAttempts).toBe(0);
  });

  it('a live holder that keeps renewing is not taken over: the waiter waits it out', async () => {
    // Arrange: the holder's fetch is slow but its instance is alive (its timers fire as time passes)
    const { lease, store, instance } = setup({ holdMs: 3_000 });
    const live = instance();
    void live.run({ ...leaseRun().run, ttlMs: 25_000, produce: forever });
    await settle();
    const holder = store.acquired[0]?.owner;
    const { run, state } = leaseRun({ ttlMs: 25_000, waitMs: 12_000 });
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ timedOut: true, waitedMs: 12_000 });
    expect(state.produced).toEqual([]);
    expect(store.acquired).toHaveLength(1);
    expect(store.renewed.length).toBeGreaterThanOrEqual(11);
    expect(store.leases.get('token#k')?.owner).toBe(holder);
  });

  it('never renews past ttlMs from the take: a holder stuck for ever lets go at ttlMs', async () => {
    // Arrange: the holder is alive (it renews) but its work never ends
    const { lease, store, clock, timers, instance } = setup({ holdMs: 3_000 });
    const stuck = instance();
    void stuck.run({ ...leaseRun().run, ttlMs: 10_000, produce: forever });
    await settle();
    const { run, state } = leaseRun({ ttlMs: 25_000, waitMs: 12_000 });
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ value: 'produced' });
    expect(state.produced).toEqual(['taken']);
    const stuckRenewals = store.renewed.filter((r) => r.owner === store.acquired[0]?.owner);
    expect(stuckRenewals.map((r) => r.untilMs - T0)).toEqual([4_000, 5_000, 6_000, 7_000, 8_000, 9_000, 10_000]);
    expect(Math.max(...store.renewed.map((r) => r.untilMs))).toBeLessThanOrEqual(T0 + 10_000);
    expect(clock.now - T0).toBeGreaterThan(10_000);
    expect(clock.now - T0).toBeLessThanOrEqual(10_000 + 250);
    expect(timers.pending).toBe(0); // the stuck holder schedules nothing more
  });

  it('a holder thawed after a freeze longer than ttlMs does not renew at all', async () => {
    // Arrange: frozen right after the take (no timer fires while frozen), thawed 30 s later
    const { lease, store, clock, timers } = setup({ holdMs: 3_000 });
    const { run } = leaseRun({
      ttlMs: 25_000,
      produce: async () => {
        clock.now += 30_000;
        await timers.advance(5_000);
        return 'made late';
      },
    });
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ value: 'made late' });
    expect(store.renewAttempts).toBe(0);
    expect(timers.pending).toBe(0);
  });

  it('a renewal that finds the lease taken over reports it once, stops renewing, and the work goes on', async () => {
    // Arrange
    const { lease, store, timers, lost } = setup({ holdMs: 3_000 });
    const { run } = leaseRun({
      ttlMs: 25_000,
      produce: async () => {
        await timers.advance(1_500);
        // our lease lapsed (a stall) and another instance took it over
        store.leases.set('token#k', { owner: 'usurper', until: T0 + 60_000 });
        await timers.advance(10_000);
        return 'made anyway';
      },
    });
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ value: 'made anyway' });
    expect(lost).toEqual([{ name: 'token#k', error: undefined }]);
    expect(store.renewAttempts).toBe(2);
    expect(store.renewed).toHaveLength(1);
    expect(store.leases.get('token#k')?.owner).toBe('usurper'); // not ours to release
  });

  it('a renewal that finds the store unavailable is reported as degraded and tried again at the next beat', async () => {
    // Arrange
    const { lease, store, timers, degraded, lost } = setup({ holdMs: 3_000 });
    const outage = new StoreUnavailableError('DynamoDB UpdateItem failed (ThrottlingException)');
    const { run } = leaseRun({
      ttlMs: 25_000,
      produce: async () => {
        store.failRenewWith = outage;
        await timers.advance(2_500);
        store.failRenewWith = undefined;
        await timers.advance(1_000);
        return 'made';
      },
    });
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ value: 'made' });
    expect(degraded).toEqual([
      { operation: 'UpdateItem', error: outage },
      { operation: 'UpdateItem', error: outage },
    ]);
    expect(store.renewed.map((r) => r.at - T0)).toEqual([3_000]);
    expect(lost).toEqual([]);
  });

  it('a renewal failing otherwise is reported as lost with its error, and renewal stops', async () => {
    // Arrange
    const { lease, store, timers, degraded, lost } = setup({ holdMs: 3_000 });
    const bug = new Error('ValidationException');
    const { run } = leaseRun({
      ttlMs: 25_000,
      produce: async () => {
        store.failRenewWith = bug;
        await timers.advance(10_000);
        return 'made';
      },
    });
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ value: 'made' });
    expect(lost).toEqual([{ name: 'token#k', error: bug }]);
    expect(store.renewAttempts).toBe(1);
    expect(degraded).toEqual([]);
  });

  it("does not renew a lease it went ahead without ('degraded')", async () => {
    // Arrange
    const { lease, store, timers } = setup({ holdMs: 3_000 });
    store.failWith = new StoreUnavailableError('DynamoDB PutItem failed (NetworkingError)');
    const { run } = leaseRun({
      ttlMs: 25_000,
      produce: async (outcome) => {
        await timers.advance(10_000);
        return outcome;
      },
    });
    // Act
    const result = await lease.run(run);
    // Assert
    expect(result).toEqual({ value: 'degraded' });
    expect(store.renewAttempts).toBe(0);
    expect(timers.delays).toEqual([]);
  });

  it('without a shorter hold than ttlMs the lease is taken for ttlMs at once and never renewed', async () => {
    // Arrange
    const { lease, store, timers } = setup({ holdMs: 10_000 });
    const { run } = leaseRun({
      ttlMs: 10_000,
      produce: async () => {
        await timers.advance(8_000);
        return 'made';
      },
    });
    // Act
    await lease.run(run);
    // Assert
    expect(store.acquired.map((a) => a.untilMs)).toEqual([T0 + 10_000]);
    expect(store.renewAttempts).toBe(0);
    expect(timers.delays).toEqual([]);
  });

  it('ifFree holds for holdMs, renews while the work runs and stops when it settles', async () => {
    // Arrange
    const { lease, store, timers } = setup({ holdMs: 3_000 });
    // Act
    const result = await lease.ifFree('token#k', 25_000, async () => {
      await timers.advance(4_000);
      return 'refreshed';
    });
    await timers.advance(60_000);
    // Assert
    expect(result).toBe('refreshed');
    expect(store.acquired.map((a) => a.untilMs)).toEqual([T0 + 3_000]);
    expect(store.renewed.map((r) => r.at - T0)).toEqual([1_000, 2_000, 3_000, 4_000]);
    expect(timers.pending).toBe(0);
    expect(store.leases.has('token#k')).toBe(false);
  });

  it('ifFree: a dead holder of the refresh lease is taken over after holdMs', async () => {
    // Arrange
    const { lease, store, clock, instance } = setup({ holdMs: 3_000 });
    void instance({ dead: true }).ifFree('token#k', 25_000, forever);
    await settle();
    // Act
    const whileHeld = await lease.ifFree('token#k', 25_000, async () => 'refreshed');
    clock.now = T0 + 3_001;
    const afterHold = await lease.ifFree('token#k', 25_000, async () => 'refreshed');
    // Assert
    expect(whileHeld).toBeUndefined();
    expect(afterHold).toBe('refreshed');
    expect(store.acquired).toHaveLength(2);
  });
});

describe('the default schedule (real timers)', () => {
  it('never keeps the process alive, fires once, and can be cancelled', async () => {
    // Arrange
    const spy = vi.spyOn(globalThis, 'setTimeout');
    let fired = 0;
    let cancelledFired = 0;
    // Act
    unrefSchedule(5, () => void (fired += 1));
    const timer = spy.mock.results[0]?.value as NodeJS.Timeout;
    const cancel = unrefSchedule(5, () => void (cancelledFired += 1));
    cancel();
    spy.mockRestore();
    await new Promise((resolve) => setTimeout(resolve, 30));
    // Assert
    expect(timer.hasRef()).toBe(false);
    expect(fired).toBe(1);
    expect(cancelledFired).toBe(0);
  });

  it('renews on real timers while the work runs and leaves none behind', async () => {
    // Arrange
    const clock = { now: T0 };
    const store = new FakeLeaseStore(clock);
    const lease = new FleetLease({ store, now: () => Date.now(), sleep: async () => undefined, random: () => 0.5, holdMs: 30 });
    // Act
    const result = await lease.ifFree('token#k', 10_000, async () => {
      // until two renewals have run (each 10 ms apart), however slow this machine is
      while (store.renewAttempts < 2) await new Promise((resolve) => setTimeout(resolve, 5));
      return 'done';
    });
    const renewalsAtSettle = store.renewAttempts;
    await new Promise((resolve) => setTimeout(resolve, 60));
    // Assert
    expect(result).toBe('done');
    expect(renewalsAtSettle).toBeGreaterThanOrEqual(2);
    expect(store.renewAttempts).toBe(renewalsAtSettle); // the pending renewal was cancelled
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
