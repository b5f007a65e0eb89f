/**
 * The one error type the client throws for a failed `getToken`. `code` is stable and
 * machine-readable: the vendor's OAuth `error` (RFC 6749 §5.2 style: `access_denied`,
 * `invalid_request`, `temporarily_unavailable`, `server_error`, ...) when it answered with one,
 * or one of the client-side codes below when it did not.
 */

/** Codes the client itself assigns, when there is no OAuth error from the vendor to pass on. */
export const ClientErrorCode = {
  /** the AWS credential chain produced no credentials, or signing failed */
  credentialsUnavailable: 'credentials_unavailable',
  /** no HTTP response: DNS, connection refused or reset, TLS */
  networkError: 'network_error',
  /** no complete response within `timeoutMs` */
  timeout: 'timeout',
  /** a 2xx answer that is not a usable token response */
  invalidResponse: 'invalid_response',
  /**
   * a non-2xx answer without an OAuth error body (a proxy's page, an empty body); in direct
   * mode, Lambda's own refusal (no `lambda:InvokeFunction`, no such function, throttled)
   */
  httpError: 'http_error',
  /**
   * direct mode: the vend function crashed or timed out (Lambda's `X-Amz-Function-Error`);
   * status 502, as API Gateway answers a failed Lambda integration
   */
  functionError: 'function_error',
} as const;

export interface TokenVendorErrorOptions {
  /** HTTP status of the vendor's answer; 0 when there was none */
  status: number;
  code: string;
  /** from the `Retry-After` header, in seconds, when the vendor sent one */
  retryAfterSeconds?: number;
  cause?: unknown;
}

/**
 * `getToken` failed. The message says what happened for a human; branch on `code`, and on
 * `retryAfterSeconds` for a 429/503. Messages never contain a token or a credential.
 */
export class TokenVendorError extends Error {
  /**
   * HTTP status of the vendor's answer; 0 when no answer arrived. In direct mode, the status the
   * API path would have answered (the vendor's error body carries it), Lambda's own for a refusal
   * by Lambda, and 502 for a crashed function.
   */
  readonly status: number;
  /** the vendor's OAuth `error`, or a {@link ClientErrorCode} */
  readonly code: string;
  /** seconds the vendor asked us to wait (`Retry-After`; `retry_after` in direct mode), when it said */
  readonly retryAfterSeconds?: number;

  constructor(message: string, options: TokenVendorErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TokenVendorError';
    this.status = options.status;
    this.code = options.code;
    if (options.retryAfterSeconds !== undefined) this.retryAfterSeconds = options.retryAfterSeconds;
  }
}
