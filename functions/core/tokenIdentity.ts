import { createHash } from 'node:crypto';

/**
 * The cache key: a hash of what the deployment declares about a token — the tenant's issuer, the
 * secret that holds the client's credentials, the audience and the exact scope set — and nothing
 * read from the secret, so a cached token is found without reading Secrets Manager at all. Point
 * a grant at another tenant or another secret and the key changes, as it does for another Auth0
 * organization; a secret that starts holding
 * another client_id is told apart by the token's recorded `clientId` (see TokenService). Encoding
 * the parts as a JSON array keeps ("a b", "c") and ("a", "b c") apart.
 */
export function cacheKey(issuer: string, secretId: string, audience: string, scopes: readonly string[], organization?: string): string {
  // An Auth0 organization (issue 12) is a fifth part; a request without one keeps exactly the key
  // it always had, so the tokens cached before organizations existed stay valid.
  const parts: unknown[] = [issuer, secretId, audience, [...new Set(scopes)].sort()];
  if (organization !== undefined) parts.push(organization);
  const canonical = JSON.stringify(parts);
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
 * One Auth0 organization of one client: what a per-organization back-off is kept per. Auth0 counts
 * an organization's M2M quota apart from the client's (docs/auth0-wire-behaviour.md §14.9), so an
 * organization whose quota is used up pauses that organization's tokens only. Hashed like the
 * client key (no `#`, the table's separator), and told apart from it by the `o.` prefix.
 */
export function organizationKey(client: string, organization: string): string {
  return `o.${createHash('sha256').update(JSON.stringify([client, organization])).digest('base64url').slice(0, 22)}`;
}

/**
 * The name of one of the quota guard's counters: the client's key and what is counted (`miss`,
 * or `caller` and the caller's principal), hashed so that no principal ARN is a table key and
 * no `#` (the table's separator) can appear.
 */
export function counterKey(client: string, ...parts: string[]): string {
  return `${client}.${createHash('sha256').update(JSON.stringify(parts)).digest('base64url').slice(0, 16)}`;
}
