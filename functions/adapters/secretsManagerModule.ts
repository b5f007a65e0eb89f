/**
 * The Secrets Manager client, in a module of its own so that `vend` can load it on first use: its
 * warm path never reads a secret (the cache key needs none), so a cold start that serves a cached
 * token never loads the client (esbuild code splitting, scripts/build.mjs). `refresh` and `rotate`
 * import it as usual.
 */
import { SecretsManagerClient, type SecretsManagerClientConfig } from '@aws-sdk/client-secrets-manager';
import { withDeadlines, type AwsClientOverrides } from './awsClients.js';

/** A Secrets Manager client with the deadlines every AWS client of the vendor has (awsClients.ts). */
export function secretsManagerClient(overrides: AwsClientOverrides = {}): SecretsManagerClient {
  const config: SecretsManagerClientConfig = withDeadlines(overrides);
  return new SecretsManagerClient(config);
}
