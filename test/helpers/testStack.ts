/**
 * One test file's stack: a local Auth0 tenant (oidc-provider) on a free loopback port, a token
 * table and client secrets in the shared moto_server started by test/globalSetup.ts, a grants
 * file, and a factory for vendor instances wired to all of it. Each stack has its own table and
 * tenant, so test files run in parallel without sharing state.
 *
 * Vendors run on the settings serverless.yml deploys, on a faster clock (deployedSettings.ts):
 * a test may choose the clock (`timeScale`), and may change a feature setting (a quota cap), but
 * never one duration alone, which would test ratios production never runs.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inject } from 'vitest';
import { loadConfig } from '../../functions/config.js';
import { createVendor, type Vendor, type VendorDeps } from '../../functions/vendor.js';
import { startLocalAuth0Tenant, type LocalAuth0Tenant } from '../../local/auth0Tenant.js';
import { createSealKey, createTokenTable, localDynamoDb, localFunctionEnv, localKms, localSecretsManager, putClientSecret } from '../../local/seed.js';
import { TEST_TIME_SCALE, deployedSettings, isDuration, scaled } from './deployedSettings.js';

declare module 'vitest' {
  export interface ProvidedContext {
    motoEndpoint: string;
  }
}

export const ORDERS = 'https://orders.example.com';
export const BILLING = 'https://billing.example.com';
export const CHECKOUT_ROLE_SESSION = 'arn:aws:sts::111122223333:assumed-role/checkout-service/i-0abc';
export const REPORTING_ROLE_SESSION = 'arn:aws:sts::111122223333:assumed-role/reporting-daily/job-1';
export const BILLING_ROLE_SESSION = 'arn:aws:sts::111122223333:assumed-role/billing-api/task-9';

export interface TestStack {
  readonly tenant: LocalAuth0Tenant;
  readonly motoEndpoint: string;
  readonly tableName: string;
  readonly grantsFile: string;
  readonly dynamodb: ReturnType<typeof localDynamoDb>;
  readonly secretsManager: ReturnType<typeof localSecretsManager>;
  readonly kms: ReturnType<typeof localKms>;
  /** the environment a vendor process needs (what Lambda would be given) */
  readonly env: Record<string, string>;
  readonly ordersSecret: string;
  readonly ordersSecretId: string;
  /**
   * a new vendor instance: its own memory tier, the shared table. `env` may not change a duration
   * of the deployed settings (that would change their ratios): `timeScale` runs the instance on
   * another clock instead (every duration alike; 1 = exactly the deployed values).
   */
  vendor(options?: { env?: Record<string, string>; deps?: VendorDeps; timeScale?: number }): Vendor;
  /** a new empty token table; pass `{ TOKEN_TABLE_NAME }` to vendor() to use it */
  newTable(): Promise<string>;
  /** record a value the log scan must never find (e.g. a wrong secret a test plants) */
  recordSensitive(kind: 'client_secret' | 'access_token', value: string): void;
  close(): Promise<void>;
}

export interface TestStackOptions {
  readonly tokenTtlSeconds?: number;
  /** the clock of `env` and of every vendor (deployedSettings.ts `scaled`); default TEST_TIME_SCALE */
  readonly timeScale?: number;
}

