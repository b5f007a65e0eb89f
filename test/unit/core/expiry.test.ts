/**
 * The expiry policy (functions/core/expiry.ts): pure functions of a token and `now`. A fake clock
 * (`{ now }` advanced by an injected `sleep`) plays the time that passes between a fetch and a serve.
 */
import { describe, expect, it } from 'vitest';
import { isDue, isFreshFor, isUsable, margin, refreshAt, serve, type ExpiryPolicy } from '../../../functions/core/expiry.js';
import type { IssuedToken } from '../../../functions/core/ports.js';

/** epoch ms on a whole second, so that every boundary below is an exact number */
const T0 = 1_700_000_000_000;

function fakeClock(start = T0) {
  const clock = { now: start };
  const sleep = async (ms: number): Promise<void> => {
    clock.now += ms;
  };
  return { clock, sleep };
}

/** A token fetched at `fetchedAt` (epoch ms) that lives `lifetimeSeconds`. */
function issued(lifetimeSeconds: number, fetchedAt = T0): IssuedToken & { scope: string } {
  return { accessToken: 'at-1', scope: 'read write', fetchedAt, expiresAt: fetchedAt / 1000 + lifetimeSeconds };
}

const policy: ExpiryPolicy = { earlyExpirySeconds: 300, refreshAheadRatio: 0.25 };

describe('margin', () => {
  it('is the configured early expiry when the token lives long enough', () => {
    // Arrange
    const token = issued(3600);
    // Act
    const seconds = margin(policy, token);
    // Assert
    expect(seconds).toBe(300);
  });

  it('is capped at half the lifetime of a short-lived token', () => {
    // Arrange
    const token = issued(60);
    // Act
    const seconds = margin(policy, token);
    // Assert
    expect(seconds).toBe(30);
  });

  it('is the configured value when it is exactly half the lifetime', () => {
    // Arrange
    const token = issued(600);
    // Act
    const seconds = margin(policy, token);
    // Assert
    expect(seconds).toBe(300);
  });

  it('counts the lifetime from the moment the response arrived, not from a whole second', () => {
    // Arrange: fetched half a second past T0, living 100 s
    const token = issued(100, T0 + 500);
    // Act
    const seconds = margin(policy, token);
    // Assert
    expect(seconds).toBe(50);
  });
});

describe('isUsable', () => {
  it('is usable one ms before expiresAt - margin', () => {
    // Arrange
    const token = issued(3600);
    const boundaryMs = (token.expiresAt - 300) * 1000;
    // Act
    const usable = isUsable(policy, token, boundaryMs - 1);
    // Assert
    expect(usable).toBe(true);
  });

  it('is not usable exactly at expiresAt - margin (strictly before)', () => {
    // Arrange
    const token = issued(3600);
    const boundaryMs = (token.expiresAt - 300) * 1000;
    // Act
    const usable = isUsable(policy, token, boundaryMs);
    // Assert
    expect(usable).toBe(false);
  });

  it('applies the capped margin to a short-lived token: usable up to half its lifetime', async () => {
    // Arrange
    const token = issued(60);
    const { clock, sleep } = fakeClock();
    // Act
    await sleep(29_999);
    const before = isUsable(policy, token, clock.now);
    await sleep(1);
    const at = isUsable(policy, token, clock.now);
    // Assert
    expect(before).toBe(true);
    expect(at).toBe(false);
  });

  it('is usable right after the fetch and not after expiry', () => {
    // Arrange
    const token = issued(3600);
    // Act
    const fresh = isUsable(policy, token, T0);
    const expired = isUsable(policy, token, token.expiresAt * 1000 + 1);
    // Assert
    expect(fresh).toBe(true);
    expect(expired).toBe(false);
  });
});

describe('refreshAt', () => {
  it('is by ratio when that is earlier than the margin', () => {
    // Arrange: a quarter of 3600 s is 900 s left, earlier than the 300 s margin
    const token = issued(3600);
    // Act
    const at = refreshAt({ earlyExpirySeconds: 300, refreshAheadRatio: 0.25 }, token);
    // Assert
    expect(at).toBe((token.expiresAt - 900) * 1000);
  });

  it('is by margin when the ratio would be later than the margin', () => {
    // Arrange: 1/16 of 3600 s is 225 s left, later than the 300 s margin
    const token = issued(3600);
    // Act
    const at = refreshAt({ earlyExpirySeconds: 300, refreshAheadRatio: 0.0625 }, token);
    // Assert
    expect(at).toBe((token.expiresAt - 300) * 1000);
  });

  it('is by the capped margin for a short-lived token when the ratio is smaller', () => {
    // Arrange: 60 s token, margin capped at 30 s; a quarter is 15 s left (later)
    const token = issued(60);
    // Act
    const at = refreshAt(policy, token);
    // Assert
    expect(at).toBe((token.expiresAt - 30) * 1000);
  });

  it('is never later than the point where the token stops being usable', () => {
    // Arrange
    const token = issued(3600);
    const noRatio: ExpiryPolicy = { earlyExpirySeconds: 300, refreshAheadRatio: 0 };
    // Act
    const at = refreshAt(noRatio, token);
    // Assert
    expect(at).toBe((token.expiresAt - 300) * 1000);
    expect(isUsable(noRatio, token, at - 1)).toBe(true);
    expect(isUsable(noRatio, token, at)).toBe(false);
  });
});

