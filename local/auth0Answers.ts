/**
 * Auth0's answers on the wire, as docs/auth0-wire-behaviour.md records them: the exact bodies,
 * statuses and headers the local tenant (auth0Tenant.ts) sends, and the switches among the
 * plausible answers where the doc says Auth0's behaviour is unknown. Every wording here cites its
 * section of that doc (`§n`); change the doc first, then this file.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import type { QuotaBucket, RateLimitState } from './auth0Limits.js';

// ---------------------------------------------------------------------------------------------
// Switches among the plausible answers (the doc's "unknown" cases); the first value is the default.

/**
 * §1, §2: a wrong secret or an unknown client. 'access_denied' = `401 {"error":"access_denied",
 * "error_description":"Unauthorized"}` (confirmed); 'invalid_client' = `401 {"error":"invalid_client",
 * "error_description":"Client authentication failed"}` (Auth0's OAS example); 'plain-text' = `401`
 * with the bare body `Unauthorized` and no Content-Type (auth0/laravel-auth0#42).
 */
export type RefusedCredentialAnswer = 'access_denied' | 'invalid_client' | 'plain-text';

/**
 * §7: a refused private_key_jwt client assertion (bad signature, unknown kid, reused jti, expired,
 * wrong aud, lifetime over 5 minutes, over 2048 bytes). 'access_denied' = §1's answer (most
 * likely); 'invalid_client' = `401 invalid_client`; 'invalid_request' = `400 invalid_request`.
 */
export type AssertionFailureAnswer = 'access_denied' | 'invalid_client' | 'invalid_request';

/**
 * §10: no (or a blank) `audience`. 'access_denied' = `403 access_denied` "No audience parameter
 * was provided, …" (confirmed body); 'opaque-token' = `200` with an opaque access token and no
 * `scope` (legacy tenants); 'apiv1-refused' = `403 access_denied` "Non-global clients are not
 * allowed access to APIv1"; `{ defaultAudience }` = a token for the tenant's default audience
 * (checked against the client grant like any audience).
 */
export type MissingAudienceAnswer = 'access_denied' | 'opaque-token' | 'apiv1-refused' | { defaultAudience: string };

/**
 * §8: the tenant-wide 429. All carry `X-RateLimit-*`. 'documented' = the message of
 * `api/authentication.mdx`, no Retry-After; 'oas' = the OAS example's message, no Retry-After;
 * 'retry-after' = the documented message plus `Retry-After`; 'custom-policy' = the per-application
 * policy's answer: "Rate limit exceeded." with `Retry-After` and `Auth0-RateLimit`.
 */
export type RateLimitAnswer = 'documented' | 'oas' | 'retry-after' | 'custom-policy';

/** §6: whether the disabled grant type is refused after client authentication (default) or before it. */
export type GrantTypeCheck = 'after-authentication' | 'before-authentication';

/**
 * §13: during the propagation window after rotate-secret. 'neither' = the new secret is not
 * accepted yet and the old one already refused (the worst case); 'old-or-new' = the documented
 * one: per request, either the old or the new secret is accepted (picked at random).
 */
export type SecretPropagation = 'neither' | 'old-or-new';

/** §9: a quota with `enforce: false` past its limit reports `r=0` ('clamp') or a negative `r` ('negative'). */
export type UnenforcedQuotaRemaining = 'clamp' | 'negative';

/**
 * §12: 'when-asked' = gzip a success body when the request's Accept-Encoding allows gzip
 * (confirmed by recording), never otherwise; 'always' = gzip success bodies even against
 * `Accept-Encoding: identity` (the case the vendor must refuse or inflate under its cap); 'never'.
 */
export type Compression = 'when-asked' | 'always' | 'never';

/**
 * §14 (unknown): how a client_credentials request whose `organization` the client grant refuses is
 * answered. 'invalid_request' = `400 invalid_request`, the error Auth0 gives every refused
 * `organization` parameter on /authorize (confirmed there); 'access_denied' = `403 access_denied`,
 * the error of every other client-grant refusal of this grant (§3, §4). The description is the same.
 */
export type OrganizationRefusalAnswer = 'invalid_request' | 'access_denied';

/**
 * §14: 'enforced' = the `organization` parameter follows M2M Access for Organizations (every tenant
 * after the 2025-06-12 rollout); 'ignored' = the parameter is an unrecognised one and the token has
 * no organization (tenants before that rollout, auth0/auth0-python#620).
 */
export type OrganizationParameter = 'enforced' | 'ignored';

// ---------------------------------------------------------------------------------------------
// Wordings

/** §1, §2 */
export const UNAUTHORIZED = 'Unauthorized';
/** §1 plausible answer (b): the OAS example */
export const CLIENT_AUTHENTICATION_FAILED = 'Client authentication failed';
/** §7 plausible answer (c): the wording is unknown; this one names the parameter */
export const INVALID_CLIENT_ASSERTION = 'Invalid client_assertion';

/** §3, current wording */
export function noClientGrant(audience: string): string {
  return `Client is not authorized to access "${audience}". You need to create a "client-grant" associated to this API.`;
}

