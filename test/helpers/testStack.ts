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
import { startLocalAuth0Tenant, type ClientGrantOrganizations, type LocalAuth0Tenant, type TenantOrganization } from '../../local/auth0Tenant.js';
import { LOCAL_REGION, createSealKey, createTokenTable, localDynamoDb, localFunctionEnv, localKms, localSecretsManager, putClientSecret } from '../../local/seed.js';
import type { LocalCredential } from '../../local/sigv4.js';
import { startLocalSts, stsCallerIdentity, type LocalSts } from '../../local/sts.js';
import { TEST_TIME_SCALE, deployedSettings, isDuration, scaled } from './deployedSettings.js';
import { registerProofSigner, type ProofSignerConfig } from './events.js';

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
/** apiEvent()'s default caller */
export const DEFAULT_EVENT_SESSION = 'arn:aws:sts::111122223333:assumed-role/checkout-service/i-0123456789abcdef0';
export const ALICE_USER = 'arn:aws:iam::111122223333:user/ops/alice';
/** The server id every test stack's vendor is configured with (PROOF_SERVER_ID). */
export const TEST_PROOF_SERVER_ID = 'token-vendor-test';

/**
 * The identities the tests act as, each with its own key at the stack's STS stand-in (and so a
 * valid proof from apiEvent()/directEvent()). Any other principal has no credential: its events
 * carry no proof, as a caller without AWS credentials could not make one.
 */
export const TEST_CALLERS: readonly string[] = [
  DEFAULT_EVENT_SESSION,
  CHECKOUT_ROLE_SESSION,
  'arn:aws:sts::111122223333:assumed-role/checkout-service/bench',
  REPORTING_ROLE_SESSION,
  'arn:aws:sts::111122223333:assumed-role/reporting-daily/job',
  BILLING_ROLE_SESSION,
  ALICE_USER,
];

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
   * The stack's STS stand-in (`env.STS_ENDPOINT`): counters (`calls()`, `callsBy(arn)`) and faults
   * (`setFault('outage' | 'throttle' | 'hang' | null)`). It knows one key per TEST_CALLERS entry.
   */
  readonly sts: LocalSts;
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
  /** more caller identities (session or user ARNs) to give STS keys to, besides TEST_CALLERS */
  readonly callers?: readonly string[];
  /**
   * Issue 12: the tenant's organizations (declaring them turns on M2M Access for Organizations,
   * local/auth0Organizations.ts), and the client grants' organization settings, by client id
   * (`orders-client`, `billing-client`) and audience.
   */
  readonly organizations?: readonly TenantOrganization[];
  readonly organizationGrants?: Record<string, Record<string, ClientGrantOrganizations>>;
  /** more grants for the grants file, after the usual three (clients `orders` and `billing`) */
  readonly extraGrants?: readonly unknown[];
}

/**
 * A key per identity: a role session ARN becomes the role's credential with that session name, a
 * user ARN the user's. The keys are random per stack, so one stack's proof never verifies at another.
 */
function callerCredentials(arns: readonly string[]): Array<{ arn: string; credential: LocalCredential }> {
  return [...new Set(arns)].map((arn) => {
    const session = /^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role\/([^/]+)\/([^/]+)$/.exec(arn);
    const base = { accessKeyId: `AKIATEST${randomBytes(6).toString('hex').toUpperCase()}`, secretAccessKey: randomBytes(30).toString('base64url') };
    const credential: LocalCredential = session
      ? { ...base, principalArn: `arn:${session[1]}:iam::${session[2]}:role/${session[3]}`, sessionName: session[4] ?? '' }
      : { ...base, principalArn: arn };
    if (stsCallerIdentity(credential).Arn !== arn) throw new Error(`test caller ${arn} is not a role session or user ARN`);
    return { arn, credential };
  });
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
    ...(options.organizations !== undefined ? { organizations: [...options.organizations] } : {}),
    ...(options.organizationGrants !== undefined ? { organizationGrants: options.organizationGrants } : {}),
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

  const { sts, unregisterSigner } = await startTestSts(options.callers);

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
        { principals: ['arn:aws:iam::111122223333:role/reporting-*'], prefetch: true, client: 'orders', audience: ORDERS, scopes: ['read:orders'] },
        { principals: ['arn:aws:iam::111122223333:role/billing-api'], client: 'billing', audience: BILLING, scopes: ['read:billing'] },
        ...(options.extraGrants ?? []),
      ],
    }),
  );

  const env: Record<string, string> = {
    ...localFunctionEnv({ motoEndpoint, grantsFile, sealKeyId: sealKeyAlias }),
    TOKEN_TABLE_NAME: tableName,
    STS_ENDPOINT: sts.origin,
    PROOF_SERVER_ID: TEST_PROOF_SERVER_ID,
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
    sts,
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
      unregisterSigner();
      await Promise.all([tenant.close(), sts.close()]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The STS stand-in of a test, with a key for each of TEST_CALLERS (and `extra`), registered as the
 * signer of apiEvent()/directEvent() proofs. For tests that build their own stack without
 * startTestStack: pass `STS_ENDPOINT: sts.origin` and `PROOF_SERVER_ID: TEST_PROOF_SERVER_ID` to
 * the vendor, and call `close()` afterwards.
 */
export async function startTestSts(extra: readonly string[] = []): Promise<{ sts: LocalSts; unregisterSigner: () => void; close: () => Promise<void> }> {
  const callers = callerCredentials([...TEST_CALLERS, ...extra]);
  const sts = await startLocalSts({ credentials: callers.map((c) => c.credential), region: LOCAL_REGION });
  const signer: ProofSignerConfig = {
    stsOrigin: sts.origin,
    region: LOCAL_REGION,
    serverId: TEST_PROOF_SERVER_ID,
    credentials: Object.fromEntries(callers.map(({ arn, credential }) => [arn, { accessKeyId: credential.accessKeyId, secretAccessKey: credential.secretAccessKey }])),
  };
  const unregisterSigner = registerProofSigner(signer);
  return {
    sts,
    unregisterSigner,
    close: async () => {
      unregisterSigner();
      await sts.close();
    },
  };
}
