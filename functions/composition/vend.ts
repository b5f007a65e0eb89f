/**
 * The `vend` function's composition root: the token service and the HTTP/direct-invoke handler,
 * nothing else. No refresher, no rotator, no Management API client: the same split that
 * infra/iam.yml draws for the function's role.
 */
import { StsIdentityVerifier } from '../adapters/stsIdentityVerifier.js';
import type { VendorConfig } from '../config.js';
import { createVendHandler, type VendHandler } from '../http/vendHandler.js';
import { lazyAdapters } from './lazy.js';
import { createFoundation, type Foundation, type VendorDeps } from './tokenService.js';

export interface VendFunction extends Foundation {
  readonly handler: VendHandler;
}

export function createVendFunction(config: VendorConfig, deps: VendorDeps = {}, foundation: Foundation = createFoundation(config, deps, lazyAdapters)): VendFunction {
  const { service, logger, metrics, now } = foundation;
  // The caller's own signature authenticates the STS call: the function's role needs no STS permission.
  // On the wall clock, not the service's: the proof window is the caller's signing clock against
  // ours, whatever clock a test runs token lifetimes on.
  const identity = new StsIdentityVerifier({ policy: config.proof, timeoutMs: config.stsTimeoutMs, ...(deps.stsFetch ? { fetch: deps.stsFetch } : {}) });
  return { ...foundation, handler: createVendHandler({ service, identity, logger, metrics, now }) };
}