export async function startTestStack(options: TestStackOptions = {}): Promise<TestStack> {
  const motoEndpoint = inject('motoEndpoint');
  const recordFile = process.env.TOKEN_VENDOR_SENSITIVE_RECORD;
  const ordersSecret = randomBytes(24).toString('base64url');
  const billingSecret = randomBytes(24).toString('base64url');

  const tenant = await startLocalAuth0Tenant({
    clients: [
      { clientId: 'orders-client', clientSecret: ordersSecret, authMethod: 'client_secret_post' },
      { clientId: 'billing-client', clientSecret: billingSecret, authMethod: 'client_secret_basic' },
    ],
    apis: [
      { audience: ORDERS, scopes: ['read:orders', 'write:orders', 'admin:orders'], ...(options.tokenTtlSeconds ? { tokenTtlSeconds: options.tokenTtlSeconds } : {}) },
      { audience: BILLING, scopes: ['read:billing'], tokenFormat: 'opaque' },
    ],
    clientGrants: {
      // The Auth0 client grant is wider than the vendor's grants: the vendor must narrow it.
      'orders-client': { [ORDERS]: ['read:orders', 'write:orders', 'admin:orders'] },
      'billing-client': { [BILLING]: ['read:billing'] },
    },
    ...(recordFile ? { recordFile } : {}),
  });

  const suffix = randomUUID().slice(0, 8);
  const tableName = `tokens-${suffix}`;
  const dynamodb = localDynamoDb(motoEndpoint);
  const secretsManager = localSecretsManager(motoEndpoint);
  const kms = localKms(motoEndpoint);
  const sealKeyAlias = `alias/token-vendor-test-${suffix}`;
  await createSealKey(kms, sealKeyAlias);
  await createTokenTable(dynamodb, tableName);
  await putClientSecret(secretsManager, `vendor/orders-${suffix}`, { client_id: 'orders-client', client_secret: ordersSecret });
  await putClientSecret(secretsManager, `vendor/billing-${suffix}`, { client_id: 'billing-client', client_secret: billingSecret });

  const dir = mkdtempSync(join(tmpdir(), 'vendor-test-'));
  const grantsFile = join(dir, 'grants.json');
  writeFileSync(
    grantsFile,
    JSON.stringify({
      clients: {
        orders: { domain: tenant.origin, secretId: `vendor/orders-${suffix}`, authMethod: 'client_secret_post' },
        billing: { domain: tenant.origin, secretId: `vendor/billing-${suffix}`, authMethod: 'client_secret_basic', tokenFormat: 'opaque' },
      },
      grants: [
        { principals: ['arn:aws:iam::111122223333:role/checkout-service'], client: 'orders', audience: ORDERS, scopes: ['read:orders', 'write:orders'] },
        { principals: ['arn:aws:iam::111122223333:role/reporting-*'], directInvoke: true, prefetch: true, client: 'orders', audience: ORDERS, scopes: ['read:orders'] },
        { principals: ['arn:aws:iam::111122223333:role/billing-api'], client: 'billing', audience: BILLING, scopes: ['read:billing'] },
      ],
    }),
  );

  const env: Record<string, string> = {
    ...localFunctionEnv({ motoEndpoint, grantsFile, sealKeyId: sealKeyAlias }),
    TOKEN_TABLE_NAME: tableName,
    // What serverless.yml deploys, on a faster clock: nothing else. A test whose fault would
    // leave a fleet back-off behind uses a table of its own (newTable).
    ...scaled(options.timeScale ?? TEST_TIME_SCALE),
  };

  return {
    tenant,
    motoEndpoint,
    tableName,
    grantsFile,
    dynamodb,
    secretsManager,
    kms,
    env,
    ordersSecret,
    ordersSecretId: `vendor/orders-${suffix}`,
    vendor: (opts = {}) => {
      const durations = Object.keys(opts.env ?? {}).filter((name) => name in deployedSettings() && isDuration(name));
      if (durations.length > 0) {
        throw new Error(`a test may not change a duration alone (${durations.join(', ')}): that tests ratios production never runs; use timeScale (a faster clock for every duration) or a clock the test controls`);
      }
      const settings = opts.timeScale === undefined ? env : { ...env, ...scaled(opts.timeScale) };
      return createVendor(loadConfig({ ...settings, ...opts.env }), { dynamodb, secretsManager, kms, ...opts.deps });
    },
    newTable: async () => {
      const name = `tokens-${randomUUID().slice(0, 8)}`;
      await createTokenTable(dynamodb, name);
      return name;
    },
    recordSensitive: (kind, value) => {
      if (recordFile) appendFileSync(recordFile, `${JSON.stringify({ kind, value })}\n`);
    },
    close: async () => {
      await tenant.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
