/**
 * The expiry policy: pure functions of a token and `now`, nothing else. Semantics follow
 * golang.org/x/oauth2's `Token.Valid` with its `expiryDelta` (token.go): a token is used until a
 * margin before its expiry, and the expiry is counted from the moment the IdP's response arrived
 * (openid-client's `expiresIn()`), never from the lifetime the IdP first announced. On top of
 * that, a refresh point: past it, the token is still served while a replacement is fetched.
 */
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

/** What is served: whole seconds left at `nowMs`, never the lifetime the IdP first announced. */
export function serve(token: IssuedToken & { readonly scope: string }, nowMs: number): VendedToken {
  return {
    access_token: token.accessToken,
    token_type: 'Bearer',
    expires_in: Math.floor(token.expiresAt - nowMs / 1000),
    scope: token.scope,
  };
}
