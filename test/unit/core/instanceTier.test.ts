/**
 * The instance tier (functions/core/instanceTier.ts): the per-instance maps, evicted together, and
 * single flight for loads and background refreshes. A fake clock (`{ now }` advanced by an
 * injected `sleep`) plays the passing of time.
 */
import { describe, expect, it } from 'vitest';
import { InstanceTier, type InstanceTierOptions, type RefreshOutcome } from '../../../functions/core/instanceTier.js';
import type { CachedToken } from '../../../functions/core/ports.js';

/** a realistic epoch: "never checked" (0) is then long ago, as it is in production */
const T0 = 1_700_000_000_000;

const options: InstanceTierOptions = { maxEntries: 2, revalidateMs: 60_000, usageWriteIntervalMs: 60_000, refreshRetryMs: 30_000 };

function setup(overrides: Partial<InstanceTierOptions> = {}) {
  const clock = { now: T0 };
  const sleep = async (ms: number): Promise<void> => {
    clock.now += ms;
  };
  const tier = new InstanceTier({ ...options, ...overrides }, () => clock.now);
  return { clock, sleep, tier };
}

function token(key: string, extra: Partial<CachedToken> = {}): CachedToken {
  return {
    key,
    accessToken: `at-${key}`,
    scope: 'read',
    expiresAt: T0 / 1000 + 3600,
    fetchedAt: T0,
    fingerprint: `fp-${key}`,
    client: 'c',
    audience: 'https://api',
    scopes: ['read'],
    ...extra,
  };
}

/** A promise settled from outside, to hold a load or refresh in flight. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Let pending promise callbacks run. */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('eviction', () => {
  it('drops the least recently stored token past maxEntries', () => {
    // Arrange
    const { tier } = setup();
    tier.remember(token('a'));
    tier.remember(token('b'));
    // Act
    tier.remember(token('c'));
    // Assert
    expect(tier.get('a')).toBeUndefined();
    expect(tier.get('b')?.key).toBe('b');
    expect(tier.get('c')?.key).toBe('c');
  });

  it('counts a token stored again as the most recent', () => {
    // Arrange
    const { tier } = setup();
    tier.remember(token('a'));
    tier.remember(token('b'));
    tier.remember(token('a', { accessToken: 'at-a2' }));
    // Act
    tier.remember(token('c'));
    // Assert
    expect(tier.get('a')?.accessToken).toBe('at-a2');
    expect(tier.get('b')).toBeUndefined();
  });

  it('drops the per-key state with the token: it must be revalidated and its use recorded again', async () => {
    // Arrange
    const { tier, sleep } = setup();
    const a = token('a');
    tier.remember(a);
    tier.remember(token('b'));
    expect(tier.claimUseRecord(a)).toBe(true);
    expect(tier.claimUseRecord(a)).toBe(false);
    expect(tier.needsRevalidation('a')).toBe(false);
    await sleep(1_000);
    // Act
    tier.remember(token('c'));
    // Assert
    expect(tier.get('a')).toBeUndefined();
    expect(tier.needsRevalidation('a')).toBe(true);
    expect(tier.needsRevalidation('b')).toBe(false);
    expect(tier.claimUseRecord(a)).toBe(true);
  });

  it('drops the record of a failed refresh with the token', async () => {
    // Arrange
    const { tier } = setup();
    tier.remember(token('a'));
    await tier.refreshOnce('a', false, async () => 'failed');
    tier.remember(token('b'));
    tier.remember(token('c'));
    let calls = 0;
    // Act
    const outcome = await tier.refreshOnce('a', false, async () => {
      calls += 1;
      return 'refreshed';
    });
    // Assert
    expect(calls).toBe(1);
    expect(outcome).toBe('refreshed');
  });
});

describe('needsRevalidation', () => {
  it('is false just after remember, until revalidateMs has passed', async () => {
    // Arrange
    const { tier, sleep } = setup();
    tier.remember(token('a'));
    // Act
    await sleep(59_999);
    const before = tier.needsRevalidation('a');
    await sleep(1);
    const at = tier.needsRevalidation('a');
    // Assert
    expect(before).toBe(false);
    expect(at).toBe(true);
  });

  it('starts over on markChecked, for kept keys only', async () => {
    // Arrange
    const { tier, sleep } = setup();
    tier.remember(token('a'));
    await sleep(60_000);
    // Act
    tier.markChecked('a');
    tier.markChecked('never-kept');
    // Assert
    expect(tier.needsRevalidation('a')).toBe(false);
    expect(tier.needsRevalidation('never-kept')).toBe(true);
  });
});

