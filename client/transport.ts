/**
 * How a vend request reaches the vendor. The client owns the cache, the single flight and the
 * proof; a transport only carries one request and reads its answer (client/apiGatewayTransport.ts,
 * client/lambdaInvokeTransport.ts).
 */
import type { TokenVendorCredentials, VendedToken } from './types.js';

/**
 * One request: the normalized scope (empty for none), the organization when one is named, and its
 * fresh proof, which binds all three.
 */
export interface VendCall {
  audience: string;
  scope: string;
  organization?: string | undefined;
  proof: string;
}

export type Transport = (call: VendCall) => Promise<VendedToken>;

/** What every transport is built with. */
export interface TransportOptions {
  region: string;
  credentials: TokenVendorCredentials;
  fetch: typeof fetch;
  timeoutMs: number;
  /** ms clock for `expiresAt` */
  now: () => number;
}
