/**
 * Parsing what a caller sent into a vend request. Shared by the API Gateway and the direct
 * invocation paths so both accept exactly the same body.
 */
import { InvalidRequestError } from '../core/errors.js';

/** Larger bodies are refused before parsing: a real request is well under 1 KB. */
export const MAX_BODY_BYTES = 4096;
const MAX_AUDIENCE_LENGTH = 600;
const MAX_SCOPE_LENGTH = 2048;
const ALLOWED_FIELDS = new Set(['audience', 'scope']);

export interface VendBody {
  readonly audience: string;
  readonly scope?: string | undefined;
}

/** Validate an already-parsed body (direct invocation, or JSON from the API). */
export function parseVendBody(doc: unknown): VendBody {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new InvalidRequestError('The body must be a JSON object: {"audience": "...", "scope": "..."}.');
  }
  const unknownFields = Object.keys(doc).filter((k) => !ALLOWED_FIELDS.has(k));
  if (unknownFields.length > 0) {
    throw new InvalidRequestError(`Unknown field ${unknownFields.map((f) => JSON.stringify(f.slice(0, 40))).join(', ')}; allowed: audience, scope.`);
  }
  const { audience, scope } = doc as Record<string, unknown>;
  if (audience === undefined) throw new InvalidRequestError('audience is required.');
  if (typeof audience !== 'string' || audience.trim() === '') throw new InvalidRequestError('audience must be a non-empty string.');
  if (audience.length > MAX_AUDIENCE_LENGTH) throw new InvalidRequestError(`audience must be at most ${MAX_AUDIENCE_LENGTH} characters.`);
  if (scope !== undefined && typeof scope !== 'string') throw new InvalidRequestError('scope must be a string of space-separated scopes.');
  if (scope !== undefined && scope.length > MAX_SCOPE_LENGTH) throw new InvalidRequestError(`scope must be at most ${MAX_SCOPE_LENGTH} characters.`);
  return { audience, scope };
}

/** Decode and parse an API Gateway body (possibly base64) as a vend request. */
export function parseHttpBody(body: unknown, isBase64Encoded: boolean | undefined, contentType: string | undefined): VendBody {
  if (contentType !== undefined && !/^application\/json\s*(;|$)/i.test(contentType.trim())) {
    throw new InvalidRequestError('Content-Type must be application/json.');
  }
  if (body === null || body === undefined || body === '') {
    throw new InvalidRequestError('A JSON body is required: {"audience": "...", "scope": "..."}.');
  }
  if (typeof body !== 'string') throw new InvalidRequestError('The body must be a JSON text.');
  // Checked before decoding, so an oversized body costs nothing to refuse (a UTF-8 string has
  // at least as many bytes as characters; base64 is 4 characters per 3 bytes).
  if (body.length > (isBase64Encoded === true ? Math.ceil(MAX_BODY_BYTES / 3) * 4 : MAX_BODY_BYTES)) {
    throw new InvalidRequestError(`The body must be at most ${MAX_BODY_BYTES} bytes.`);
  }
  let bytes: Buffer;
  if (isBase64Encoded === true) {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) throw new InvalidRequestError('The body is marked base64 but is not valid base64.');
    bytes = Buffer.from(body, 'base64');
  } else {
    bytes = Buffer.from(body, 'utf8');
  }
  if (bytes.length > MAX_BODY_BYTES) throw new InvalidRequestError(`The body must be at most ${MAX_BODY_BYTES} bytes.`);
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new InvalidRequestError('The body is not valid JSON.');
  }
  return parseVendBody(doc);
}
