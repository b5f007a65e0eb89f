/**
 * The composition root: builds the token service from configuration and clients. Callers
 * (the Lambda entry point, the local stack, tests, benchmarks) pass their own clients, fetch and
 * clock (STYLE.md §3: Powertools' `awsSdkV3Client ?? new Client()`).
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { Auth0TokenEndpoint } from './adapters/auth0TokenEndpoint.js';
import { DynamoTokenStore } from './adapters/dynamoTokenStore.js';
import { KmsTokenSealer } from './adapters/kmsTokenSealer.js';
import { PowertoolsObserver } from './adapters/powertoolsObserver.js';
import { SecretsManagerCredentials } from './adapters/secretsManagerCredentials.js';
import type { VendorConfig } from './config.js';
import { Auth0Management } from './adapters/auth0Management.js';
import { SecretsManagerRotationStore } from './adapters/secretsManagerRotation.js';
import { parseCredentials } from './adapters/secretsManagerCredentials.js';
import { Refresher } from './core/refresher.js';
import { SecretRotator } from './core/rotation.js';
import { createRotationHandler, type RotationHandler } from './rotation/rotationHandler.js';
import type { Observer } from './core/ports.js';
import { TokenService } from './core/tokenService.js';
import { createVendHandler, type VendHandler } from './http/vendHandler.js';
import { createRefreshHandler, type RefreshHandler } from './scheduled/refreshHandler.js';

export interface VendorDeps {
  readonly dynamodb?: DynamoDBClient;
  readonly secretsManager?: SecretsManagerClient;
  readonly kms?: KMSClient;
  readonly fetch?: typeof fetch;
  readonly now?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly random?: () => number;
  readonly logger?: Logger;
  readonly metrics?: Metrics;
  /** replaces the Powertools metrics observer (benchmarks count events with their own) */
  readonly observer?: Observer;
}

export interface Vendor {
  readonly service: TokenService;
  readonly refresher: Refresher;
  /** the `vend` entry point */
  readonly handler: VendHandler;
  /** the `refresh` entry point */
  readonly refreshHandler: RefreshHandler;
  readonly rotator: SecretRotator;
  /** the `rotate` entry point */
  readonly rotationHandler: RotationHandler;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

export function createVendor(config: VendorConfig, deps: VendorDeps = {}): Vendor {
  const logger = deps.logger ?? new Logger({ serviceName: config.serviceName });
  const metrics = deps.metrics ?? new Metrics({ namespace: config.metricsNamespace, serviceName: config.serviceName });
  const now = deps.now ?? Date.now;
  const secretsManager = deps.secretsManager ?? new SecretsManagerClient({});
  const idp = new Auth0TokenEndpoint({ timeoutMs: config.idpTimeoutMs, now, ...(deps.fetch ? { fetch: deps.fetch } : {}) });
  const dynamodb = deps.dynamodb ?? new DynamoDBClient({});
  // Data keys live in the same table, encrypted under the KMS key: one KMS call per data key per
  // instance, none on the warm path.
  const sealer = new KmsTokenSealer({ kms: deps.kms ?? new KMSClient({}), dynamodb, tableName: config.tableName, keyId: config.sealKeyId, now });
  const store = new DynamoTokenStore({ client: dynamodb, tableName: config.tableName, sealer, now });
  const service = new TokenService(
    {
      grants: config.grants,
      credentials: new SecretsManagerCredentials({ client: secretsManager, maxAgeSeconds: config.secretMaxAgeSeconds, now }),
      idp,
      store,
      observer: deps.observer ?? new PowertoolsObserver(metrics),
      log: logger,
      now,
      ...(deps.sleep ? { sleep: deps.sleep } : {}),
      ...(deps.random ? { random: deps.random } : {}),
    },
    {
      earlyExpirySeconds: config.earlyExpirySeconds,
      refreshAheadRatio: config.refreshAheadRatio,
      leaseTtlMs: config.leaseTtlMs,
      leaseWaitMs: config.leaseWaitMs,
      memoryCacheEntries: config.memoryCacheEntries,
      idpDeadlineMs: config.idpDeadlineMs,
      idpAttemptMs: config.idpAttemptMs,
      retryBaseMs: config.retryBaseMs,
      retryCapMs: config.retryCapMs,
      failureBackoffSeconds: config.failureBackoffSeconds,
      quotaPerClientPerHour: config.quotaPerClientPerHour,
      usageWriteIntervalMs: config.usageWriteIntervalMs,
      memoryRevalidateMs: config.memoryRevalidateMs,
    },
  );
  const refresher = new Refresher(
    { service, store, grants: config.grants, log: logger, now },
    { lookaheadMs: config.refresherLookaheadMs, recentUseMs: config.recentUseMs, concurrency: 4 },
  );
  const rotator = new SecretRotator(
    {
      grants: config.grants,
      secrets: new SecretsManagerRotationStore(secretsManager),
      management: new Auth0Management({ timeoutMs: config.idpTimeoutMs, ...(deps.fetch ? { fetch: deps.fetch } : {}) }),
      tokens: service,
      idp,
      parseCredentials,
      log: logger,
      now,
      ...(deps.sleep ? { sleep: deps.sleep } : {}),
    },
    { testTimeoutMs: config.rotationTestTimeoutMs, testIntervalMs: config.rotationTestIntervalMs },
  );
  return {
    service,
    refresher,
    rotator,
    rotationHandler: createRotationHandler({ rotator, logger, metrics }),
    handler: createVendHandler({ service, logger, metrics, now }),
    refreshHandler: createRefreshHandler({ refresher, logger, metrics }),
    logger,
    metrics,
  };
}
