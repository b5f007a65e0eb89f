/**
 * The `refresh` function's composition root: the token service, the scheduled refresher over the
 * table's token list, and its handler. No rotator, no Management API client.
 */
import type { VendorConfig } from '../config.js';
import { Refresher } from '../core/refresher.js';
import { createRefreshHandler, type RefreshHandler } from '../scheduled/refreshHandler.js';
import { eagerAdapters } from './eager.js';
import { createFoundation, type Foundation, type VendorDeps } from './tokenService.js';

/** Refreshes run at most this many at a time: the IdP sees a trickle, not a burst. */
const REFRESH_CONCURRENCY = 4;

export interface RefreshFunction extends Foundation {
  readonly refresher: Refresher;
  readonly handler: RefreshHandler;
}

export function createRefreshFunction(config: VendorConfig, deps: VendorDeps = {}, foundation: Foundation = createFoundation(config, deps, eagerAdapters)): RefreshFunction {
  const { service, store, logger, metrics, now } = foundation;
  const refresher = new Refresher(
    { service, store, grants: config.grants, log: logger, now },
    { lookaheadMs: config.refresherLookaheadMs, recentUseMs: config.recentUseMs, concurrency: REFRESH_CONCURRENCY },
  );
  return { ...foundation, refresher, handler: createRefreshHandler({ refresher, logger, metrics }) };
}
