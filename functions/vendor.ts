/**
 * All three functions over one token service, for the places that play every part in one
 * process: the local stack, the ops CLI, tests and benchmarks. A Lambda function never imports
 * this: each entry point (`vend.ts`, `refresh.ts`, `rotate.ts`) imports its own composition root
 * from `composition/`, so each bundle holds only what that function does.
 */
import type { Logger } from '@aws-lambda-powertools/logger';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import type { DynamoTokenStore } from './adapters/dynamoTokenStore.js';
import type { VendorConfig } from './config.js';
import { secretsManagerClient } from './adapters/secretsManagerModule.js';
import { eagerAdapters } from './composition/eager.js';
import { createRefreshFunction } from './composition/refresh.js';
import { createRotateFunction } from './composition/rotate.js';
import { createFoundation, type VendorDeps } from './composition/tokenService.js';
import { createVendFunction } from './composition/vend.js';
import type { Refresher } from './core/refresher.js';
import type { SecretRotator } from './core/rotation.js';
import type { TokenService } from './core/tokenService.js';
import type { VendHandler } from './http/vendHandler.js';
import type { RotationHandler } from './rotation/rotationHandler.js';
import type { RefreshHandler } from './scheduled/refreshHandler.js';

export type { VendorDeps } from './composition/tokenService.js';

export interface Vendor {
  readonly service: TokenService;
  /** the table, through its adapter (ops' status reads leases and back-offs through it) */
  readonly store: DynamoTokenStore;
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
  // One Secrets Manager client for the credentials and the rotation, as in the rotate function.
  const shared = { ...deps, secretsManager: deps.secretsManager ?? secretsManagerClient() };
  const foundation = createFoundation(config, shared, eagerAdapters);
  const vend = createVendFunction(config, shared, foundation);
  const refresh = createRefreshFunction(config, shared, foundation);
  const rotate = createRotateFunction(config, shared, foundation);
  return {
    service: foundation.service,
    store: foundation.store,
    refresher: refresh.refresher,
    rotator: rotate.rotator,
    handler: vend.handler,
    refreshHandler: refresh.handler,
    rotationHandler: rotate.handler,
    logger: foundation.logger,
    metrics: foundation.metrics,
  };
}