describe('load (single flight)', () => {
  it('runs one load for 20 concurrent callers, and keeps the token', async () => {
    // Arrange
    const { tier } = setup();
    const pending = deferred<CachedToken>();
    let calls = 0;
    const load = () => {
      calls += 1;
      return pending.promise;
    };
    // Act
    const results = Array.from({ length: 20 }, () => tier.load('a', load));
    pending.resolve(token('a'));
    const tokens = await Promise.all(results);
    // Assert
    expect(calls).toBe(1);
    expect(new Set(tokens).size).toBe(1);
    expect(tier.get('a')).toBe(tokens[0]);
  });

  it('does not cache a failure: every waiting caller gets it and the next call loads again', async () => {
    // Arrange
    const { tier } = setup();
    const failing = deferred<CachedToken>();
    let calls = 0;
    const failingLoad = () => {
      calls += 1;
      return failing.promise;
    };
    const first = [tier.load('a', failingLoad), tier.load('a', failingLoad)];
    failing.reject(new Error('idp down'));
    const settled = await Promise.allSettled(first);
    // Act
    const second = await tier.load('a', async () => {
      calls += 1;
      return token('a');
    });
    // Assert
    expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected']);
    expect(calls).toBe(2);
    expect(second.key).toBe('a');
    expect(tier.get('a')).toBe(second);
  });

  it('keeps different keys apart', async () => {
    // Arrange
    const { tier } = setup();
    let calls = 0;
    const load = (key: string) => async () => {
      calls += 1;
      return token(key);
    };
    // Act
    const [a, b] = await Promise.all([tier.load('a', load('a')), tier.load('b', load('b'))]);
    // Assert
    expect(calls).toBe(2);
    expect([a.key, b.key]).toEqual(['a', 'b']);
  });
});

describe('refreshOnce', () => {
  it('joins a running refresh of the same key', async () => {
    // Arrange
    const { tier } = setup();
    tier.remember(token('a'));
    const pending = deferred<RefreshOutcome>();
    let calls = 0;
    const refresh = () => {
      calls += 1;
      return pending.promise;
    };
    // Act
    const first = tier.refreshOnce('a', false, refresh);
    const second = tier.refreshOnce('a', true, refresh);
    pending.resolve('refreshed');
    // Assert
    expect(await Promise.all([first, second])).toEqual(['refreshed', 'refreshed']);
    expect(calls).toBe(1);
  });

  it("answers 'busy' to a refresh-ahead within refreshRetryMs of a failure, without refreshing", async () => {
    // Arrange
    const { tier, sleep } = setup();
    tier.remember(token('a'));
    await tier.refreshOnce('a', false, async () => 'failed');
    await sleep(29_999);
    let calls = 0;
    // Act
    const outcome = await tier.refreshOnce('a', false, async () => {
      calls += 1;
      return 'refreshed';
    });
    // Assert
    expect(outcome).toBe('busy');
    expect(calls).toBe(0);
  });

  it('retries within the window when retryAfterFailure is true (the schedule, ops)', async () => {
    // Arrange
    const { tier, sleep } = setup();
    tier.remember(token('a'));
    await tier.refreshOnce('a', false, async () => 'failed');
    await sleep(1);
    let calls = 0;
    // Act
    const outcome = await tier.refreshOnce('a', true, async () => {
      calls += 1;
      return 'refreshed';
    });
    // Assert
    expect(outcome).toBe('refreshed');
    expect(calls).toBe(1);
  });

  it('retries a refresh-ahead once refreshRetryMs has passed', async () => {
    // Arrange
    const { tier, sleep } = setup();
    tier.remember(token('a'));
    await tier.refreshOnce('a', false, async () => 'failed');
    await sleep(30_000);
    let calls = 0;
    // Act
    const outcome = await tier.refreshOnce('a', false, async () => {
      calls += 1;
      return 'refreshed';
    });
    // Assert
    expect(outcome).toBe('refreshed');
    expect(calls).toBe(1);
  });

  it('forgets the failure after a successful refresh', async () => {
    // Arrange
    const { tier } = setup();
    tier.remember(token('a'));
    await tier.refreshOnce('a', false, async () => 'failed');
    await tier.refreshOnce('a', true, async () => 'refreshed');
    let calls = 0;
    // Act
    const outcome = await tier.refreshOnce('a', false, async () => {
      calls += 1;
      return 'fresh';
    });
    // Assert
    expect(outcome).toBe('fresh');
    expect(calls).toBe(1);
  });

  it('records no failure for a key the instance does not keep', async () => {
    // Arrange
    const { tier } = setup();
    await tier.refreshOnce('not-kept', false, async () => 'failed');
    let calls = 0;
    // Act
    const outcome = await tier.refreshOnce('not-kept', false, async () => {
      calls += 1;
      return 'refreshed';
    });
    // Assert
    expect(outcome).toBe('refreshed');
    expect(calls).toBe(1);
  });
});

