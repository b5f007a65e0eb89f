/**
 * The vendor's error hierarchy. Every error a caller can see is one of these. Each class has two
 * codes, kept apart on purpose:
 * - `code`: internal, stable and unique per class (as jose's `ERR_JWT_EXPIRED`): what logs,
 *   metrics and alarms use, so a dashboard tells a rate limit from a quota trip from a lease
 *   timeout although all three are `temporarily_unavailable` on the wire;
 * - `oauthError`: the OAuth `error` the caller receives (RFC 6749 §5.2 where one fits).
 * Adapters translate SDK and HTTP failures into these where they enter (as Powertools'
 * idempotency layer turns `ConditionalCheckFailedException` into its own errors); the handler
 * maps them to responses in one place and exposes details only below 500 (middy's
 * `expose = statusCode < 500`).
 */
export abstract class VendorError extends Error {
  /** internal, stable, unique per class: logs and metrics */
  abstract readonly code: string;
  /** the `error` field of the response body */
  abstract readonly oauthError: string;
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
  readonly code = 'ERR_INVALID_REQUEST';
  readonly oauthError = 'invalid_request';
  readonly status = 400;
}

/** 403: no caller identity, or the caller is not granted the audience or a scope. */
export class AccessDeniedError extends ClientError {
  readonly code = 'ERR_ACCESS_DENIED';
  readonly oauthError = 'access_denied';
  readonly status = 403;
}

/**
 * 403: the identity proof is missing or malformed, or made for another request, deployment, host
 * or time (functions/core/identityProof.ts). Refused before any call to STS.
 */
export class IdentityProofError extends ClientError {
  readonly code: string = 'ERR_PROOF_INVALID';
  readonly oauthError = 'access_denied';
  readonly status = 403;
}

/** 403: STS refused the proof (a bad signature, an unknown or expired key), or proved a principal the request did not name. */
export class ProofRefusedError extends IdentityProofError {
  override readonly code = 'ERR_PROOF_REFUSED';
}

/** 404 / 405: the route does not exist. */
export class NotFoundError extends ClientError {
  readonly code = 'ERR_NOT_FOUND';
  readonly oauthError = 'not_found';
  readonly status = 404;
}

export class MethodNotAllowedError extends ClientError {
  readonly code = 'ERR_METHOD_NOT_ALLOWED';
  readonly oauthError = 'method_not_allowed';
  readonly status = 405;
  constructor(readonly allow: string) {
    super(`Only ${allow} is allowed here.`);
  }
}

/**
 * 502: the IdP answered, and refused (invalid_client, access_denied, invalid_scope, ...). The
 * wire `error` carries the IdP's OAuth error so operators and callers can tell a rotated secret
 * from a missing client grant; the IdP's own description goes to the log only.
 */
