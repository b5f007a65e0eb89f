/**
 * Seeding the local AWS stand-ins (moto_server): the token table exactly as infra/ declares it,
 * and client secrets in the shape the vendor reads. Used by the local stack and the tests.
 */
import {
  CreateTableCommand,
  DynamoDBClient,
  UpdateTimeToLiveCommand,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';
import {
  CreateSecretCommand,
  PutSecretValueCommand,
  ResourceExistsException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { PARTITION_KEY, TTL_ATTRIBUTE } from '../functions/adapters/dynamoTokenStore.js';

/** Fixed fake credentials for the emulator; moto accepts any. Never real ones. */
export const LOCAL_AWS_CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' } as const;
export const LOCAL_REGION = 'eu-west-1';

export function localDynamoDb(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_AWS_CREDENTIALS });
}

export function localSecretsManager(endpoint: string): SecretsManagerClient {
  return new SecretsManagerClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_AWS_CREDENTIALS });
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

/** Create (or give a new version to) a client secret `{"client_id","client_secret"}`. */
export async function putClientSecret(
  client: SecretsManagerClient,
  secretId: string,
  value: { client_id: string; client_secret: string },
): Promise<void> {
  const SecretString = JSON.stringify(value);
  try {
    await client.send(new CreateSecretCommand({ Name: secretId, SecretString }));
  } catch (error) {
    if (!(error instanceof ResourceExistsException)) throw error;
    await client.send(new PutSecretValueCommand({ SecretId: secretId, SecretString }));
  }
}
