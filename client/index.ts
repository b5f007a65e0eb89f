/**
 * `auth0-token-vendor/client`: what internal services import to get tokens from the vendor.
 */
export { TokenVendorClient, normalizeScope } from './tokenVendorClient.js';
export type { TokenVendorClientOptions, TokenVendorCredentials, TokenRequest, VendedToken } from './tokenVendorClient.js';
export { TokenVendorError, ClientErrorCode } from './errors.js';
export type { TokenVendorErrorOptions } from './errors.js';