export class IdpRejectedError extends VendorError {
  readonly code: string = 'ERR_IDP_REJECTED';
  readonly status = 502;
  constructor(
    /** the IdP's OAuth `error` (validated by the adapter: `[a-z0-9_]{1,64}`) */
    readonly idpError: string,
    readonly idpStatus: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
  get oauthError(): string {
    return this.idpError;
  }
  get publicDescription(): string {
    return `The identity provider refused to issue the token (${this.idpError}).`;
  }
}

/**
 * 502: the IdP refused the client's credentials: a 401 from `/oauth/token`, whatever its `error`
 * says. Auth0 answers a wrong or rotated secret `401 access_denied "Unauthorized"`, and may answer
 * `invalid_client` (docs/auth0-wire-behaviour.md §1, §2): the vendor must not depend on which.
 */
export class IdpCredentialRefusedError extends IdpRejectedError {
  override readonly code = 'ERR_IDP_CREDENTIAL_REFUSED';
}

/**
 * 502: the IdP refused the audience or a scope although the grants file allows it: the grants
 * and Auth0's client grant disagree (a 403 `access_denied`, docs/auth0-wire-behaviour.md §3-§5).
 * An operator must fix one or the other; meanwhile the refusal is remembered briefly, so callers
 * cannot spend the quota asking again.
 */
export class IdpGrantMismatchError extends IdpRejectedError {
  override readonly code: string = 'ERR_IDP_GRANT_MISMATCH';
  override get publicDescription(): string {
    return `The identity provider does not grant this client the audience or scope asked for (${this.idpError}); the token vendor's grants and the identity provider's client grant disagree.`;
  }
}

/**
 * 502: the IdP refused the organization a request named: Auth0's client grant does not allow it
 * (organization_usage, associations; docs/auth0-wire-behaviour.md §14.7). No public source shows
 * Auth0's exact answer in this grant, so a 400 `invalid_request` or 403 `access_denied` to a
 * request that names an organization is read as this, by status and `error` alone (never the
 * description, §14); it is remembered per organization, like a grant mismatch, and never taken for
 * a refused credential.
 */
export class IdpOrganizationRefusedError extends IdpGrantMismatchError {
  override readonly code = 'ERR_IDP_ORGANIZATION_REFUSED';
  override get publicDescription(): string {
    return `The identity provider does not grant this client the organization asked for (${this.idpError}); the token vendor's grants and the identity provider's client grant disagree.`;
  }
}

/**
 * The refusal a status and OAuth `error` from the IdP's token endpoint mean (translated at the
 * adapter): 401 is a refused credential whatever the `error`, and so is `invalid_client`; a 403
 * `access_denied` or `invalid_scope` is a client grant that does not cover the request.
 */
export function idpRefusal(idpError: string, idpStatus: number, message: string, organizationNamed = false): IdpRejectedError {
  if (idpStatus === 401 || idpError === 'invalid_client') return new IdpCredentialRefusedError(idpError, idpStatus, message);
  if (organizationNamed && ((idpStatus === 400 && idpError === 'invalid_request') || (idpStatus === 403 && idpError === 'access_denied'))) {
    return new IdpOrganizationRefusedError(idpError, idpStatus, message);
  }
  if (idpStatus === 403 && (idpError === 'access_denied' || idpError === 'invalid_scope')) return new IdpGrantMismatchError(idpError, idpStatus, message);
  return new IdpRejectedError(idpError, idpStatus, message);
}

/** 502: the IdP answered 2xx with something that is not a usable token (bad shape, bad signature, wrong aud). */
export class InvalidTokenResponseError extends VendorError {
  readonly code: string = 'ERR_IDP_INVALID_RESPONSE';
  readonly oauthError = 'server_error';
  readonly status = 502;
  readonly publicDescription = 'The identity provider returned an invalid token response.';
}

/**
 * 502: the IdP issued a token for another organization than the request's, or for one where none
 * was asked (a default organization, §14.5), or none where one was (a tenant ignoring the
 * parameter, §14.8). Never cached; remembered for the request like a grant mismatch, so that
 * asking again does not mint (and charge) another useless token.
 */
export class IdpOrganizationMismatchError extends InvalidTokenResponseError {
  override readonly code = 'ERR_IDP_ORGANIZATION_MISMATCH';
}

/** A 503 that tells the caller when to come back. */
abstract class UnavailableError extends VendorError {
  readonly oauthError = 'temporarily_unavailable';
  readonly status = 503;
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * 503 + Retry-After: the IdP cannot be reached, timed out or answered 5xx. Transient: worth a
 * retry within the fetch deadline. Its subclasses are the IdP being unavailable *to us* for a
 * reason of its own (rate limit) or ours (back-off, quota guard).
 */
export class IdpUnavailableError extends UnavailableError {
  readonly code: string = 'ERR_IDP_UNAVAILABLE';
  readonly publicDescription: string = 'The identity provider is unavailable. Retry later.';
}

/** 503: the IdP answered 429 (rate limit or quota). Never retried at once: the fleet backs off. */
export class IdpRateLimitedError extends IdpUnavailableError {
  override readonly code: string = 'ERR_IDP_RATE_LIMITED';
  override readonly publicDescription: string = 'The identity provider is rate limiting token requests. Retry later.';
}

/**
 * 503: Auth0 answered 429 because one organization's M2M quota is used up, not the client's
 * (`Auth0-Organization-Quota-Limit` with nothing left: docs/auth0-wire-behaviour.md §9, §14.9).
 * The fleet pauses that organization only.
 */
export class IdpOrganizationQuotaError extends IdpRateLimitedError {
  override readonly code = 'ERR_IDP_ORGANIZATION_QUOTA';
  override readonly publicDescription = 'The identity provider\'s token quota for this organization is used up. Retry later.';
  constructor(
    message: string,
    retryAfterSeconds: number,
    /** the organization asked for; none when the IdP applied a default organization (§14.5) */
    readonly organization: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, retryAfterSeconds, options);
  }
}

/** 503: the fleet is backing off from the IdP for this client (after a 429 or repeated failures). */
export class IdpBackoffError extends IdpUnavailableError {
  override readonly code = 'ERR_IDP_BACKOFF';
  override readonly publicDescription = 'Token requests to the identity provider are paused. Retry later.';
}

/** 503: the quota guard's cap on IdP fetches for this client this hour is reached. */
export class QuotaGuardError extends IdpUnavailableError {
  override readonly code = 'ERR_QUOTA_GUARD';
  override readonly publicDescription = 'The hourly cap on new tokens for this client is reached. Retry later.';
}

/**
 * 429 + Retry-After: this caller has caused its hourly share of IdP fetches (new tokens it asked
 * for that no one held). Other callers of the same client are not affected: the budget is the
 * caller's own.
 */
export class CallerQuotaError extends VendorError {
  readonly code = 'ERR_CALLER_QUOTA';
  readonly oauthError = 'too_many_requests';
  readonly status = 429;
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
    /** whose budget it is: a caller who only joined that caller's fetch is not refused by it */
    readonly caller: string,
  ) {
    super(message);
  }
  get publicDescription(): string {
    return 'You have asked for more new tokens this hour than your share allows (each distinct audience and scope set you ask for costs one). Reuse the tokens you have, or retry later.';
  }
}

