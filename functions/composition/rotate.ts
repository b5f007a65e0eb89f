/**
 * The `rotate` function's composition root: the Secrets Manager rotation steps over the
 * Management API and Secrets Manager's versions, with the token service for the rotator's own
 * Management API token. No vend handler, no refresher.
 */
import { Auth0Management } from '../adapters/auth0Management.js';
import { parseCredentials } from '../adapters/secretsManagerCredentials.js';
import { secretsManagerClient } from '../adapters/secretsManagerModule.js';
import { SecretsManagerRotationStore } from '../adapters/secretsManagerRotation.js';
import type { VendorConfig } from '../config.js';
import { SecretRotator } from '../core/rotation.js';
import { createRotationHandler, type RotationHandler } from '../rotation/rotationHandler.js';
import { eagerAdapters } from './eager.js';
import { createFoundation, type Foundation, type VendorDeps } from './tokenService.js';

export interface RotateFunction extends Foundation {
  readonly rotator: SecretRotator;
  readonly handler: RotationHandler;
}

export function createRotateFunction(config: VendorConfig, deps: VendorDeps = {}, shared?: Foundation): RotateFunction {
  // One Secrets Manager client for the rotation's versions and the token service's credentials.
  const secretsManager = deps.secretsManager ?? secretsManagerClient();
  const foundation = shared ?? createFoundation(config, { ...deps, secretsManager }, eagerAdapters);
  const { service, idp, logger, metrics, now } = foundation;
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
  return { ...foundation, rotator, handler: createRotationHandler({ rotator, logger, metrics }) };
}
