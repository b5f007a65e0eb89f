/**
 * Lambda entry point `refresh`, invoked by an EventBridge schedule: keeps the tokens callers use
 * (and the ones grants mark `prefetch`) fresh, so callers never wait on Auth0 in steady state.
 */
import { loadConfig } from './config.js';
import { createVendor } from './vendor.js';

const vendor = createVendor(loadConfig());

export const handler = vendor.refreshHandler;