/**
 * 503 + Retry-After: STS could not prove the caller's identity (unreachable, timed out, throttled,
 * 5xx); `ERR_STS_BAD_ANSWER` when it answered 200 with something that is not a caller identity.
 */
export class StsUnavailableError extends UnavailableError {
  readonly code: string = 'ERR_STS_UNAVAILABLE';
  readonly publicDescription = 'The caller\'s identity cannot be verified right now (AWS STS). Retry shortly.';
}

export class StsBadAnswerError extends StsUnavailableError {
  override readonly code = 'ERR_STS_BAD_ANSWER';
}

/** 503 + Retry-After: another instance holds the fetch lease and its token did not arrive in time. */
export class LeaseTimeoutError extends UnavailableError {
  readonly code = 'ERR_LEASE_TIMEOUT';
  readonly publicDescription = 'A token is being fetched. Retry shortly.';
}

/** 503: the shared cache (DynamoDB, or KMS for its seal) failed. Transient by nature (throttling, outage). */
export class StoreUnavailableError extends UnavailableError {
  readonly code = 'ERR_STORE_UNAVAILABLE';
  readonly publicDescription = 'The token cache is unavailable. Retry later.';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 1, options);
  }
}

/**
 * 500: the function's own set-up is wrong: a missing or malformed variable (`variable` names it),
 * a bad grants file, a secret that is missing or malformed. Never the caller's fault; at cold
 * start it fails the start with a message naming what to fix.
 */
export class ConfigError extends VendorError {
  readonly code = 'ERR_CONFIG';
  readonly oauthError = 'server_error';
  readonly status = 500;
  readonly publicDescription = 'Internal error.';
  /** the environment variable at fault, when there is one */
  readonly variable: string | undefined;
  /** the thing configured does not exist (e.g. no AWSPENDING version) */
  readonly notFound: boolean;

  constructor(message: string, options: { cause?: unknown; variable?: string; notFound?: boolean } = {}) {
    super(options.variable === undefined ? message : `${options.variable}: ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.variable = options.variable;
    this.notFound = options.notFound ?? false;
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
