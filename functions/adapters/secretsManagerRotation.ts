/** Secrets Manager as the rotation function uses it: versions, stages, and nothing cached. */
import {
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  ResourceExistsException,
  ResourceNotFoundException,
  UpdateSecretVersionStageCommand,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import type { RotationSecretStore, SecretDescription } from '../core/rotation.js';

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

  async read(secretId: string, version: { versionId: string } | { stage: string }): Promise<string | undefined> {
    try {
      const out = await this.client.send(
        new GetSecretValueCommand({ SecretId: secretId, ...('versionId' in version ? { VersionId: version.versionId } : { VersionStage: version.stage }) }),
      );
      return out.SecretString ?? (out.SecretBinary ? Buffer.from(out.SecretBinary).toString('utf8') : undefined);
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
