/**
 * The fleet lease: one mechanism for "exactly one instance of the fleet does this; the others
 * wait for its result". The token tier uses it so that one instance fetches a token from the IdP.
 * The lease itself is an
 * item with an owner and an expiry, taken by a conditional write only when free or lapsed
 * (Powertools idempotency's `attribute_not_exists(#id) OR #expiry < :now`), so a holder that dies
 * delays the others by at most one lease.
 *
 * A lease is kept short and renewed while the work runs (a heartbeat, as Kubernetes' leader
 * election renews its Lease well inside its duration): with a hold (`holdMs`), each take and each
 * renewal holds it for `holdMs` only, and the holder renews every `holdMs / 3` until its work
 * settles. A holder that dies or is frozen stops renewing, so the others take over within about
 * `holdMs` rather than the whole `ttlMs`. `ttlMs` still bounds the whole holding: no renewal
 * reaches past `ttlMs` after the take, so a holder that is stuck for ever does not hold for ever.
 */
import { randomUUID } from 'node:crypto';
import { StoreUnavailableError } from './errors.js';

/** Where leases are kept (the token table). Names are opaque to the store. */
export interface LeaseStore {
  /** true when `owner` now holds lease `name` until `untilMs` (epoch ms): it was free or lapsed */
  acquireLease(name: string, owner: string, untilMs: number): Promise<boolean>;
  /**
   * true when `owner` still holds lease `name` and now holds it until `untilMs` (epoch ms);
   * false, changing nothing, when the lease is no longer `owner`'s (released, or lapsed and taken
   * over). A conditional write on the owner only: a lapsed lease nobody took is still the owner's.
   */
  renewLease(name: string, owner: string, untilMs: number): Promise<boolean>;
  /** release only if `owner` still holds it */
  releaseLease(name: string, owner: string): Promise<void>;
}

/**
 * - `taken`: this caller holds the lease;
 * - `degraded`: the store is unavailable, so there is no fleet-wide lease: go ahead alone (the
 *   caller's own single flight still bounds the work to one per instance);
 * - `held-elsewhere`: another instance holds it.
 */
export type LeaseOutcome = 'taken' | 'degraded' | 'held-elsewhere';

/** Runs `fn` once after `ms`; the function returned cancels it if it has not run. */
export type Schedule = (ms: number, fn: () => void) => () => void;

/**
 * The default {@link Schedule}: a timer that never keeps the process alive (`unref`), so a
 * renewal pending when the work settles cannot hold up the end of a process or a test.
 */
export const unrefSchedule: Schedule = (ms, fn) => {
  const timer = setTimeout(fn, ms);
  timer.unref();
  return () => clearTimeout(timer);
};

export interface FleetLeaseDeps {
  readonly store: LeaseStore;
  /** epoch ms */
  readonly now: () => number;
  readonly sleep: (ms: number) => Promise<void>;
  /** [0, 1) */
  readonly random: () => number;
  /** the store failed while taking, renewing or releasing a lease, and the caller carried on without it */
  readonly onDegraded?: (operation: string, error: StoreUnavailableError) => void;
  /**
   * How long each take and each renewal holds a lease (ms): a dead or frozen holder's lease lapses
   * this soon. The holder renews every `holdMs / 3` while its work runs, never past the run's
   * `ttlMs` after the take. Absent, or not shorter than `ttlMs`: the lease is taken for the
   * whole `ttlMs` at once and never renewed.
   */
  readonly holdMs?: number | undefined;
  /** what runs the renewals; default {@link unrefSchedule} (real timers, unref'd) */
  readonly schedule?: Schedule;
  /**
   * A renewal found the lease no longer this holder's (it lapsed and another instance took it,
   * or it was removed), or failed in a way that is not the store being unavailable (`error`).
   * Renewal stops; the work goes on (its writes are conditional, so a second holder's result
   * and ours cannot clobber each other).
   */
  readonly onLost?: (name: string, error?: unknown) => void;
}

/** One use of the lease: what it protects and for how long. */
export interface LeaseRun<T> {
  /** the lease's name, e.g. the token's key */
  readonly name: string;
  /**
   * The longest the lease is held: must outlast `produce`. With a hold ({@link FleetLeaseDeps.holdMs})
   * it is taken for the hold and renewed up to this; without, taken for this at once.
   */
  readonly ttlMs: number;
  /** how long to wait for another holder's result before giving up */
  readonly waitMs: number;
  /** the result, if it is already there (another holder's, or an earlier one) */
  readonly ready: () => Promise<T | undefined>;
  /** make the result while holding the lease (or alone, when `degraded`) */
  readonly produce: (outcome: 'taken' | 'degraded') => Promise<T>;
  /** called before each pause while another instance holds the lease */
  readonly onWait?: () => void;
}

/** The result, or `undefined` when the holder's result did not appear within `waitMs`. */
export type LeaseResult<T> = { readonly value: T } | { readonly timedOut: true; readonly waitedMs: number };

const WAIT_STEP_MIN_MS = 25;
const WAIT_STEP_MAX_MS = 250;

export class FleetLease {
  private readonly instanceId = randomUUID();

  constructor(private readonly deps: FleetLeaseDeps) {}

  /** A unique owner for one holding: instance id, so a log shows who held it, and a fresh id per holding. */
  newOwner(): string {
    return `${this.instanceId}/${randomUUID()}`;
  }

