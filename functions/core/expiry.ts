/**
 * The expiry policy: pure functions of a token and `now`, nothing else. Semantics follow
 * golang.org/x/oauth2's `Token.Valid` with its `expiryDelta` (token.go): a token is used until a
 * margin before its expiry, and the expiry is counted from the moment the IdP's response arrived
 * (openid-client's `expiresIn()`), never from the lifetime the IdP first announced. On top of
 * that, a refresh point: past it, the token is still served while a replacement is fetched.
 *
 * A JWT also carries its own expiry (RFC 7519 §4.1.4 `exp`): for a client whose tokens are JWTs,
 * {@link isServable} holds the token to it too, on every serve, whatever the cached record says.
 */
import type { TokenFormat } from './grants.js';
import type { IssuedToken } from './ports.js';

export interface ExpiryPolicy {
  /**
   * A token is not served once fewer than this many seconds are left (capped at half the
   * token's lifetime, so a short-lived token is still cacheable).
   */
  readonly earlyExpirySeconds: number;
  /** A token is due for refresh once this fraction of its lifetime is left, and in any case by the margin. */
  readonly refreshAheadRatio: number;
}

/** What a caller receives (RFC 6749 §5.1), with `expires_in` recomputed at serve time. */
export interface VendedToken {
  readonly access_token: string;
  readonly token_type: 'Bearer';
  readonly expires_in: number;
  readonly scope: string;
}

/** The token's lifetime in seconds, as the IdP issued it. */
function lifetime(token: IssuedToken): number {
  return token.expiresAt - token.fetchedAt / 1000;
}

/** The early-expiry margin in seconds: at most half the lifetime. */
export function margin(policy: ExpiryPolicy, token: IssuedToken): number {
  return Math.min(policy.earlyExpirySeconds, lifetime(token) / 2);
}

/** Usable at `nowMs` while more than the margin is left. */
export function isUsable(policy: ExpiryPolicy, token: IssuedToken, nowMs: number): boolean {
  return nowMs / 1000 < token.expiresAt - margin(policy, token);
}

/** epoch ms at which a token should be replaced: a share of its lifetime left, and before the margin. */
export function refreshAt(policy: ExpiryPolicy, token: IssuedToken): number {
  const byRatio = token.expiresAt - lifetime(token) * policy.refreshAheadRatio;
  return Math.min(byRatio, token.expiresAt - margin(policy, token)) * 1000;
}

/** Past its refresh point at `nowMs`. */
export function isDue(policy: ExpiryPolicy, token: IssuedToken, nowMs: number): boolean {
  return nowMs >= refreshAt(policy, token);
}

/** Usable, and not due within `lookaheadMs`: nothing to do for the scheduled refresher. */
export function isFreshFor(policy: ExpiryPolicy, token: IssuedToken, nowMs: number, lookaheadMs: number): boolean {
  return isUsable(policy, token, nowMs) && refreshAt(policy, token) > nowMs + lookaheadMs;
}

/**
 * Usable by the policy and, for a client whose tokens are JWTs, by the token's own `exp` with the
 * same margin: the check every serve makes, from memory as from the table. The record's
 * `expiresAt` was capped by `exp` when the token was verified (auth0TokenEndpoint.ts); this holds
 * the token to its `exp` even if a record were to say otherwise. A token that does not decode as
 * a JWT with a numeric `exp` is held to the record alone (it was verified as a JWT before it was
 * ever cached, and the record is sealed with it: adapters/dynamoTokenStore.ts).
 */
export function isServable(policy: ExpiryPolicy, token: IssuedToken, nowMs: number, format: TokenFormat): boolean {
  if (!isUsable(policy, token, nowMs)) return false;
  if (format !== 'jwt') return true;
  const exp = jwtExpiry(token);
  return exp === undefined || nowMs / 1000 < exp - margin(policy, token);
}

/** What is served: whole seconds left at `nowMs`, never the lifetime the IdP first announced, nor past a JWT's `exp`. */
export function serve(token: IssuedToken & { readonly scope: string }, nowMs: number): VendedToken {
  const expiresAt = Math.min(token.expiresAt, jwtExpiry(token) ?? Number.POSITIVE_INFINITY);
  return {
    access_token: token.accessToken,
    token_type: 'Bearer',
    expires_in: Math.floor(expiresAt - nowMs / 1000),
    scope: token.scope,
  };
}

/**
 * `exp` of each token object, decoded once: the instance tier keeps the same object across
 * serves, so the warm path decodes nothing. Weak, so an evicted token takes its entry with it.
 */
const decodedExpiry = new WeakMap<IssuedToken, number | null>();

/**
 * The `exp` claim (epoch s) of a JWT access token, or `undefined` when the token is not a JWS
 * compact serialization (RFC 7515 §7.1) whose payload has a numeric `exp`. Decoded, not verified:
 * the token was verified against the tenant's JWKS before it was cached.
 */
export function jwtExpiry(token: IssuedToken): number | undefined {
  let exp = decodedExpiry.get(token);
  if (exp === undefined) {
    exp = decodeExp(token.accessToken);
    decodedExpiry.set(token, exp);
  }
  return exp ?? undefined;
}

function decodeExp(accessToken: string): number | null {
  const parts = accessToken.split('.');
  const payload = parts[1];
  if (parts.length !== 3 || payload === undefined || !/^[A-Za-z0-9_-]+$/.test(payload)) return null;
  try {
    const claims: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    const exp = typeof claims === 'object' && claims !== null ? (claims as { exp?: unknown }).exp : undefined;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp : null;
  } catch {
    return null;
  }
}
