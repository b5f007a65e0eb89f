/**
 * Lambda entry point `refresh`, invoked by an EventBridge schedule: keeps the tokens callers use
 * (and the ones grants mark `prefetch`) fresh, so callers never wait on Auth0 in steady state.
 */
import { createRefreshFunction } from './composition/refresh.js';
import { loadConfig } from './config.js';

export const handler = createRefreshFunction(loadConfig()).handler;
