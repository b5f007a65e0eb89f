/**
 * Parsing what a caller sent into a vend request. Shared by the API Gateway and the direct
 * invocation paths so both accept exactly the same body.
 */
import { InvalidRequestError } from '../core/errors.js';
import { MAX_ORGANIZATION_LENGTH, isOrganization } from '../core/grants.js';

/** Larger bodies are refused before parsing: a real request is well under 1 KB. */
export const MAX_BODY_BYTES = 4096;
const MAX_AUDIENCE_LENGTH = 600;
const MAX_SCOPE_LENGTH = 2048;
/** The API carries the identity proof in a header; a direct invocation in the event itself. */
const API_FIELDS = ['audience', 'scope', 'organization'] as const;
const DIRECT_FIELDS = ['audience', 'scope', 'organization', 'proof'] as const;
// eslint-disable-next-line no-control-regex -- refusing control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;

export interface VendBody {
  readonly audience: string;
  readonly scope?: string | undefined;
  /** an Auth0 organization id (`org_…`) or name (issue 12); bound into the identity proof */
  readonly organization?: string | undefined;
}

/** A direct invocation: the request and its identity proof (docs/identity-proof.md). */
export interface DirectBody extends VendBody {
  readonly proof?: unknown;
}

/** Validate a direct invocation's event: `{"audience", "scope", "proof"}`. */
export function parseDirectBody(doc: unknown): DirectBody {
  const body = parseVendBody(doc, DIRECT_FIELDS);
  return { ...body, proof: (doc as Record<string, unknown>).proof };
}

/** Validate an already-parsed body (JSON from the API, or a direct invocation's event). */
export function parseVendBody(doc: unknown, allowed: readonly string[] = API_FIELDS): VendBody {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new InvalidRequestError('The body must be a JSON object: {"audience": "...", "scope": "..."}.');
  }
  const unknownFields = Object.keys(doc).filter((k) => !allowed.includes(k));
  if (unknownFields.length > 0) {
    throw new InvalidRequestError(`Unknown field ${unknownFields.map((f) => JSON.stringify(f.slice(0, 40))).join(', ')}; allowed: ${allowed.join(', ')}.`);
  }
  const { audience, scope, organization } = doc as Record<string, unknown>;
  if (audience === undefined) throw new InvalidRequestError('audience is required.');
  if (typeof audience !== 'string' || audience.trim() === '') throw new InvalidRequestError('audience must be a non-empty string.');
  if (audience.length > MAX_AUDIENCE_LENGTH) throw new InvalidRequestError(`audience must be at most ${MAX_AUDIENCE_LENGTH} characters.`);
  // The proof binds the request as `audience \n scope` (core/identityProof.ts): a control
  // character in an audience would make that text ambiguous, and no API identifier has one.
  if (CONTROL.test(audience)) throw new InvalidRequestError('audience must not contain control characters.');
  if (scope !== undefined && typeof scope !== 'string') throw new InvalidRequestError('scope must be a string of space-separated scopes.');
  if (scope !== undefined && scope.length > MAX_SCOPE_LENGTH) throw new InvalidRequestError(`scope must be at most ${MAX_SCOPE_LENGTH} characters.`);
  // The proof binds `audience \n scope \n organization`: a newline in scope could pass for the organization line.
  if (scope !== undefined && CONTROL.test(scope)) throw new InvalidRequestError('scope must not contain control characters.');
  if (organization === undefined) return { audience, scope };
  if (typeof organization !== 'string' || organization === '') throw new InvalidRequestError('organization must be a non-empty string: an Auth0 organization id (org_…) or name.');
  if (organization.length > MAX_ORGANIZATION_LENGTH) throw new InvalidRequestError(`organization must be at most ${MAX_ORGANIZATION_LENGTH} characters.`);
  // The proof binds it after a newline (core/identityProof.ts): no control character may hide in it.
  if (CONTROL.test(organization)) throw new InvalidRequestError('organization must not contain control characters.');
  // Auth0's own forms (grants.ts): an id `org_` + letters or digits, or a lower-case name.
  if (!isOrganization(organization)) {
    throw new InvalidRequestError('organization must be an Auth0 organization id (org_ and letters or digits) or name (lower-case letters, digits, _ and -).');
  }
  return { audience, scope, organization };
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
