/**
 * The Auth0 adapters, loaded on first use: for `vend`, whose warm path (a memory or DynamoDB hit)
 * neither calls Auth0 nor reads a secret. A cold start that serves a cached token then never loads
 * the token endpoint, jose, or the Secrets Manager client (esbuild code splitting; BENCHMARKS.md,
 * table c); the first miss pays the load once, a few milliseconds. A failed load is not kept: the
 * next call tries again.
 */
import type { ClientCredentials, CredentialSource, TokenEndpoint } from '../core/ports.js';
import { onFirstUse } from '../core/onFirstUse.js';
import type { IdpAdapters } from './tokenService.js';

export const lazyAdapters: IdpAdapters = {
  idp: (options) => {
    const endpoint = onFirstUse<TokenEndpoint>(async () => new (await import('../adapters/auth0TokenEndpoint.js')).Auth0TokenEndpoint(options));
    return { fetchToken: async (request) => (await endpoint.get()).fetchToken(request) };
  },
  credentials: ({ client, maxAgeSeconds, now }) => {
    const source = onFirstUse<CredentialSource>(async () => {
      const [{ SecretsManagerCredentials }, { secretsManagerClient }] = await Promise.all([
        import('../adapters/secretsManagerCredentials.js'),
        import('../adapters/secretsManagerModule.js'),
      ]);
      return new SecretsManagerCredentials({ client: client ?? secretsManagerClient(), maxAgeSeconds, now });
    });
    return {
      get: async (secretId) => (await source.get()).get(secretId),
      alternatives: async (secretId, rejected) => (await source.get()).alternatives(secretId, rejected),
      // Both are about credentials already read, so the source is loaded by then; before it
      // is, nothing has been read and there is nothing to prefer or know.
      prefer: (secretId: string, credentials: ClientCredentials) => source.loaded()?.prefer(secretId, credentials),
      knownClientId: (secretId) => source.loaded()?.knownClientId(secretId),
    };
  },
};
