/**
 * Reading the vendor's answers, the same for both transports: a token body (RFC 6749 §5.1) or an
 * OAuth error body (§5.2). Nothing here quotes a body that may hold a token.
 */
import { ClientErrorCode, TokenVendorError } from './errors.js';
import type { VendedToken } from './types.js';

/** Enough of an error description to diagnose, not enough to carry a stray payload into logs. */
const MAX_DESCRIPTION_CHARS = 300;
/** An OAuth error code as RFC 6749 §5.2 allows it (%x20-21 / %x23-5B / %x5D-7E), bounded. */
const OAUTH_ERROR = /^[\x20-\x7e]{1,64}$/;

/** Validate a token body; the message never quotes the body, which may hold a token. */
export function parseTokenResponse(status: number, text: string, requestedScope: string, receivedAt: number): VendedToken {
  return tokenFromBody(status, parseJson(text), requestedScope, receivedAt);
}

/** {@link parseTokenResponse} for a body already parsed. */
export function tokenFromBody(status: number, body: unknown, requestedScope: string, receivedAt: number): VendedToken {
  const invalid = (why: string): TokenVendorError =>
    new TokenVendorError(`The token vendor answered ${status} with an invalid token response: ${why}.`, {
      status,
      code: ClientErrorCode.invalidResponse,
    });
  if (!isRecord(body)) throw invalid('not a JSON object');
  if (typeof body.access_token !== 'string' || body.access_token === '') throw invalid('access_token is missing');
  // RFC 6749 §5.1: token_type is case-insensitive.
  if (typeof body.token_type !== 'string' || body.token_type.toLowerCase() !== 'bearer') throw invalid('token_type is not Bearer');
  const expiresIn = body.expires_in;
  if (typeof expiresIn !== 'number' || !Number.isSafeInteger(expiresIn) || expiresIn <= 0) {
    throw invalid('expires_in is not a positive integer');
  }
  if (body.scope !== undefined && typeof body.scope !== 'string') throw invalid('scope is not a string');
  return Object.freeze({
    accessToken: body.access_token,
    tokenType: 'Bearer',
    // RFC 6749 §5.1: an absent scope means the one requested.
    scope: typeof body.scope === 'string' ? body.scope : requestedScope,
    // expires_in is "seconds left now" at the vendor: count it from when the answer arrived.
    expiresAt: receivedAt + expiresIn * 1000,
  });
}

/** The OAuth `error` of a body, when it has a usable one. */
export function oauthErrorCode(body: unknown): string | undefined {
  return isRecord(body) && typeof body.error === 'string' && OAUTH_ERROR.test(body.error) ? body.error : undefined;
}

/**
 * The error for a refusal: `code` is the vendor's OAuth error, or `http_error` when the body has
 * none (a proxy's page, an empty body).
 */
export function vendorRefusal(status: number, body: unknown, retryAfterSeconds: number | undefined): TokenVendorError {
  const code = oauthErrorCode(body) ?? ClientErrorCode.httpError;
  const description = isRecord(body) && typeof body.error_description === 'string' ? printable(body.error_description) : undefined;
  const message = `The token vendor answered ${status} ${code}${description === undefined ? '' : `: ${description}`}`;
  return new TokenVendorError(message, { status, code, ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }) });
}

/** RFC 9110 §10.2.3: delay-seconds or an HTTP-date; `undefined` when absent or unreadable. */
export function parseRetryAfter(value: string | null, nowMs: number): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - nowMs) / 1000));
}

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Control characters out, length bounded: safe to put in a message that reaches a log. */
export function printable(text: string, max = MAX_DESCRIPTION_CHARS): string {
  // eslint-disable-next-line no-control-regex -- stripping control characters is the point
  const clean = text.replace(/[\u0000-\u001f\u007f]/g, ' ');
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}
