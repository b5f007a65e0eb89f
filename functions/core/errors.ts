/**
 * The vendor's error hierarchy. Every error a caller can see is one of these, with a stable
 * OAuth-style `code` (RFC 6749 §5.2 where one fits) and the HTTP status it maps to. Adapters
 * translate SDK and HTTP failures into these where they enter (STYLE.md §7); the handler maps
 * them to responses in one place and exposes details only below 500 (middy's rule).
 */
export abstract class VendorError extends Error {
  /** machine-readable, stable: the `error` field of the response body */
  abstract readonly code: string;
  /** HTTP status the handler answers with */
  abstract readonly status: number;
  /** what a caller may be told. For 5xx it is deliberately generic. */
  abstract readonly publicDescription: string;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** 4xx: the caller's mistake. The message is written for the caller and is exposed as is. */
abstract class ClientError extends VendorError {
  get publicDescription(): string {
    return this.message;
  }
}

/** 400: the request itself is wrong (shape, types, size). */
export class InvalidRequestError extends ClientError {
  readonly code = 'invalid_request';
  readonly status = 400;
}

/** 403: no caller identity, or the caller is not granted the audience or a scope. */
export class AccessDeniedError extends ClientError {
  readonly code = 'access_denied';
  readonly status = 403;
}

/** 404 / 405: the route does not exist. */
export class NotFoundError extends ClientError {
  readonly code = 'not_found';
  readonly status = 404;
}

export class MethodNotAllowedError extends ClientError {
  readonly code = 'method_not_allowed';
  readonly status = 405;
  constructor(readonly allow: string) {
    super(`Only ${allow} is allowed here.`);
  }
}

/**
 * 502: the IdP answered, and refused (invalid_client, access_denied, invalid_scope, ...).
 * `code` carries the IdP's OAuth error so operators and callers can tell a rotated secret from
 * a missing client grant; the IdP's own description goes to the log only.
 */
export class IdpRejectedError extends VendorError {
  readonly status = 502;
  constructor(
    readonly code: string,
    readonly idpStatus: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
  get publicDescription(): string {
    return `The identity provider refused to issue the token (${this.code}).`;
  }
}

/** 502: the IdP answered 2xx with something that is not a usable token (bad shape, bad signature, wrong aud). */
export class InvalidTokenResponseError extends VendorError {
  readonly code = 'server_error';
  readonly status = 502;
  readonly publicDescription = 'The identity provider returned an invalid token response.';
}

/**
 * 503 + Retry-After: the IdP cannot be reached, timed out or answered 5xx. Transient: worth a
 * retry within the fetch deadline.
 */
export class IdpUnavailableError extends VendorError {
  readonly code = 'temporarily_unavailable';
  readonly status = 503;
  readonly publicDescription: string = 'The identity provider is unavailable. Retry later.';
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** 503: the IdP answered 429 (rate limit or quota). Never retried at once: the fleet backs off. */
export class IdpRateLimitedError extends IdpUnavailableError {
  override readonly publicDescription = 'The identity provider is rate limiting token requests. Retry later.';
}

/** 503: the fleet is backing off from the IdP for this client (after a 429 or repeated failures). */
export class IdpBackoffError extends IdpUnavailableError {
  override readonly publicDescription = 'Token requests to the identity provider are paused. Retry later.';
}

/** 503: the quota guard's cap on IdP fetches for this client this hour is reached. */
export class QuotaGuardError extends IdpUnavailableError {
  override readonly publicDescription = 'The hourly cap on new tokens for this client is reached. Retry later.';
}

/** 503 + Retry-After: another instance holds the fetch lease and its token did not arrive in time. */
export class LeaseTimeoutError extends VendorError {
  readonly code = 'temporarily_unavailable';
  readonly status = 503;
  readonly publicDescription = 'A token is being fetched. Retry shortly.';
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message);
  }
}

/** 503: the shared cache (DynamoDB) failed. Transient by nature (throttling, outage). */
export class StoreUnavailableError extends VendorError {
  readonly code = 'temporarily_unavailable';
  readonly status = 503;
  readonly publicDescription = 'The token cache is unavailable. Retry later.';
  readonly retryAfterSeconds = 1;
}

/** 500: the function's own set-up is wrong (bad secret JSON, missing secret). Never the caller's fault. */
export class ConfigurationError extends VendorError {
  readonly code = 'server_error';
  readonly status = 500;
  readonly publicDescription = 'Internal error.';
  constructor(
    message: string,
    options?: { cause?: unknown },
    /** the thing configured does not exist (e.g. no AWSPENDING version) */
    readonly notFound = false,
  ) {
    super(message, options);
  }
}

/** Retry-After, for the errors that have one. */
export function retryAfterOf(error: VendorError): number | undefined {
  return 'retryAfterSeconds' in error && typeof error.retryAfterSeconds === 'number'
    ? error.retryAfterSeconds
    : undefined;
}

/** An error's name and message, for logs: never the object itself (it may carry a request). */
export function describe(error: unknown): { name: string; message: string; code?: string } {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return { name: error.name, message: error.message, ...(typeof code === 'string' ? { code } : {}) };
  }
  // Not an Error: its type only, since its contents are unknown (jose's claim errors carry the payload as cause).
  return { name: 'NonError', message: typeof error };
}
