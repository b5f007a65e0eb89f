/**
 * The JWT's own expiry (functions/core/expiry.ts `isServable`, `jwtExpiry`, `serve`): a token of
 * a `jwt` client is never served past its `exp` minus the margin, whatever its record says; the
 * claim is decoded once per token object, so the warm path decodes nothing.
 */
import { describe, expect, it } from 'vitest';
import { isServable, isUsable, jwtExpiry, margin, serve, type ExpiryPolicy } from '../../../functions/core/expiry.js';
import type { IssuedToken } from '../../../functions/core/ports.js';

/** epoch ms on a whole second, so that every boundary below is an exact number */
const T0 = 1_700_000_000_000;
const policy: ExpiryPolicy = { earlyExpirySeconds: 300, refreshAheadRatio: 0.25 };

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
/** A JWS compact serialization with these claims (the signature is not checked here: it was at fetch). */
const jwt = (claims: Record<string, unknown>) => `${b64({ alg: 'RS256', typ: 'JWT' })}.${b64(claims)}.c2lnbmF0dXJl`;

/** A token whose record says it lives `recordSeconds` from T0, and whose JWT says `exp`. */
function token(recordSeconds: number, accessToken: string): IssuedToken & { scope: string } {
  return { accessToken, scope: 'read', fetchedAt: T0, expiresAt: T0 / 1000 + recordSeconds };
}

describe('isServable', () => {
  it('a record that outlives its JWT: served until exp minus the margin, never after', () => {
    // Arrange: the record says a day, the JWT an hour
    const t = token(86_400, jwt({ exp: T0 / 1000 + 3600 }));
    const boundaryMs = (T0 / 1000 + 3600 - margin(policy, t)) * 1000;
    // Act / Assert
    expect(isUsable(policy, t, boundaryMs)).toBe(true); // the record alone would serve it
    expect(isServable(policy, t, boundaryMs - 1, 'jwt')).toBe(true);
    expect(isServable(policy, t, boundaryMs, 'jwt')).toBe(false);
    expect(isServable(policy, t, (T0 / 1000 + 3600) * 1000 + 1, 'jwt')).toBe(false);
  });

  it('a JWT already past its exp is never served, however long the record says it lives', () => {
    const t = token(86_400, jwt({ exp: T0 / 1000 - 1 }));
    expect(isServable(policy, t, T0, 'jwt')).toBe(false);
  });

  it('the record still rules when it ends first', () => {
    const t = token(600, jwt({ exp: T0 / 1000 + 86_400 }));
    const boundaryMs = (T0 / 1000 + 600 - margin(policy, t)) * 1000;
    expect(isServable(policy, t, boundaryMs - 1, 'jwt')).toBe(true);
    expect(isServable(policy, t, boundaryMs, 'jwt')).toBe(false);
  });

  it('an opaque client\'s token is held to its record only, even if it looks like a JWT', () => {
    const t = token(86_400, jwt({ exp: T0 / 1000 - 1 }));
    expect(isServable(policy, t, T0, 'opaque')).toBe(true);
  });

  it('a token that is no JWT with a numeric exp is held to its record (it was verified as a JWT before it was cached)', () => {
    for (const accessToken of ['opaque-token', jwt({ sub: 'x' }), jwt({ exp: 'tomorrow' }), 'a.!!!.c', 'a.b', `${jwt({ exp: 1 })}.extra`]) {
      const t = token(3600, accessToken);
      expect(jwtExpiry(t)).toBeUndefined();
      expect(isServable(policy, t, T0, 'jwt')).toBe(true);
      expect(isServable(policy, t, (T0 / 1000 + 3600) * 1000, 'jwt')).toBe(false);
    }
  });
});

describe('jwtExpiry', () => {
  it('decodes exp once per token object, however often the token is served', () => {
    // Arrange: count reads of the token string
    let reads = 0;
    const accessToken = jwt({ exp: T0 / 1000 + 3600 });
    const t = { scope: 'read', fetchedAt: T0, expiresAt: T0 / 1000 + 86_400, get accessToken() { reads += 1; return accessToken; } };
    // Act
    for (let i = 0; i < 100; i++) isServable(policy, t, T0 + i, 'jwt');
    // Assert
    expect(jwtExpiry(t)).toBe(T0 / 1000 + 3600);
    expect(reads).toBe(1);
    // another object of the same token is decoded on its own
    expect(jwtExpiry({ ...token(1, accessToken) })).toBe(T0 / 1000 + 3600);
  });
});

describe('serve', () => {
  it('expires_in never runs past the JWT\'s exp, whatever the record says', () => {
    const t = token(86_400, jwt({ exp: T0 / 1000 + 3600 }));
    expect(serve(t, T0 + 500).expires_in).toBe(3599);
  });

  it('expires_in follows the record when it ends first, or when the token is no JWT', () => {
    expect(serve(token(600, jwt({ exp: T0 / 1000 + 3600 })), T0).expires_in).toBe(600);
    expect(serve(token(600, 'opaque-token'), T0).expires_in).toBe(600);
  });
});
