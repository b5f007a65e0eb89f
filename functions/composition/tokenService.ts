/**
 * The wiring every function shares: the token service over its adapters. Clients are built once
 * per instance, with the deadlines of adapters/awsClients.ts, and may be passed in, as Powertools' `DynamoDBPersistenceLayer` takes
 * `awsSdkV3Client ?? new DynamoDBClient()`; so may `fetch` and the clock (jose's injectable
 * `fetch`, Go's `timeNow`), which is how the local stack, tests and benchmarks point a function at
 * the local stand-ins.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KMSClient } from '@aws-sdk/client-kms';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import type { Auth0TokenEndpointOptions } from '../adapters/auth0TokenEndpoint.js';
import { dynamoDbClient } from '../adapters/awsClients.js';
import { DynamoTokenStore } from '../adapters/dynamoTokenStore.js';
import { KmsTokenSealer } from '../adapters/kmsTokenSealer.js';
import { PowertoolsObserver } from '../adapters/powertoolsObserver.js';
import type { VendorConfig } from '../config.js';
import type { CredentialSource, Observer, TokenEndpoint } from '../core/ports.js';
import { createTokenService, type TokenService } from '../core/tokenService.js';

export interface VendorDeps {
  readonly dynamodb?: DynamoDBClient;
  readonly secretsManager?: SecretsManagerClient;
  readonly kms?: KMSClient;
  readonly fetch?: typeof fetch;
  /** how the vend handler reaches STS to verify identity proofs (default: the global fetch) */
  readonly stsFetch?: typeof fetch;
  readonly now?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly random?: () => number;
  readonly logger?: Logger;
  readonly metrics?: Metrics;
  /** replaces the Powertools metrics observer (benchmarks count events with their own) */
  readonly observer?: Observer;
}

/** What every function is built on. */
export interface Foundation {
  readonly config: VendorConfig;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly now: () => number;
  readonly dynamodb: DynamoDBClient;
  /** the IdP's token endpoint itself, without caching (the rotation tests a new credential with it) */
  readonly idp: TokenEndpoint;
  readonly store: DynamoTokenStore;
  readonly service: TokenService;
}

/** Builds the Auth0 token endpoint. */
export type IdpFactory = (options: Auth0TokenEndpointOptions) => TokenEndpoint;

/** Builds the credential source over Secrets Manager (`client`: the one passed in, if any). */
export type CredentialsFactory = (options: { client?: SecretsManagerClient | undefined; maxAgeSeconds: number; now: () => number }) => CredentialSource;

/**
 * The adapters a function needs only when it calls Auth0. `refresh` and `rotate` load them with
 * the function (composition/eager.ts): calling Auth0 is their main path. `vend` loads them on first
 * use (composition/lazy.ts): its warm path never calls Auth0 nor reads a secret. Passed in rather
 * than imported here, so that vend's bundle does not load them at start.
 */
export interface IdpAdapters {
  readonly idp: IdpFactory;
  readonly credentials: CredentialsFactory;
}

export function createFoundation(config: VendorConfig, deps: VendorDeps, adapters: IdpAdapters): Foundation {
  const logger = deps.logger ?? new Logger({ serviceName: config.serviceName });
  const metrics = deps.metrics ?? new Metrics({ namespace: config.metricsNamespace, serviceName: config.serviceName });
  const now = deps.now ?? Date.now;
  const dynamodb = deps.dynamodb ?? dynamoDbClient();
  const idp = adapters.idp({ timeoutMs: config.idpTimeoutMs, now, ...(deps.fetch ? { fetch: deps.fetch } : {}) });
  const observer: Observer = deps.observer ?? new PowertoolsObserver(metrics);
  // Each token is sealed under a data key of its own (KMS GenerateDataKey once per fetch), wrapped
  // in its item and bound to it; unwrapped keys are kept per instance, so the warm path makes no
  // KMS call and a cold instance one Decrypt per token it reads (adapters/kmsTokenSealer.ts).
  const sealer = new KmsTokenSealer({
    // No client unless one is passed: the sealer loads KMS the first time it needs it.
    kms: deps.kms,
    tableName: config.tableName,
    keyId: config.sealKeyId,
    // Room for every token the memory tier holds and the one that replaces it.
    cacheEntries: 2 * config.memoryCacheEntries,
  });
  const store = new DynamoTokenStore({
    client: dynamodb,
    tableName: config.tableName,
    sealer,
    now,
    // An item that is not what the vendor wrote (or that a flush removed) is a miss, counted and logged.
    onDefect: (defect) => observer.sealedRecordRejected(defect),
    log: logger,
  });
  const service = createTokenService(
    {
      grants: config.grants,
      credentials: adapters.credentials({ client: deps.secretsManager, maxAgeSeconds: config.secretMaxAgeSeconds, now }),
      idp,
      store,
      observer,
      log: logger,
      now,
      ...(deps.sleep ? { sleep: deps.sleep } : {}),
      ...(deps.random ? { random: deps.random } : {}),
    },
    // The configuration is the service's options: one source of truth for every default.
    config,
  );
  return { config, logger, metrics, now, dynamodb, idp, store, service };
}