describe('isDue', () => {
  it('is due exactly at the refresh point', () => {
    // Arrange
    const token = issued(3600);
    const at = refreshAt(policy, token);
    // Act
    const due = isDue(policy, token, at);
    // Assert
    expect(due).toBe(true);
  });

  it('is not due one ms before the refresh point', () => {
    // Arrange
    const token = issued(3600);
    const at = refreshAt(policy, token);
    // Act
    const due = isDue(policy, token, at - 1);
    // Assert
    expect(due).toBe(false);
  });

  it('becomes due as the fake clock reaches the refresh point, while still usable', async () => {
    // Arrange
    const token = issued(3600);
    const { clock, sleep } = fakeClock();
    // Act: 2700 s pass (3600 - 900 by ratio)
    await sleep(2_700_000 - 1);
    const justBefore = isDue(policy, token, clock.now);
    await sleep(1);
    const atPoint = isDue(policy, token, clock.now);
    // Assert
    expect(justBefore).toBe(false);
    expect(atPoint).toBe(true);
    expect(isUsable(policy, token, clock.now)).toBe(true);
  });
});

describe('isFreshFor', () => {
  const lookaheadMs = 600_000;

  it('is fresh when the refresh point lies beyond now + lookahead', () => {
    // Arrange
    const token = issued(3600);
    const at = refreshAt(policy, token);
    // Act
    const fresh = isFreshFor(policy, token, at - lookaheadMs - 1, lookaheadMs);
    // Assert
    expect(fresh).toBe(true);
  });

  it('is not fresh when the refresh point is exactly now + lookahead', () => {
    // Arrange
    const token = issued(3600);
    const at = refreshAt(policy, token);
    // Act
    const fresh = isFreshFor(policy, token, at - lookaheadMs, lookaheadMs);
    // Assert
    expect(fresh).toBe(false);
  });

  it('with no lookahead is the opposite of isDue for a usable token', () => {
    // Arrange
    const token = issued(3600);
    const at = refreshAt(policy, token);
    // Act
    const before = isFreshFor(policy, token, at - 1, 0);
    const atPoint = isFreshFor(policy, token, at, 0);
    // Assert
    expect(before).toBe(!isDue(policy, token, at - 1));
    expect(atPoint).toBe(!isDue(policy, token, at));
    expect([before, atPoint]).toEqual([true, false]);
  });

  it('is not fresh once the token is no longer usable, whatever the lookahead', () => {
    // Arrange
    const token = issued(3600);
    const pastMargin = (token.expiresAt - 300) * 1000;
    // Act
    const fresh = isFreshFor(policy, token, pastMargin, 0);
    // Assert
    expect(fresh).toBe(false);
  });
});

describe('serve', () => {
  it('computes expires_in from now, not the original lifetime', async () => {
    // Arrange
    const token = issued(3600);
    const { clock, sleep } = fakeClock();
    // Act: 1000 s after the fetch
    await sleep(1_000_000);
    const vended = serve(token, clock.now);
    // Assert
    expect(vended).toEqual({ access_token: 'at-1', token_type: 'Bearer', expires_in: 2600, scope: 'read write' });
  });

  it('floors to whole seconds', async () => {
    // Arrange
    const token = issued(3600);
    const { clock, sleep } = fakeClock();
    // Act: 1000.999 s after the fetch
    await sleep(1_000_999);
    const vended = serve(token, clock.now);
    // Assert
    expect(vended.expires_in).toBe(2599);
    expect(Number.isInteger(vended.expires_in)).toBe(true);
  });

  it('never repeats the announced lifetime once any time has passed', () => {
    // Arrange
    const token = issued(3600);
    // Act
    const atFetch = serve(token, T0);
    const oneMsLater = serve(token, T0 + 1);
    // Assert
    expect(atFetch.expires_in).toBe(3600);
    expect(oneMsLater.expires_in).toBe(3599);
  });

  it('serves only the RFC 6749 fields, nothing else a cached token carries', () => {
    // Arrange
    const cached = { ...issued(3600), key: 'k', fingerprint: 'fp', client: 'c', audience: 'https://api', scopes: ['read', 'write'] };
    // Act
    const vended = serve(cached, T0);
    // Assert
    expect(Object.keys(vended).sort()).toEqual(['access_token', 'expires_in', 'scope', 'token_type']);
  });
});