/** §4: refused, not dropped; several scopes joined with ", " (the separator is unknown) */
export function scopesNotGranted(scopes: readonly string[]): string {
  return `Client has not been granted scopes: ${scopes.join(', ')}`;
}

/** §5 */
export function serviceNotEnabled(audience: string): string {
  return `Service not enabled within domain: ${audience}`;
}

/** §6 */
export function grantTypeNotAllowed(grantType: string): string {
  return `Grant type '${grantType}' not allowed for the client.`;
}
/** §6 */
export const GRANT_TYPES_ERROR_URI = 'https://auth0.com/docs/clients/client-grant-types';

/** §10 (a) */
export const NO_AUDIENCE = 'No audience parameter was provided, and no default audience has been configured';
/** §10 (c) */
export const APIV1_REFUSED = 'Non-global clients are not allowed access to APIv1';

/** §8 */
export const RATE_LIMITED = 'Too many requests. Check the X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset headers.';
/** §8, the OAS example */
export const RATE_LIMITED_OAS = 'Rate limit exceeded. Please retry after some time.';
/** §8, custom per-application rate-limit policies */
export const RATE_LIMITED_CUSTOM_POLICY = 'Rate limit exceeded.';

/** §9 */
export const CLIENT_QUOTA_EXCEEDED = 'Client quota exceeded';
/** §9, §14: unknown; "probably" this */
export const ORGANIZATION_QUOTA_EXCEEDED = 'Organization quota exceeded';

/** §14: `organization` missing where the client grant requires one (the /authorize wording, confirmed there) */
export const ORGANIZATION_REQUIRED = 'parameter organization is required for this client';
/** §14: `organization` sent where the client grant denies organizations (unknown; the stand-in's wording) */
export const ORGANIZATION_NOT_ALLOWED = 'parameter organization is not allowed for this client';
/** §14: a name while the tenant does not allow names (/authorize's confirmed wording without "authorization request ") */
export const ORGANIZATION_MUST_BE_ID = 'parameter organization must be an organization id';

/** §14: an unknown organization, or one the client grant may not use (the /authorize wording, documented there) */
export function organizationInvalid(organization: string): string {
  return `parameter organization is invalid: ${organization}`;
}

/** §11: a failing client-credentials Hook or Action (confirmed) */
export const ACTION_ERROR = 'Script generated an unhandled asynchronous exception.';

/** §13: the Management API's 429 (auth0-extensions/auth0-reset-tenant#31) */
export const MANAGEMENT_GLOBAL_LIMIT = 'Global limit has been reached';

// ---------------------------------------------------------------------------------------------
// Answers

/** A complete answer: status, headers, body. */
export interface WireAnswer {
  status: number;
  headers: OutgoingHttpHeaders;
  body: Buffer;
}

const JSON_TYPE = 'application/json; charset=utf-8';

export function jsonAnswer(status: number, body: unknown, headers: OutgoingHttpHeaders = {}): WireAnswer {
  return { status, headers: { 'content-type': JSON_TYPE, ...headers }, body: Buffer.from(JSON.stringify(body)) };
}

/** An `/oauth/token` error: `{"error", "error_description", …extra}`. */
export function oauthError(status: number, error: string, description: string, extra: Record<string, string> = {}): WireAnswer {
  return jsonAnswer(status, { error, error_description: description, ...extra });
}

/** §1, §2: a refused credential, as the switch says. */
export function refusedCredentialAnswer(answer: RefusedCredentialAnswer): WireAnswer {
  switch (answer) {
    case 'access_denied':
      return oauthError(401, 'access_denied', UNAUTHORIZED);
    case 'invalid_client':
      return oauthError(401, 'invalid_client', CLIENT_AUTHENTICATION_FAILED);
    case 'plain-text':
      // laravel-auth0#42: `'result' => 'Unauthorized', 'content_type' => false`.
      return { status: 401, headers: {}, body: Buffer.from(UNAUTHORIZED) };
  }
}

/** §7: a refused client assertion, as the switch says. */
export function assertionFailureAnswer(answer: AssertionFailureAnswer): WireAnswer {
  switch (answer) {
    case 'access_denied':
      return refusedCredentialAnswer('access_denied');
    case 'invalid_client':
      return oauthError(401, 'invalid_client', CLIENT_AUTHENTICATION_FAILED);
    case 'invalid_request':
      return oauthError(400, 'invalid_request', INVALID_CLIENT_ASSERTION);
  }
}

/** §8: `X-RateLimit-*` of the tenant's bucket, on every answer. */
export function rateLimitHeaders(state: RateLimitState): Record<string, string> {
  return {
    'x-ratelimit-limit': String(state.limit),
    'x-ratelimit-remaining': String(state.remaining),
    'x-ratelimit-reset': String(state.reset),
  };
}