describe('claimUseRecord', () => {
  it('claims at most once per usageWriteIntervalMs', async () => {
    // Arrange
    const { tier, sleep } = setup();
    const a = token('a');
    tier.remember(a);
    // Act
    const first = tier.claimUseRecord(a);
    const again = tier.claimUseRecord(a);
    await sleep(59_999);
    const justBefore = tier.claimUseRecord(a);
    await sleep(1);
    const atInterval = tier.claimUseRecord(a);
    // Assert
    expect([first, again, justBefore, atInterval]).toEqual([true, false, false, true]);
  });

  it("counts from the store's lastUsedAt when this instance has not recorded a use", async () => {
    // Arrange
    const { tier, sleep } = setup();
    await sleep(10_000);
    const a = token('a', { lastUsedAt: T0 });
    tier.remember(a);
    // Act
    const early = tier.claimUseRecord(a);
    await sleep(50_000);
    const later = tier.claimUseRecord(a);
    // Assert
    expect(early).toBe(false);
    expect(later).toBe(true);
  });

  it('keeps nothing for a token it does not hold', () => {
    // Arrange
    const { tier } = setup();
    const stranger = token('stranger');
    // Act
    const claims = [tier.claimUseRecord(stranger), tier.claimUseRecord(stranger)];
    // Assert
    expect(claims).toEqual([true, true]);
  });
});

describe('forgetWhere', () => {
  it('drops every matching token and its state, and keeps the others', () => {
    // Arrange
    const { tier } = setup({ maxEntries: 10 });
    const a1 = token('a1', { client: 'a' });
    tier.remember(a1);
    tier.remember(token('a2', { client: 'a', audience: 'https://other' }));
    tier.remember(token('b1', { client: 'b' }));
    tier.claimUseRecord(a1);
    // Act
    tier.forgetWhere((t) => t.client === 'a');
    // Assert
    expect(tier.get('a1')).toBeUndefined();
    expect(tier.get('a2')).toBeUndefined();
    expect(tier.get('b1')?.key).toBe('b1');
    expect(tier.needsRevalidation('a1')).toBe(true);
    expect(tier.needsRevalidation('b1')).toBe(false);
    expect(tier.claimUseRecord(a1)).toBe(true);
  });
});

describe('idle', () => {
  it('waits for the refreshes running when it is called', async () => {
    // Arrange
    const { tier } = setup();
    const pending = deferred<RefreshOutcome>();
    void tier.refreshOnce('a', true, () => pending.promise);
    let idle = false;
    // Act
    const waiting = tier.idle().then(() => {
      idle = true;
    });
    await flush();
    const beforeSettled = idle;
    pending.resolve('refreshed');
    await waiting;
    // Assert
    expect(beforeSettled).toBe(false);
    expect(idle).toBe(true);
  });

  it('settles even when a refresh rejects, and counts it as failed (not retried at once)', async () => {
    // Arrange
    const { tier } = setup();
    tier.remember(token('a'));
    const pending = deferred<RefreshOutcome>();
    const running = tier.refreshOnce('a', true, () => pending.promise);
    // Act
    const waiting = tier.idle();
    pending.reject(new Error('boom'));
    // Assert
    await expect(waiting).resolves.toBeUndefined();
    await expect(running).resolves.toBe('failed');
    let calls = 0;
    expect(await tier.refreshOnce('a', false, async () => {
      calls += 1;
      return 'refreshed';
    })).toBe('busy');
    expect(calls).toBe(0);
  });

  it('resolves at once with nothing running', async () => {
    // Arrange
    const { tier } = setup();
    // Act
    const result = tier.idle();
    // Assert
    await expect(result).resolves.toBeUndefined();
  });
});
