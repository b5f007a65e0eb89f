/**
 * Lambda entry point `vend`: POST /token through API Gateway (AWS_IAM), or a direct invocation.
 * Configuration is parsed and clients are built once, at cold start; a bad configuration fails
 * the cold start with a message naming the variable or grants field.
 */
import { createVendFunction } from './composition/vend.js';
import { loadConfig } from './config.js';

export const handler = createVendFunction(loadConfig()).handler;