/** §8: the tenant-wide 429, as the switch says. */
export function rateLimitedAnswer(answer: RateLimitAnswer, state: RateLimitState): WireAnswer {
  const headers = rateLimitHeaders(state);
  const retryAfter = { 'retry-after': String(state.retryAfter) };
  switch (answer) {
    case 'documented':
      return { ...oauthError(429, 'too_many_requests', RATE_LIMITED), headers: { ...oauthErrorHeaders(), ...headers } };
    case 'oas':
      return { ...oauthError(429, 'too_many_requests', RATE_LIMITED_OAS), headers: { ...oauthErrorHeaders(), ...headers } };
    case 'retry-after':
      return { ...oauthError(429, 'too_many_requests', RATE_LIMITED), headers: { ...oauthErrorHeaders(), ...headers, ...retryAfter } };
    case 'custom-policy':
      return {
        ...oauthError(429, 'too_many_requests', RATE_LIMITED_CUSTOM_POLICY),
        headers: {
          ...oauthErrorHeaders(),
          ...headers,
          ...retryAfter,
          // custom-rate-limit-policies.mdx: `Auth0-RateLimit: client;q=10;t=1;r=9`
          'auth0-ratelimit': `client;q=${state.limit};t=${state.retryAfter};r=0`,
        },
      };
  }
}

function oauthErrorHeaders(): OutgoingHttpHeaders {
  return { 'content-type': JSON_TYPE };
}

/** §9: `b=per_hour;q=10;r=7;t=3540,b=per_day;q=50;r=47;t=43200`. */
export function quotaHeader(buckets: readonly QuotaBucket[], remaining: UnenforcedQuotaRemaining): string {
  return buckets
    .map((bucket) => `b=${bucket.name};q=${bucket.quota};r=${remaining === 'clamp' ? Math.max(0, bucket.remaining) : bucket.remaining};t=${bucket.resetsIn}`)
    .join(',');
}

/**
 * §9: the headers of a quota 429: the quota's own `X-RateLimit-*` ("The configured limit for the
 * quota", "Set to zero", "A UNIX timestamp (in seconds)") and `Retry-After` ("seconds until the
 * quota resets").
 */
export function quotaRefusalHeaders(bucket: QuotaBucket): Record<string, string> {
  return {
    'x-ratelimit-limit': String(bucket.quota),
    'x-ratelimit-remaining': '0',
    'x-ratelimit-reset': String(bucket.resetAt),
    'retry-after': String(bucket.resetsIn),
  };
}

/** §12: whether an Accept-Encoding value allows gzip (a `q=0` refuses it). */
export function acceptsGzip(acceptEncoding: string | undefined): boolean {
  if (acceptEncoding === undefined) return false;
  for (const item of acceptEncoding.split(',')) {
    const [coding = '', ...params] = item.split(';').map((part) => part.trim().toLowerCase());
    if (coding !== 'gzip' && coding !== 'x-gzip' && coding !== '*') continue;
    const q = params.find((param) => param.startsWith('q='));
    if (q === undefined || Number(q.slice(2)) > 0) return true;
  }
  return false;
}

/** §12: Auth0's success body and key order; `scope` only when scopes were granted. */
export function successBody(accessToken: string, expiresIn: number, scope: string, tokenType: string): Record<string, unknown> {
  return { access_token: accessToken, expires_in: expiresIn, ...(scope ? { scope } : {}), token_type: tokenType };
}

// ---------------------------------------------------------------------------------------------
// Injected faults (§11)

/**
 * What the tenant's `setFault` takes: 'hang' = never answer until close (or until the client
 * aborts); 'drop' = destroy the socket; an object = that answer (a string body is sent as is,
 * anything else as JSON). null = normal.
 */
export type TokenFault = null | 'hang' | 'drop' | { status: number; body: unknown; headers?: Record<string, string> };

/**
 * §11's 5xx answers. 'action-error' = `500 server_error` from a failing Hook or Action (confirmed,
 * deterministic); the edge answers are unknown, so each plausible one: 'edge-html' (an HTML page),
 * 'edge-empty' (no body), 'edge-json' (`server_error` JSON).
 */
export type ServerErrorKind = 'action-error' | 'edge-html' | 'edge-empty' | 'edge-json';

/** A `setFault` value for one of §11's 5xx answers; `retryAfterSeconds` adds `Retry-After` (unknown whether Auth0 sends it). */
export function auth0ServerError(kind: ServerErrorKind, options: { status?: number; retryAfterSeconds?: number } = {}): Exclude<TokenFault, null | 'hang' | 'drop'> {
  const retryAfter: Record<string, string> = options.retryAfterSeconds === undefined ? {} : { 'retry-after': String(options.retryAfterSeconds) };
  switch (kind) {
    case 'action-error':
      return { status: options.status ?? 500, body: { error: 'server_error', error_description: ACTION_ERROR }, headers: retryAfter };
    case 'edge-html':
      return {
        status: options.status ?? 502,
        body: '<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>',
        headers: { 'content-type': 'text/html', ...retryAfter },
      };
    case 'edge-empty':
      return { status: options.status ?? 503, body: '', headers: retryAfter };
    case 'edge-json':
      return { status: options.status ?? 503, body: { error: 'server_error', error_description: 'Service Unavailable' }, headers: retryAfter };
  }
}
