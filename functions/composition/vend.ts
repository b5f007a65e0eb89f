/**
 * The `vend` function's composition root: the token service and the HTTP/direct-invoke handler,
 * nothing else. No refresher, no rotator, no Management API client: the same split that
 * infra/iam.yml draws for the function's role.
 */
import type { VendorConfig } from '../config.js';
import { createVendHandler, type VendHandler } from '../http/vendHandler.js';
import { lazyAdapters } from './lazy.js';
import { createFoundation, type Foundation, type VendorDeps } from './tokenService.js';

export interface VendFunction extends Foundation {
  readonly handler: VendHandler;
}

export function createVendFunction(config: VendorConfig, deps: VendorDeps = {}, foundation: Foundation = createFoundation(config, deps, lazyAdapters)): VendFunction {
  const { service, logger, metrics, now } = foundation;
  return { ...foundation, handler: createVendHandler({ service, logger, metrics, now }) };
}
