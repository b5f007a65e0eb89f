/**
 * The fleet lease: one mechanism for "exactly one instance of the fleet does this; the others
 * wait for its result". The token tier uses it so that one instance fetches a token from the IdP;
 * the sealer uses it so that one instance asks KMS for the next data key. The lease itself is an
 * item with an owner and an expiry, taken by a conditional write only when free or lapsed
 * (Powertools idempotency's `attribute_not_exists(#id) OR #expiry < :now`), so a holder that dies
 * delays the others by at most one lease.
 */
import { randomUUID } from 'node:crypto';
import { StoreUnavailableError } from './errors.js';

/** Where leases are kept (the token table). Names are opaque to the store. */
export interface LeaseStore {
  /** true when `owner` now holds lease `name` until `untilMs` (epoch ms): it was free or lapsed */
  acquireLease(name: string, owner: string, untilMs: number): Promise<boolean>;
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

export interface FleetLeaseDeps {
  readonly store: LeaseStore;
  /** epoch ms */
  readonly now: () => number;
  readonly sleep: (ms: number) => Promise<void>;
  /** [0, 1) */
  readonly random: () => number;
  /** the store failed while taking or releasing a lease, and the caller carried on without it */
  readonly onDegraded?: (operation: string, error: StoreUnavailableError) => void;
}

/** One use of the lease: what it protects and for how long. */
export interface LeaseRun<T> {
  /** the lease's name, e.g. the token's key */
  readonly name: string;
  /** how long the lease is held before others may take it over: must outlast `produce` */
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
      const outcome = await this.take(run.name, owner, run.ttlMs);
      if (outcome !== 'held-elsewhere') {
        try {
          return { value: await run.produce(outcome) };
        } finally {
          if (outcome === 'taken') await this.release(run.name, owner);
        }
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
    const outcome = await this.take(name, owner, ttlMs);
    if (outcome === 'held-elsewhere') return undefined;
    try {
      return await work(outcome);
    } finally {
      if (outcome === 'taken') await this.release(name, owner);
    }
  }
}
