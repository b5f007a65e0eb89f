/**
 * Credential rotation against the real local components: moto_server (Secrets Manager versions
 * and stages) and the oidc-provider tenant, whose Management API stand-in changes a client's
 * secret at once on rotate-secret (no overlap, as Auth0) and holds up to two private_key_jwt
 * credentials. The test plays Secrets Manager: it calls the rotate function's four steps.
 */
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DescribeSecretCommand, GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import type { APIGatewayProxyResult } from 'aws-lambda';
import { calculateJwkThumbprint, exportJWK, exportPKCS8, exportSPKI, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../../functions/config.js';
import type { RotationStep } from '../../functions/core/rotation.js';
import { createVendor, type Vendor } from '../../functions/vendor.js';
import { startLocalAuth0Tenant, type LocalAuth0Tenant } from '../../local/auth0Tenant.js';
import { LOCAL_AWS_CREDENTIALS, LOCAL_REGION, createSealKey, createTokenTable, localDynamoDb, localKms, localSecretsManager, putClientSecret } from '../../local/seed.js';
import { countingObserver } from '../helpers/countingObserver.js';
import { TEST_TIME_SCALE, scaled } from '../helpers/deployedSettings.js';
import { apiEvent } from '../helpers/events.js';
import { TEST_PROOF_SERVER_ID, startTestSts } from '../helpers/testStack.js';

const ORDERS = 'https://orders.example.com';
const KEYED = 'https://keyed.example.com';
const STEPS: RotationStep[] = ['createSecret', 'setSecret', 'testSecret', 'finishSecret'];
const recordFile = process.env.TOKEN_VENDOR_SENSITIVE_RECORD;
const record = (kind: string, value: string) => recordFile && appendFileSync(recordFile, `${JSON.stringify({ kind, value })}\n`);

let tenant: LocalAuth0Tenant;
const secrets = localSecretsManager(inject('motoEndpoint'));
const dynamodb = localDynamoDb(inject('motoEndpoint'));
const kms = localKms(inject('motoEndpoint'));
const suffix = randomUUID().slice(0, 8);
const ids = { orders: `rot/orders-${suffix}`, rotator: `rot/rotator-${suffix}`, keyed: `rot/keyed-${suffix}` };
let baseEnv: Record<string, string>;
/** the grants file's directory: removed after the file's tests */
let dir: string | undefined;

async function keyPair() {
  const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true });
  const pem = await exportPKCS8(privateKey);
  // the base64 body of the key, one line of it, is what a leak would show
  record('private_key', pem.split('\n')[2] ?? pem);
  return { pem, spki: await exportSPKI(publicKey), kid: await calculateJwkThumbprint(await exportJWK(publicKey)) };
}