  /** Try once to take `name` for `ttlMs`. Without the store, `degraded`. */
  async take(name: string, owner: string, ttlMs: number): Promise<LeaseOutcome> {
    try {
      return (await this.deps.store.acquireLease(name, owner, this.deps.now() + ttlMs)) ? 'taken' : 'held-elsewhere';
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      this.deps.onDegraded?.('PutItem', error);
      return 'degraded';
    }
  }

  /** Release if still ours. Never fails: a lease lapses on its own, and a failed release only delays the next holder. */
  async release(name: string, owner: string): Promise<void> {
    try {
      await this.deps.store.releaseLease(name, owner);
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      this.deps.onDegraded?.('DeleteItem', error);
    }
  }

  /**
   * Take the lease and produce, or wait for whoever holds it: check for the result, try the
   * lease, and if another instance holds it pause (jittered, growing steps: a holder's result
   * usually lands within one round trip) and check again, until `waitMs` has passed. The lease
   * is tried again on every step, so a holder that failed and released lets the next one in at
   * once.
   */
  async run<T>(run: LeaseRun<T>): Promise<LeaseResult<T>> {
    const started = this.deps.now();
    let waited = 0;
    let step = WAIT_STEP_MIN_MS;
    for (;;) {
      const ready = await run.ready();
      if (ready !== undefined) return { value: ready };
      const owner = this.newOwner();
      const takenAt = this.deps.now();
      const outcome = await this.take(run.name, owner, this.firstHoldMs(run.ttlMs));
      if (outcome !== 'held-elsewhere') {
        return { value: await this.holding(run.name, owner, outcome, takenAt, run.ttlMs, () => run.produce(outcome)) };
      }
      // Time is measured both ways (the clock and the sum of pauses), so that the wait ends even
      // under a clock that does not move, such as a test's.
      const spent = Math.max(this.deps.now() - started, waited);
      const left = run.waitMs - spent;
      if (left <= 0) return { timedOut: true, waitedMs: spent };
      run.onWait?.();
      const pause = Math.min(left, step / 2 + this.deps.random() * (step / 2));
      await this.deps.sleep(pause);
      waited += pause;
      step = Math.min(WAIT_STEP_MAX_MS, step * 2);
    }
  }

  /**
   * Hold the lease for `work` if it is free, else do nothing: for work that is welcome but not
   * needed now (a background refresh; someone else doing it is as good).
   * @returns `undefined` when another instance holds the lease
   */
  async ifFree<T>(name: string, ttlMs: number, work: (outcome: 'taken' | 'degraded') => Promise<T>): Promise<T | undefined> {
    const owner = this.newOwner();
    const takenAt = this.deps.now();
    const outcome = await this.take(name, owner, this.firstHoldMs(ttlMs));
    if (outcome === 'held-elsewhere') return undefined;
    return this.holding(name, owner, outcome, takenAt, ttlMs, () => work(outcome));
  }

  /** How long the first take holds: the hold, or the whole `ttlMs` without one. */
  private firstHoldMs(ttlMs: number): number {
    const holdMs = this.deps.holdMs;
    return holdMs !== undefined && holdMs < ttlMs ? holdMs : ttlMs;
  }

  /** Run `work` under the lease: renewed while it runs (when taken with a hold), released when it settles. */
  private async holding<T>(name: string, owner: string, outcome: 'taken' | 'degraded', takenAt: number, ttlMs: number, work: () => Promise<T>): Promise<T> {
    const stopRenewing = outcome === 'taken' ? this.keepAlive(name, owner, takenAt, ttlMs) : undefined;
    try {
      return await work();
    } finally {
      stopRenewing?.();
      if (outcome === 'taken') await this.release(name, owner);
    }
  }

  /**
   * Renew `name` for `owner` every `holdMs / 3` (each renewal holds it `holdMs` from then), never
   * past `ttlMs` after `takenAt`. Renewals are chained, never overlapping; the clock is read at
   * each, so a holder thawed after a freeze past its bound does not renew at all.
   * @returns stops renewing (cancels the pending timer; a renewal in flight changes nothing after)
   */
  private keepAlive(name: string, owner: string, takenAt: number, ttlMs: number): (() => void) | undefined {
    const holdMs = this.deps.holdMs;
    if (holdMs === undefined || holdMs >= ttlMs) return undefined;
    const schedule = this.deps.schedule ?? unrefSchedule;
    const boundMs = takenAt + ttlMs;
    const everyMs = Math.max(1, Math.floor(holdMs / 3));
    let stopped = false;
    let cancel: (() => void) | undefined;
    const next = (): void => {
      cancel = schedule(everyMs, () => void renew());
    };
    const renew = async (): Promise<void> => {
      cancel = undefined;
      if (stopped) return;
      const now = this.deps.now();
      const untilMs = Math.min(now + holdMs, boundMs);
      // The whole holding's bound: past it, the lease is left to lapse.
      if (untilMs <= now) return;
      try {
        if (!(await this.deps.store.renewLease(name, owner, untilMs))) {
          if (!stopped) this.deps.onLost?.(name);
          return;
        }
      } catch (error) {
        if (stopped) return;
        if (!(error instanceof StoreUnavailableError)) {
          this.deps.onLost?.(name, error);
          return;
        }
        // The lease may still be ours: try again at the next beat.
        this.deps.onDegraded?.('UpdateItem', error);
      }
      if (!stopped && untilMs < boundMs) next();
    };
    next();
    return () => {
      stopped = true;
      cancel?.();
      cancel = undefined;
    };
  }
}
