/**
 * The Auth0 adapters, loaded with the function: for `refresh` and `rotate`, whose main path calls
 * Auth0 and reads secrets, and for the one-process vendor (functions/vendor.ts).
 */
import { Auth0TokenEndpoint } from '../adapters/auth0TokenEndpoint.js';
import { SecretsManagerCredentials } from '../adapters/secretsManagerCredentials.js';
import { secretsManagerClient } from '../adapters/secretsManagerModule.js';
import type { IdpAdapters } from './tokenService.js';

export const eagerAdapters: IdpAdapters = {
  idp: (options) => new Auth0TokenEndpoint(options),
  credentials: ({ client, maxAgeSeconds, now }) => new SecretsManagerCredentials({ client: client ?? secretsManagerClient(), maxAgeSeconds, now }),
};
