/**
 * `@auth0-token-vendor/client` (client/package.json): what internal services import to get tokens from the vendor.
 */
export { TokenVendorClient, normalizeScope } from './tokenVendorClient.js';
export type {
  TokenVendorClientOptions,
  TokenVendorClientCommonOptions,
  TokenVendorApiOptions,
  TokenVendorDirectOptions,
  TokenVendorCredentials,
  TokenRequest,
  VendedToken,
} from './tokenVendorClient.js';
export { TokenVendorError, ClientErrorCode } from './errors.js';
export type { TokenVendorErrorOptions } from './errors.js';
export { MAX_ORGANIZATION_LENGTH } from './organization.js';
export { IdentityProver, requestBindingHash, PROOF_HEADER, PROOF_PREFIX, PROOF_SIGNED_HEADERS } from './identityProof.js';
export type { IdentityProverOptions } from './identityProof.js';
