/**
 * The usual alternatives, written here so the benchmark compares like with like (same IdP, same
 * requests): what services do today when each holds the client secret.
 */

export interface TokenSource {
  getToken(): Promise<string>;
}

export interface Auth0Client {
  readonly tokenUrl: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly audience: string;
  readonly scope: string;
}

async function requestToken(client: Auth0Client): Promise<{ access_token: string; expires_in: number }> {
  const res = await fetch(client.tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      grant_type: 'client_credentials',
      client_id: client.clientId,
      client_secret: client.clientSecret,
      audience: client.audience,
      scope: client.scope,
    }),
    signal: AbortSignal.timeout(10_000),
  });
  if (!res.ok) throw new Error(`token endpoint answered ${res.status}`);
  return (await res.json()) as { access_token: string; expires_in: number };
}

/** No cache: a token per request. */
export class NoCache implements TokenSource {
  constructor(private readonly client: Auth0Client) {}
  async getToken(): Promise<string> {
    return (await requestToken(this.client)).access_token;
  }
}

/**
 * A per-instance in-memory cache, as the Auth0 SDK's TokenProvider does it (node-auth0
 * `management/token-provider`): one token per process, reused until 10 s before expiry, one
 * request in flight at a time. Each process (each Lambda instance) fetches its own.
 */
export class PerInstanceCache implements TokenSource {
  private static readonly LEEWAY_MS = 10_000;
  private accessToken = '';
  private expiresAt = 0;
  private pending: Promise<string> | undefined;

  constructor(
    private readonly client: Auth0Client,
    private readonly now: () => number,
  ) {}

  getToken(): Promise<string> {
    if (this.accessToken !== '' && this.now() < this.expiresAt - PerInstanceCache.LEEWAY_MS) return Promise.resolve(this.accessToken);
    this.pending ??= requestToken(this.client)
      .then((t) => {
        this.accessToken = t.access_token;
        this.expiresAt = this.now() + t.expires_in * 1000;
        return t.access_token;
      })
      .finally(() => {
        this.pending = undefined;
      });
    return this.pending;
  }
}
