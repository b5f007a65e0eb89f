/**
 * The KMS client, loaded on first use. The sealer needs KMS only to generate a token's data key
 * (once per fetch) or unwrap one (once per token an instance reads from the table), never on the
 * warm path, so the bundle keeps the client in a chunk of its own that a cold start does not load
 * (esbuild code splitting, scripts/build.mjs). Import this module only with `import()`.
 */
import { KMSClient, type KMSClientConfig } from '@aws-sdk/client-kms';
import { withDeadlines, type AwsClientOverrides } from './awsClients.js';

export { DecryptCommand, GenerateDataKeyCommand } from '@aws-sdk/client-kms';

/** A KMS client with the deadlines every AWS client of the vendor has (awsClients.ts). */
export function kmsClient(overrides: AwsClientOverrides = {}): KMSClient {
  const config: KMSClientConfig = withDeadlines(overrides);
  return new KMSClient(config);
}
