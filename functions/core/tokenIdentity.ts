import { createHash } from 'node:crypto';

/**
 * The cache key: a hash of what the deployment declares about a token — the tenant's issuer, the
 * secret that holds the client's credentials, the audience and the exact scope set — and nothing
 * read from the secret, so a cached token is found without reading Secrets Manager at all. Point
 * a grant at another tenant or another secret and the key changes; a secret that starts holding
 * another client_id is told apart by the token's recorded `clientId` (see TokenService). Encoding
 * the parts as a JSON array keeps ("a b", "c") and ("a", "b c") apart.
 */
export function cacheKey(issuer: string, secretId: string, audience: string, scopes: readonly string[]): string {
  const canonical = JSON.stringify([issuer, secretId, audience, [...new Set(scopes)].sort()]);
  return createHash('sha256').update(canonical).digest('base64url');
}

/**
 * What logs and ops tools show for a token: 12 characters of its SHA-256. Enough to correlate
 * log lines with a token a caller holds, useless for presenting it anywhere.
 */
export function fingerprint(accessToken: string): string {
  return createHash('sha256').update(accessToken).digest('base64url').slice(0, 12);
}

/** One Auth0 client (issuer, client id): what back-offs and the quota guard are kept per. */
export function clientKey(issuer: string, clientId: string): string {
  return createHash('sha256').update(JSON.stringify([issuer, clientId])).digest('base64url').slice(0, 22);
}

/**
 * The name of one of the quota guard's counters: the client's key and what is counted (`miss`,
 * or `caller` and the caller's principal), hashed so that no principal ARN is a table key and
 * no `#` (the table's separator) can appear.
 */
export function counterKey(client: string, ...parts: string[]): string {
  return `${client}.${createHash('sha256').update(JSON.stringify(parts)).digest('base64url').slice(0, 16)}`;
}
