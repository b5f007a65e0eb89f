/**
 * The client's public shapes, shared by the client and its two transports (API Gateway and
 * direct Lambda invocation).
 */
import type { SignatureV4Init } from '@smithy/signature-v4';

/** Static AWS credentials, or a provider of them (what `@aws-sdk/credential-providers` returns). */
export type TokenVendorCredentials = SignatureV4Init['credentials'];

/** An access token as the vendor issued it, with its expiry on this machine's clock. */
export interface VendedToken {
  accessToken: string;
  tokenType: 'Bearer';
  /** the granted scopes, space-separated */
  scope: string;
  /** epoch ms computed at receipt: now + expires_in * 1000 */
  expiresAt: number;
}

/**
 * What to ask for: the API (Auth0 audience), optionally space-separated scopes, and optionally the
 * Auth0 organization the token is for (issue 12).
 */
export interface TokenRequest {
  audience: string;
  scope?: string;
  /**
   * An `org_…` id or an organization's name, sent exactly as given: Auth0 puts it in the token's
   * `org_id` (and `org_name` when named by name). Absent: a token without organization.
   * A non-empty string of at most 100 characters, without control characters.
   */
  organization?: string;
}