let stopSts: (() => Promise<void>) | undefined;
beforeAll(async () => {
  const testSts = await startTestSts();
  stopSts = testSts.close;
  const ordersSecret = randomBytes(24).toString('base64url');
  const rotatorSecret = randomBytes(24).toString('base64url');
  const key = await keyPair();
  tenant = await startLocalAuth0Tenant({
    managementApi: true,
    clients: [
      { clientId: 'orders-client', clientSecret: ordersSecret, authMethod: 'client_secret_post' },
      { clientId: 'rotator-client', clientSecret: rotatorSecret, authMethod: 'client_secret_post' },
      { clientId: 'keyed-client', authMethod: 'private_key_jwt', credentials: [{ name: 'initial', pem: key.spki }] },
    ],
    // Short-lived tokens, so the load below keeps fetching while the rotation runs.
    apis: [
      { audience: ORDERS, scopes: ['read:orders', 'write:orders'], tokenTtlSeconds: 4 },
      { audience: KEYED, scopes: ['read:keyed', 'write:keyed'], tokenTtlSeconds: 4 },
    ],
    clientGrants: {
      'orders-client': { [ORDERS]: ['read:orders', 'write:orders'] },
      'keyed-client': { [KEYED]: ['read:keyed', 'write:keyed'] },
      'rotator-client': { management: ['create:client_credentials', 'delete:client_credentials', 'read:client_keys', 'update:client_keys'] },
    },
    ...(recordFile ? { recordFile } : {}),
  });
  await putClientSecret(secrets, ids.orders, { client_id: 'orders-client', client_secret: ordersSecret });
  await putClientSecret(secrets, ids.rotator, { client_id: 'rotator-client', client_secret: rotatorSecret });
  await secrets.send(new (await import('@aws-sdk/client-secrets-manager')).CreateSecretCommand({ Name: ids.keyed, SecretString: JSON.stringify({ client_id: 'keyed-client', private_key: key.pem, key_id: key.kid }) }));

  dir = mkdtempSync(join(tmpdir(), 'rotation-'));
  const grantsFile = join(dir, 'grants.json');
  writeFileSync(
    grantsFile,
    JSON.stringify({
      clients: {
        orders: { domain: tenant.origin, secretId: ids.orders, rotation: { managementClient: 'rotator' } },
        rotator: { domain: tenant.origin, secretId: ids.rotator },
        keyed: { domain: tenant.origin, secretId: ids.keyed, authMethod: 'private_key_jwt', rotation: { managementClient: 'rotator' } },
      },
      grants: [
        { principals: ['arn:aws:iam::111122223333:role/checkout-service'], client: 'orders', audience: ORDERS, scopes: ['read:orders', 'write:orders'] },
        { principals: ['arn:aws:iam::111122223333:role/checkout-service'], client: 'keyed', audience: KEYED, scopes: ['read:keyed', 'write:keyed'] },
      ],
    }),
  );
  const table = `rotation-${suffix}`;
  await createTokenTable(dynamodb, table);
  await createSealKey(kms, `alias/rotation-${suffix}`);
  baseEnv = {
    TOKEN_TABLE_NAME: table,
    TOKEN_SEAL_KEY_ID: `alias/rotation-${suffix}`,
    GRANTS_FILE: grantsFile,
    AWS_REGION: LOCAL_REGION,
    // Callers prove who they are at the test's STS stand-in (docs/identity-proof.md).
    STS_ENDPOINT: testSts.sts.origin,
    PROOF_SERVER_ID: TEST_PROOF_SERVER_ID,
    AWS_ACCESS_KEY_ID: LOCAL_AWS_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: LOCAL_AWS_CREDENTIALS.secretAccessKey,
    // What serverless.yml deploys, on the suites' faster clock: nothing else.
    ...scaled(TEST_TIME_SCALE),
  };
});
afterAll(async () => {
  await tenant?.close();
  await stopSts?.();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

/** Vendor instances that count the IdP errors they see, by code. */
function instance(errors: Record<string, number>, env: Record<string, string> = {}): Vendor {
  const { observer, counts } = countingObserver();
  counts.errors = errors;
  return createVendor(loadConfig({ ...baseEnv, ...env }), { dynamodb, secretsManager: secrets, kms, observer });
}

async function arnOf(secretId: string): Promise<string> {
  return (await secrets.send(new DescribeSecretCommand({ SecretId: secretId }))).ARN ?? secretId;
}
async function currentVersion(secretId: string): Promise<string | undefined> {
  const versions = (await secrets.send(new DescribeSecretCommand({ SecretId: secretId }))).VersionIdsToStages ?? {};
  return Object.entries(versions).find(([, stages]) => stages.includes('AWSCURRENT'))?.[0];
}
async function currentValue(secretId: string): Promise<Record<string, string>> {
  return JSON.parse((await secrets.send(new GetSecretValueCommand({ SecretId: secretId, VersionStage: 'AWSCURRENT' }))).SecretString ?? '{}') as Record<string, string>;
}

/** Continuous load — at least 20 requests/s over two instances — until `stop()`. */
function load(instances: Vendor[], audience: string, scopes: string[]) {
  let stopped = false;
  const statuses: Promise<number>[] = [];
  const started = Date.now();
  const loop = (async () => {
    for (let i = 0; !stopped; i += 1) {
      const body = JSON.stringify({ audience, scope: scopes[i % scopes.length] });
      statuses.push((instances[i % instances.length]!.handler(apiEvent({ body })) as Promise<APIGatewayProxyResult>).then((r) => r.statusCode));
      await new Promise((r) => setTimeout(r, 40)); // 25 requests/s
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      const all = await Promise.all(statuses);
      return { all, seconds: (Date.now() - started) / 1000 };
    },
  };
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A whole client-secret rotation of the orders client while two instances serve 25 requests/s:
 * load for `beforeMs`, createSecret (Auth0 rotates: the old secret dies), `pendingMs` with the new
 * secret only AWSPENDING, the other three steps, `afterMs` more load.
 */
async function rotateUnderLoad(errors: Record<string, number>, timing: { beforeMs: number; pendingMs: number; afterMs: number }) {
  const instances = [instance(errors), instance(errors)];
  const arn = await arnOf(ids.orders);
  const token = randomUUID();
  const rotator = instance({});
  const running = load(instances, ORDERS, ['read:orders', 'write:orders', 'read:orders write:orders']);
  await pause(timing.beforeMs);
  await rotator.rotationHandler({ SecretId: arn, ClientRequestToken: token, Step: 'createSecret' });
  await pause(timing.pendingMs);
  for (const step of STEPS.slice(1)) await rotator.rotationHandler({ SecretId: arn, ClientRequestToken: token, Step: step });
  await pause(timing.afterMs);
  return { ...(await running.stop()), token };
}

describe('client secret rotation (rotate-secret: no overlap at Auth0)', () => {
  it('a full rotation under continuous load ends with 0 failed caller requests', async () => {
    const errors: Record<string, number> = {};
    const before = await currentValue(ids.orders);
    // The old secret is dead at Auth0 once createSecret ran, and still AWSCURRENT: tokens expire
    // and are fetched again meanwhile, through Auth0's 401 access_denied (docs/auth0-wire-behaviour.md §1) and AWSPENDING.
    const { all, seconds, token } = await rotateUnderLoad(errors, { beforeMs: 1000, pendingMs: 4000, afterMs: 3000 });

    expect(all.length / seconds).toBeGreaterThanOrEqual(20);
    expect(all.filter((s) => s !== 200)).toEqual([]);
    expect(errors.ERR_IDP_CREDENTIAL_REFUSED ?? 0).toBeGreaterThan(0); // the fallback path really ran
    expect(errors.access_denied ?? 0).toBeGreaterThan(0); // on Auth0's own answer to a dead secret
    const after = await currentValue(ids.orders);
    // compared as booleans: a failing assertion must not print a secret
    expect(after.client_secret === before.client_secret).toBe(false);
    expect(after.client_secret === tenant.clientSecret('orders-client')).toBe(true);
    expect(await currentVersion(ids.orders)).toBe(token);
  }, 60_000);

  // Where Auth0's answer is not known for sure (docs/auth0-wire-behaviour.md §1, §13), the same
  // rotation under each plausible one: a 401 with invalid_client, a bare-text 401, and the
  // documented window in which either secret may be accepted.
  it.each([
    ['a 401 invalid_client', 'invalid_client', 'neither'],
    ['a bare-text 401 "Unauthorized"', 'plain-text', 'neither'],
    ['old or new secret accepted for a while', 'access_denied', 'old-or-new'],
  ] as const)('the same rotation with %s: 0 failed caller requests', async (_what, answer, propagation) => {
    tenant.setRefusedCredentialAnswer(answer);
    tenant.setSecretPropagationMode(propagation);
    try {
      const errors: Record<string, number> = {};
      const { all, seconds, token } = await rotateUnderLoad(errors, { beforeMs: 1000, pendingMs: 3000, afterMs: 2000 });

      expect(all.length / seconds).toBeGreaterThanOrEqual(20);
      expect(all.filter((s) => s !== 200)).toEqual([]);
      if (propagation === 'neither') expect(errors.ERR_IDP_CREDENTIAL_REFUSED ?? 0).toBeGreaterThan(0); // the fallback path ran
      expect(await currentVersion(ids.orders)).toBe(token);
    } finally {
      tenant.setRefusedCredentialAnswer('access_denied');
      tenant.setSecretPropagationMode('neither');
    }
  }, 60_000);

  it('every step run twice gives the same result (rotate-secret called once)', async () => {
    const arn = await arnOf(ids.orders);
    const token = randomUUID();
    const rotator = instance({});
    tenant.resetCounters();
    for (const step of STEPS) {
      await rotator.rotationHandler({ SecretId: arn, ClientRequestToken: token, Step: step });
      await rotator.rotationHandler({ SecretId: arn, ClientRequestToken: token, Step: step });
    }
    expect(tenant.managementRequests()).toBe(1);
    expect(await currentVersion(ids.orders)).toBe(token);
    expect((await currentValue(ids.orders)).client_secret === tenant.clientSecret('orders-client')).toBe(true);
    const versions = (await secrets.send(new DescribeSecretCommand({ SecretId: ids.orders }))).VersionIdsToStages ?? {};
    expect(Object.values(versions).filter((stages) => stages.includes('AWSCURRENT'))).toHaveLength(1);
  }, 30_000);

  it('a testSecret that fails leaves AWSCURRENT as it was, and says why', async () => {
    const arn = await arnOf(ids.orders);
    const token = randomUUID();
    const rotator = instance({});
    const versionBefore = await currentVersion(ids.orders);
    tenant.setSecretPropagationMs(60_000); // Auth0 never accepts the new secret in time
    try {
      await rotator.rotationHandler({ SecretId: arn, ClientRequestToken: token, Step: 'createSecret' });
      await rotator.rotationHandler({ SecretId: arn, ClientRequestToken: token, Step: 'setSecret' });
      await expect(rotator.rotationHandler({ SecretId: arn, ClientRequestToken: token, Step: 'testSecret' })).rejects.toThrow(/testSecret: Auth0 refused the new credential of orders .*access_denied/);
      expect(await currentVersion(ids.orders)).toBe(versionBefore);
    } finally {
      tenant.setSecretPropagationMs(0);
      // Auth0 catches up: the new secret is accepted from now on.
      tenant.setClientSecret('orders-client', tenant.clientSecret('orders-client') ?? '');
    }
    // Secrets Manager retries the rotation; once Auth0 accepts the secret, it completes.
    for (const step of STEPS.slice(2)) await rotator.rotationHandler({ SecretId: arn, ClientRequestToken: token, Step: step });
    expect(await currentVersion(ids.orders)).toBe(token);
  }, 30_000);
});

describe('private_key_jwt rotation (two credentials at once)', () => {
  it('rotates the key under continuous load with 0 failed requests, then retires the old credential', async () => {
    const errors: Record<string, number> = {};
    const instances = [instance(errors), instance(errors)];
    const arn = await arnOf(ids.keyed);
    const before = await currentValue(ids.keyed);
    const token = randomUUID();
    const rotator = instance({});

    const running = load(instances, KEYED, ['read:keyed', 'write:keyed']);
    await pause(1000);
    for (const step of STEPS) {
      await rotator.rotationHandler({ SecretId: arn, ClientRequestToken: token, Step: step });
      await pause(1500);
    }
    await pause(3000);
    const { all, seconds } = await running.stop();

    expect(all.length / seconds).toBeGreaterThanOrEqual(20);
    expect(all.filter((s) => s !== 200)).toEqual([]);
    const after = await currentValue(ids.keyed);
    expect(after.private_key === before.private_key).toBe(false);
    record('private_key', after.private_key?.split('\n')[2] ?? '');
    const credentials = tenant.clientCredentials('keyed-client');
    expect(credentials.map((c) => [c.name, c.attached])).toEqual([[`token-vendor-${token}`, true]]);
    expect(credentials[0]?.kid).toBe(after.key_id);
  }, 60_000);

  it('every step run twice gives the same result', async () => {
    const arn = await arnOf(ids.keyed);
    const token = randomUUID();
    const rotator = instance({});
    for (const step of STEPS) {
      await rotator.rotationHandler({ SecretId: arn, ClientRequestToken: token, Step: step });
      await rotator.rotationHandler({ SecretId: arn, ClientRequestToken: token, Step: step });
    }
    expect(await currentVersion(ids.keyed)).toBe(token);
    expect(tenant.clientCredentials('keyed-client').map((c) => [c.name, c.attached])).toEqual([[`token-vendor-${token}`, true]]);
    // and the vendor signs with the new key
    const res = (await instance({}).handler(apiEvent({ body: JSON.stringify({ audience: KEYED, scope: 'read:keyed' }) }))) as APIGatewayProxyResult;
    expect(res.statusCode).toBe(200);
  }, 30_000);
});

describe('npm run ops -- rotate', () => {
  it('starts a rotation now (locally: runs the four steps) and the client keeps working', async () => {
    // Beside the grants file: removed with it after the file's tests.
    const envFile = join(dir!, 'ops-env.json');
    writeFileSync(envFile, JSON.stringify({ ...baseEnv, AWS_ENDPOINT_URL: inject('motoEndpoint') }));
    const before = await currentVersion(ids.orders);
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'ops/cli.ts', 'rotate', '--client', 'orders', '--env-file', envFile, '--json'], {
      env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
      encoding: 'utf8',
    });
    const out = JSON.parse(stdout) as { rotated: boolean; versionId: string };
    expect(out.rotated).toBe(true);
    expect(await currentVersion(ids.orders)).toBe(out.versionId);
    expect(out.versionId).not.toBe(before);
    expect((await currentValue(ids.orders)).client_secret === tenant.clientSecret('orders-client')).toBe(true);
    const res = (await instance({}).handler(apiEvent({ body: JSON.stringify({ audience: ORDERS, scope: 'write:orders' }) }))) as APIGatewayProxyResult;
    expect(res.statusCode).toBe(200);
  }, 30_000);
});
