/**
 * Every AWS client has a deadline: against an endpoint that accepts the connection and never
 * answers (a TCP server on loopback that reads and says nothing), each call fails with the SDK's
 * TimeoutError after exactly AWS_MAX_ATTEMPTS attempts, each one a new connection the server
 * counts. No wall-clock threshold is asserted: the counts and the error are the proof.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { ListKeysCommand } from '@aws-sdk/client-kms';
import { GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { describe, it } from 'vitest';
import { AWS_MAX_ATTEMPTS, dynamoDbClient } from '../../functions/adapters/awsClients.js';
import { secretsManagerClient } from '../../functions/adapters/secretsManagerModule.js';
import { kmsClient } from '../../functions/adapters/kmsModule.js';

interface HungEndpoint {
  readonly url: string;
  /** connections accepted so far */
  connections(): number;
  close(): Promise<void>;
}

/** Run `use` against a new hung endpoint, and close it after. */
async function withHungEndpoint(use: (endpoint: HungEndpoint) => Promise<void>): Promise<void> {
  const endpoint = await hungEndpoint();
  try {
    await use(endpoint);
  } finally {
    await endpoint.close();
  }
}

async function hungEndpoint(): Promise<HungEndpoint> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server: Server = createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    // Read the request so the client's write completes, and never answer.
    socket.on('data', () => undefined);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const endpoint: HungEndpoint = {
    url: `http://127.0.0.1:${port}`,
    connections: () => accepted,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return endpoint;
}

const overrides = (endpoint: HungEndpoint) => ({ endpoint: endpoint.url, region: 'eu-west-1', credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } });

/** The rejection of `call`, which must reject. */
async function failureOf(call: Promise<unknown>): Promise<Error & { $metadata?: { attempts?: number } }> {
  try {
    await call;
  } catch (error) {
    return error as Error & { $metadata?: { attempts?: number } };
  }
  throw new Error('the call to a hung endpoint succeeded');
}

// Concurrent: each test waits AWS_MAX_ATTEMPTS request timeouts on its own endpoint.
describe.concurrent('AWS clients against a hung endpoint', () => {
  it('retries a bounded number of times', ({ expect }) => {
    expect(AWS_MAX_ATTEMPTS).toBeGreaterThanOrEqual(1);
    expect(AWS_MAX_ATTEMPTS).toBeLessThanOrEqual(3);
  });

  it.for([
    ['DynamoDB', (endpoint: HungEndpoint) => dynamoDbClient(overrides(endpoint)).send(new ListTablesCommand({}))],
    ['Secrets Manager', (endpoint: HungEndpoint) => secretsManagerClient(overrides(endpoint)).send(new GetSecretValueCommand({ SecretId: 'token-vendor/orders-m2m' }))],
    ['KMS', (endpoint: HungEndpoint) => kmsClient(overrides(endpoint)).send(new ListKeysCommand({}))],
  ] as const)('%s: fails with a TimeoutError after AWS_MAX_ATTEMPTS connections', ([, call], { expect }) =>
    withHungEndpoint(async (endpoint) => {
      const error = await failureOf(call(endpoint));
      expect(error.name).toBe('TimeoutError');
      expect(error.$metadata?.attempts).toBe(AWS_MAX_ATTEMPTS);
      expect(endpoint.connections()).toBe(AWS_MAX_ATTEMPTS);
    }),
  );

  it('points each client where the overrides say, and keeps the deadlines', ({ expect }) =>
    withHungEndpoint(async (endpoint) => {
      const client = secretsManagerClient(overrides(endpoint));
      expect(await client.config.region()).toBe('eu-west-1');
      expect(await client.config.maxAttempts()).toBe(AWS_MAX_ATTEMPTS);
      const [first, second] = await Promise.all([
        failureOf(client.send(new GetSecretValueCommand({ SecretId: 'a' }))),
        failureOf(client.send(new GetSecretValueCommand({ SecretId: 'b' }))),
      ]);
      expect([first.name, second.name]).toEqual(['TimeoutError', 'TimeoutError']);
      // two calls, each with its own bounded attempts
      expect(endpoint.connections()).toBe(2 * AWS_MAX_ATTEMPTS);
    }),
  );
});
