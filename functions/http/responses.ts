/**
 * Turning results and errors into responses, in one place (openid-client's single errorHandler;
 * middy's `expose = statusCode < 500`).
 */
import type { APIGatewayProxyResult } from 'aws-lambda';
import { MethodNotAllowedError, VendorError, retryAfterOf } from '../core/errors.js';

/** RFC 6749 §5.2 error body */
export interface OAuthErrorBody {
  readonly error: string;
  readonly error_description: string;
}

const BASE_HEADERS = {
  'Content-Type': 'application/json',
  // RFC 6749 §5.1: token responses must not be cached by anything in between.
  'Cache-Control': 'no-store',
  Pragma: 'no-cache',
} as const;

export function jsonResponse(statusCode: number, body: unknown, extraHeaders: Record<string, string> = {}): APIGatewayProxyResult {
  return { statusCode, headers: { ...BASE_HEADERS, ...extraHeaders }, body: JSON.stringify(body) };
}

/**
 * The status and body a caller sees for `error`, and the internal `code` that logs and metrics
 * carry; anything unexpected is a generic 500 (`ERR_UNEXPECTED`).
 */
export function errorBody(error: unknown): { status: number; body: OAuthErrorBody; headers: Record<string, string>; code: string } {
  if (error instanceof VendorError) {
    const headers: Record<string, string> = {};
    const retryAfter = retryAfterOf(error);
    if (retryAfter !== undefined) headers['Retry-After'] = String(retryAfter);
    if (error instanceof MethodNotAllowedError) headers.Allow = error.allow;
    return { status: error.status, body: { error: error.oauthError, error_description: error.publicDescription }, headers, code: error.code };
  }
  return { status: 500, body: { error: 'server_error', error_description: 'Internal error.' }, headers: {}, code: 'ERR_UNEXPECTED' };
}
