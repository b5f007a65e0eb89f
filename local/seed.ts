/**
 * Seeding the local AWS stand-ins (moto_server): the token table exactly as infra/ declares it,
 * client secrets in the shape the vendor reads, and the KMS key that seals tokens at rest. Used
 * by the local stack and the tests.
 */
import {
  CreateTableCommand,
  DynamoDBClient,
  UpdateTimeToLiveCommand,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';
import { CreateAliasCommand, CreateKeyCommand, DescribeKeyCommand, KMSClient, NotFoundException } from '@aws-sdk/client-kms';
import {
  CreateSecretCommand,
  PutSecretValueCommand,
  ResourceExistsException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { PARTITION_KEY, TTL_ATTRIBUTE } from '../functions/adapters/tokenTable.js';

/** Fixed fake credentials for the emulator; moto accepts any. Never real ones. */
export const LOCAL_AWS_CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' } as const;
export const LOCAL_REGION = 'eu-west-1';

export function localDynamoDb(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_AWS_CREDENTIALS });
}

export function localSecretsManager(endpoint: string): SecretsManagerClient {
  return new SecretsManagerClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_AWS_CREDENTIALS });
}

/** KMS on the emulator: wraps the data keys that seal tokens. */
export function localKms(endpoint: string): KMSClient {
  return new KMSClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_AWS_CREDENTIALS });
}

/** The sealing key's alias on the local stand-ins. */
export const LOCAL_SEAL_KEY_ALIAS = 'alias/token-vendor-local';

/**
 * The symmetric KMS key that wraps the sealing data keys, under `alias`; returns its key id.
 * Idempotent: an existing alias is returned as is.
 */
export async function createSealKey(kms: KMSClient, alias: string): Promise<string> {
  try {
    const existing = await kms.send(new DescribeKeyCommand({ KeyId: alias }));
    if (existing.KeyMetadata?.KeyId !== undefined) return existing.KeyMetadata.KeyId;
  } catch (error) {
    if (!(error instanceof NotFoundException)) throw error;
  }
  const created = await kms.send(
    new CreateKeyCommand({ KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT', Description: 'token-vendor: seals tokens at rest' }),
  );
  const keyId = created.KeyMetadata?.KeyId;
  if (keyId === undefined) throw new Error('KMS CreateKey returned no key id');
  await kms.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: keyId }));
  return keyId;
}

/** The token table: string partition key, TTL on the attribute the store writes. */
export async function createTokenTable(client: DynamoDBClient, tableName: string): Promise<void> {
  await client.send(
    new CreateTableCommand({
      TableName: tableName,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [{ AttributeName: PARTITION_KEY, AttributeType: 'S' }],
      KeySchema: [{ AttributeName: PARTITION_KEY, KeyType: 'HASH' }],
    }),
  );
  await waitUntilTableExists({ client, maxWaitTime: 30 }, { TableName: tableName });
  await client.send(
    new UpdateTimeToLiveCommand({
      TableName: tableName,
      TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true },
    }),
  );
}

/** What Secrets Manager holds for a client, in the shapes the vendor reads (functions/adapters/secretsManagerCredentials.ts). */
export type ClientSecretValue = { client_id: string; client_secret: string } | { client_id: string; private_key: string; key_id?: string };

/**
 * Create (or give a new version to) a client secret; resolves to the secret's ARN, which the
 * emulator chose (a grants file may name a secret by ARN, and the vendor then asks for that one).
 */
export async function putClientSecret(client: SecretsManagerClient, secretId: string, value: ClientSecretValue): Promise<string> {
  const SecretString = JSON.stringify(value);
  try {
    const created = await client.send(new CreateSecretCommand({ Name: secretId, SecretString }));
    return created.ARN ?? secretId;
  } catch (error) {
    if (!(error instanceof ResourceExistsException)) throw error;
    const updated = await client.send(new PutSecretValueCommand({ SecretId: secretId, SecretString }));
    return updated.ARN ?? secretId;
  }
}

/**
 * The environment that points a vendor function at the local stand-ins: the SDK reaches
 * moto_server through AWS_ENDPOINT_URL with the emulator's fake credentials.
 */
export function localFunctionEnv(opts: { motoEndpoint: string; grantsFile: string; sealKeyId: string }): Record<string, string> {
  return {
    TOKEN_SEAL_KEY_ID: opts.sealKeyId,
    GRANTS_FILE: opts.grantsFile,
    AWS_ENDPOINT_URL: opts.motoEndpoint,
    AWS_REGION: LOCAL_REGION,
    AWS_ACCESS_KEY_ID: LOCAL_AWS_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: LOCAL_AWS_CREDENTIALS.secretAccessKey,
  };
}
