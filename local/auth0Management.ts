/**
 * Auth0's Management API as the local tenant (auth0Tenant.ts) answers it: the routes and scopes it
 * serves, and Auth0's error shape `{statusCode, error, message, errorCode?, attributes?}`
 * (docs/auth0-wire-behaviour.md §13). The endpoints themselves act on the tenant's live client
 * table and live in auth0Tenant.ts.
 */
import { errors as joseErrors } from 'jose';

export const MANAGEMENT_PREFIX = '/api/v2/';

const HTTP_ERROR_NAMES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
};

/** A Management API error, answered in Auth0's shape `{statusCode, error, message, errorCode?}`. */
export class ManagementError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errorCode?: string,
    /** §13: some 401s carry `attributes` (`{"error": <message>}`) */
    readonly attributes?: Record<string, string>,
  ) {
    super(message);
  }

  toJSON(): Record<string, unknown> {
    return {
      statusCode: this.status,
      error: HTTP_ERROR_NAMES[this.status] ?? 'Error',
      message: this.message,
      ...(this.attributes === undefined ? {} : { attributes: this.attributes }),
      ...(this.errorCode === undefined ? {} : { errorCode: this.errorCode }),
    };
  }
}

export const invalidBody = (detail: string): ManagementError => new ManagementError(400, `Payload validation error: ${detail}`, 'invalid_body');


export type ManagementAction =
  | 'get-client'
  | 'patch-client'
  | 'rotate-secret'
  | 'create-credential'
  | 'list-credentials'
  | 'get-credential'
  | 'delete-credential';

export interface ManagementRoute {
  action: ManagementAction;
  /** the token needs any one of these */
  scopes: readonly string[];
  clientId: string;
  credentialId: string;
}

const READ_CREDENTIALS = ['read:client_keys', 'read:client_credentials'];

/** The Management API endpoint a request is for (see MANAGEMENT_API_SCOPES in auth0Tenant.ts), or undefined. */
export function managementRoute(method: string, pathname: string): ManagementRoute | undefined {
  let segments: string[];
  try {
    segments = pathname.slice(MANAGEMENT_PREFIX.length).split('/').map(decodeURIComponent);
  } catch {
    return undefined;
  }
  const [collection, clientId, sub, credentialId = '', ...rest] = segments;
  if (collection !== 'clients' || !clientId || rest.length > 0) return undefined;
  const route = (action: ManagementAction, scopes: readonly string[]): ManagementRoute => ({ action, scopes, clientId, credentialId });
  if (sub === undefined) {
    if (method === 'GET') return route('get-client', ['read:clients', 'read:client_keys']);
    if (method === 'PATCH') return route('patch-client', ['update:clients', 'update:client_keys']);
  } else if (sub === 'rotate-secret' && segments.length === 3) {
    if (method === 'POST') return route('rotate-secret', ['update:client_keys']);
  } else if (sub === 'credentials' && segments.length === 3) {
    if (method === 'GET') return route('list-credentials', READ_CREDENTIALS);
    if (method === 'POST') return route('create-credential', ['create:client_credentials']);
  } else if (sub === 'credentials' && credentialId !== '') {
    if (method === 'GET') return route('get-credential', READ_CREDENTIALS);
    if (method === 'DELETE') return route('delete-credential', ['delete:client_credentials']);
  }
  return undefined;
}

/** Auth0's messages for a rejected Management API token. */
export function tokenErrorMessage(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'Expired token received for JSON Web Token validation';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'Invalid signature received for JSON Web Token validation';
  if (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'aud') {
    return `Bad audience: ${[err.payload.aud ?? ''].flat().join(' ')}`;
  }
  if (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'iss') return 'Bad issuer';
  return 'Invalid token';
}

export function jsonBody(contentType: string | undefined, raw: Buffer): Record<string, unknown> {
  const mediaType = contentType?.split(';')[0]?.trim().toLowerCase();
  if (mediaType !== 'application/json') throw new ManagementError(415, 'Unsupported Media Type');
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new ManagementError(400, 'Invalid request payload JSON format');
  }
  if (!isObject(parsed)) throw invalidBody('the request body must be a JSON object');
  return parsed;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
