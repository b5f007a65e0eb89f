/**
 * Lambda entry point `vend`: POST /token through API Gateway (AWS_IAM), or a direct invocation.
 * Configuration is parsed and clients are built once, at cold start; a bad configuration fails
 * the cold start with a message naming the variable or grants field.
 */
import { loadConfig } from './config.js';
import { createVendor } from './vendor.js';

const vendor = createVendor(loadConfig());

export const handler = vendor.handler;
