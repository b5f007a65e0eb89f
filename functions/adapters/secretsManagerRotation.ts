/**
 * Secrets Manager as the rotation function uses it: versions, stages, and nothing cached. Calls
 * are made once each: the client bounds their time and retries (functions/adapters/awsClients.ts).
 */
import {
  DescribeSecretCommand,
  PutSecretValueCommand,
  ResourceExistsException,
  ResourceNotFoundException,
  UpdateSecretVersionStageCommand,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import type { RotationSecretStore, SecretDescription } from '../core/rotation.js';
import { readSecretValue, type SecretVersion } from './secretsManagerCredentials.js';

export class SecretsManagerRotationStore implements RotationSecretStore {
  constructor(private readonly client: SecretsManagerClient) {}

  async describe(secretId: string): Promise<SecretDescription> {
    const out = await this.client.send(new DescribeSecretCommand({ SecretId: secretId }));
    return {
      arn: out.ARN ?? secretId,
      name: out.Name ?? secretId,
      rotationEnabled: out.RotationEnabled ?? false,
      versions: out.VersionIdsToStages ?? {},
    };
  }

  async read(secretId: string, version: SecretVersion): Promise<string | undefined> {
    try {
      // The one way this code reads a secret (functions/adapters/secretsManagerCredentials.ts).
      return await readSecretValue(this.client, secretId, version);
    } catch (error) {
      // Secrets Manager creates the AWSPENDING version's metadata before createSecret; until
      // that step writes a value, reading it is "not found".
      if (error instanceof ResourceNotFoundException) return undefined;
      throw error;
    }
  }

  async putPending(secretId: string, token: string, value: string): Promise<void> {
    try {
      await this.client.send(new PutSecretValueCommand({ SecretId: secretId, ClientRequestToken: token, SecretString: value, VersionStages: ['AWSPENDING'] }));
    } catch (error) {
      // Same token, already written: the step ran before.
      if (error instanceof ResourceExistsException) return;
      throw error;
    }
  }

  async moveCurrent(secretId: string, toVersionId: string, fromVersionId: string | undefined): Promise<void> {
    await this.client.send(
      new UpdateSecretVersionStageCommand({
        SecretId: secretId,
        VersionStage: 'AWSCURRENT',
        MoveToVersionId: toVersionId,
        ...(fromVersionId !== undefined && fromVersionId !== toVersionId ? { RemoveFromVersionId: fromVersionId } : {}),
      }),
    );
  }
}
