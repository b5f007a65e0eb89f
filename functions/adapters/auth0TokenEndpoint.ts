/**
 * Auth0's token endpoint: `POST https://{domain}/oauth/token`, client_credentials grant, JSON body.
 * Every call has a timeout; every answer is validated; JWT access tokens are verified against the
 * tenant's JWKS (signature, `iss`, `aud`, `exp`) before anything is cached or served. HTTP
 * failures become domain errors here, where they enter (as Powertools' idempotency layer
 * translates DynamoDB's errors into its own). Bodies, the token response's and the JWKS's, are
 * read uncompressed and under a byte cap (boundedBody.ts); Auth0's quota headers are read on
 * every answer (quotaHeaders.ts).
 */
import { randomUUID } from 'node:crypto';
import type { JWTPayload, JWTVerifyGetKey, importPKCS8 } from 'jose';
import type * as JoseModule from './joseModule.js';
import { onFirstUse } from '../core/onFirstUse.js';
import {
  ConfigError,
  IdpOrganizationMismatchError,
  IdpOrganizationQuotaError,
  IdpRateLimitedError,
  idpRefusal,
  IdpUnavailableError,
  InvalidTokenResponseError,
  type VendorError,
} from '../core/errors.js';
import type { ClientCredentials, IssuedToken, TokenEndpoint, TokenFetchRequest } from '../core/ports.js';
import { BodyRefusedError, IDENTITY_ENCODING, boundedFetch, readBoundedText } from './boundedBody.js';
import { describeQuota, quotaExhaustedForSeconds, readQuotaHeaders, tightestQuota, type QuotaHeaders } from './quotaHeaders.js';

export interface Auth0TokenEndpointOptions {
  /** per-call timeout for the token request and the JWKS fetch */
  readonly timeoutMs: number;
  readonly fetch?: typeof fetch;
  /** epoch milliseconds */
  readonly now?: () => number;
}

type SigningKey = Awaited<ReturnType<typeof importPKCS8>>;
type Jose = typeof JoseModule;

/**
 * jose, loaded the first time the IdP is called (joseModule.ts): a cold start that serves a cached
 * token never loads it. Shared by every instance of the endpoint; a failed load is not kept.
 */
const joseOnFirstUse = onFirstUse<Jose>(() => import('./joseModule.js'));
const loadJose = (): Promise<Jose> => joseOnFirstUse.get();

/** The longest pause the IdP can impose on the fleet through one 429. */
const MAX_RETRY_AFTER_SECONDS = 3600;
/** Retry-After we suggest when the IdP gave none. */
const DEFAULT_RETRY_AFTER_SECONDS = 5;
/** A token response is a few KB; anything larger is not one. Bytes on the wire, never inflated. */
export const MAX_RESPONSE_BYTES = 64 * 1024;
/** Auth0's key set is a few keys with their certificates (~3 KB each). */
export const MAX_JWKS_BYTES = 128 * 1024;
const OAUTH_ERROR_CODE = /^[a-z0-9_]{1,64}$/;

export class Auth0TokenEndpoint implements TokenEndpoint {
  private readonly fetch: typeof fetch;
  private readonly now: () => number;
  /** one remote key set per tenant, kept for the instance's life (jose caches and re-fetches on kid miss) */
  private readonly keySets = new Map<string, JWTVerifyGetKey>();
  /**
   * Imported signing keys, keyed by the (frozen) credentials object itself: a new secret version
   * is a new object, and no key material ever becomes a map key.
   */
  private readonly signingKeys = new WeakMap<ClientCredentials, SigningKey>();

  constructor(private readonly options: Auth0TokenEndpointOptions) {
    this.fetch = options.fetch ?? globalThis.fetch;
    this.now = options.now ?? Date.now;
  }

  async fetchToken(request: TokenFetchRequest): Promise<IssuedToken> {
    const { client, credentials } = request;
    const body: Record<string, string> = {
      grant_type: 'client_credentials',
      client_id: credentials.clientId,
      audience: request.audience,
      // Always explicit: Auth0 answers a request without scope with every scope of the client grant.
      scope: request.scopes.join(' '),
      // Exactly the organization the grants allowed (docs/auth0-wire-behaviour.md §14.1); never
      // sent without one, so that a tenant's default organization (§14.5) shows up as an org_id
      // the token for "no organization" must not have.
      ...(request.organization !== undefined ? { organization: request.organization } : {}),
    };
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: 'application/json',
      // Else undici asks for gzip and inflates whatever comes (boundedBody.ts).
      'accept-encoding': IDENTITY_ENCODING,
    };
    if (client.authMethod === 'private_key_jwt') {
      if (credentials.kind !== 'private_key') {
        throw new ConfigError(`client ${client.name} uses private_key_jwt but its secret holds no private_key`);
      }
      body.client_assertion_type = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
      body.client_assertion = await this.clientAssertion(credentials, client.issuer);
    } else if (credentials.kind !== 'secret') {
      throw new ConfigError(`client ${client.name} uses ${client.authMethod} but its secret holds no client_secret`);
    } else if (client.authMethod === 'client_secret_basic') {
      // RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
      const pair = `${formEncode(credentials.clientId)}:${formEncode(credentials.clientSecret)}`;
      headers.authorization = `Basic ${Buffer.from(pair).toString('base64')}`;
    } else {
      body.client_secret = credentials.clientSecret;
    }

    const url = `${client.origin}/oauth/token`;
    let response: Response;
    let text: string;
    /** why the body was not read, if it was not: a refused body is no body, and the status still decides */
    let refused: BodyRefusedError | undefined;
    try {
      response = await this.fetch(url, {
        method: 'POST',
        headers,
        body: JSON.stringify(body),
        redirect: 'error',
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      try {
        text = await readBoundedText(response, MAX_RESPONSE_BYTES);
      } catch (error) {
        if (!(error instanceof BodyRefusedError)) throw error;
        refused = error;
        text = '';
      }
    } catch (error) {
      throw new IdpUnavailableError(`token request to ${url} failed: ${networkReason(error)}`, DEFAULT_RETRY_AFTER_SECONDS, { cause: error });
    }
    const receivedAt = this.now();
    // On every answer, 2xx and 429 alike (docs/auth0-wire-behaviour.md §9).
    const quota = readQuotaHeaders(response.headers);
    const summary = `${oauthSummary(text)}${refused === undefined ? '' : ` (body not read: ${refused.message})`}${quotaSummary(quota)}`;

    if (response.status === 429) {
      const message = `token endpoint ${url} answered 429${summary}`;
      const wait = retryAfterSeconds(response.headers, receivedAt, quota) ?? DEFAULT_RETRY_AFTER_SECONDS;
      // Only the organization's quota is used up (§9, §14.9): pause that organization, not the
      // client. Any other 429 (the client's quota, the tenant's rate limit) pauses the client.
      // A request without organization can meet an organization's quota too, when the IdP applies a
      // default organization (§14.5): that pauses this request, never the whole client.
      if (organizationQuotaOnly(quota)) throw new IdpOrganizationQuotaError(message, wait, request.organization);
      throw new IdpRateLimitedError(message, wait);
    }
    if (response.status >= 500) {
      throw new IdpUnavailableError(
        `token endpoint ${url} answered ${response.status}${summary}`,
        retryAfterSeconds(response.headers, receivedAt, quota) ?? DEFAULT_RETRY_AFTER_SECONDS,
      );
    }
    if (!response.ok) {
      const parsed = parseJson(text) as { error?: unknown } | undefined;
      const code = typeof parsed?.error === 'string' && OAUTH_ERROR_CODE.test(parsed.error) ? parsed.error : 'invalid_response';
      // By status and `error` alone (§14.7: Auth0's wording is unknown, and the description is
      // never a branch): a refusal of a request that names an organization is read as the
      // organization's.
      throw idpRefusal(code, response.status, `token endpoint ${url} answered ${response.status}${summary}`, request.organization !== undefined);
    }
    if (refused !== undefined) {
      throw new InvalidTokenResponseError(`token endpoint ${url} answered ${response.status} with a body that was not read: ${refused.message}`, { cause: refused });
    }

    // With an organization, the client's and the organization's quotas are read apart, so that the
    // quota guard can keep the organization's count per organization (§14.9).
    const tightest = tightestQuota(request.organization === undefined ? quota : { client: quota.client, organization: [] });
    const tightestOrganization = request.organization === undefined ? undefined : tightestQuota({ client: [], organization: quota.organization });
    const issued: IssuedToken = {
      ...validateTokenResponse(parseJson(text), receivedAt),
      // The client_id it was issued to: public, and what tells this client's tokens from another's.
      clientId: credentials.clientId,
      ...(tightest === undefined ? {} : { quota: tightest }),
      ...(tightestOrganization === undefined ? {} : { organizationQuota: tightestOrganization }),
    };
    if (client.tokenFormat === 'jwt') {
      const payload = await this.verifyJwt(issued.accessToken, client.origin, client.issuer, request.audience, receivedAt);
      const organizationId = checkOrganizationClaims(payload, request.organization, url);
      // Trust the earlier of the two: a token is dead at `exp` whatever `expires_in` said.
      return { ...issued, expiresAt: Math.min(issued.expiresAt, payload.exp as number), ...(organizationId === undefined ? {} : { organizationId }) };
    }
    return issued;
  }

  /**
   * An RFC 7523 client assertion, as Auth0 expects it for private_key_jwt: iss = sub = client id,
   * aud = the tenant (`https://{domain}/`), a one-minute lifetime and a unique jti (Auth0 refuses
   * a replayed one).
   */
  private async clientAssertion(credentials: Extract<ClientCredentials, { kind: 'private_key' }>, audience: string): Promise<string> {
    let key: SigningKey | undefined = this.signingKeys.get(credentials);
    if (key === undefined) {
      try {
        key = await (await loadJose()).importPKCS8(credentials.privateKeyPem, 'RS256');
      } catch (error) {
        // jose's message does not quote the key; the cause is dropped all the same.
        throw new ConfigError(`the private_key of client ${credentials.clientId} is not an RS256 PKCS#8 key (${(error as Error).name})`);
      }
      this.signingKeys.set(credentials, key);
    }
    const { SignJWT } = await loadJose();
    const now = Math.floor(this.now() / 1000);
    return new SignJWT({})
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT', ...(credentials.keyId ? { kid: credentials.keyId } : {}) })
      .setIssuer(credentials.clientId)
      .setSubject(credentials.clientId)
      .setAudience(audience)
      .setIssuedAt(now)
      .setExpirationTime(now + 60)
      .setJti(randomUUID())
      .sign(key);
  }

  /** Verify signature, issuer, audience and expiry; returns the claims (`exp` among them). */
  private async verifyJwt(token: string, origin: string, issuer: string, audience: string, nowMs: number): Promise<JWTPayload> {
    const jose = await loadJose();
    try {
      const { payload } = await jose.jwtVerify(token, this.keySet(origin, jose), {
        issuer,
        audience,
        algorithms: ['RS256'],
        requiredClaims: ['exp'],
        currentDate: new Date(nowMs),
      });
      return payload;
    } catch (error) {
      throw jwtError(error, origin, jose.errors);
    }
  }

  private keySet(origin: string, jose: Jose): JWTVerifyGetKey {
    let keySet = this.keySets.get(origin);
    if (keySet === undefined) {
      keySet = jose.createRemoteJWKSet(new URL(`${origin}/.well-known/jwks.json`), {
        timeoutDuration: this.options.timeoutMs,
        // jose reads `response.json()` itself: hand it a body already read uncompressed and capped.
        [jose.customFetch]: boundedFetch(this.fetch, MAX_JWKS_BYTES),
      });
      this.keySets.set(origin, keySet);
    }
    return keySet;
  }
}

/**
 * The token's organization against the request's (issue 12; docs/auth0-wire-behaviour.md §14.2):
 * - asked by id: `org_id` must be exactly that id;
 * - asked by name: `org_name` must be that name (Auth0 stores names in lower case and compares them
 *   so, §14.3) and `org_id` must be there, as Auth0 puts both in a token once names are allowed;
 * - asked for none: no `org_id` and no `org_name`. A client with a default organization (§14.5), or
 *   a tenant answering with an organization not asked for, would otherwise have its organization's
 *   token cached and served as the organization-less one.
 * A tenant that ignores the parameter (§14.8) issues no `org_id`: refused too. Every mismatch is an
 * IdpOrganizationMismatchError (an InvalidTokenResponseError), so nothing is cached, and the request is
 * remembered as refused for a while (core/goodCitizenEndpoint.ts).
 * @returns the token's `org_id`, if any
 */
function checkOrganizationClaims(payload: JWTPayload, organization: string | undefined, url: string): string | undefined {
  const orgId = payload.org_id;
  const orgName = payload.org_name;
  if (orgId !== undefined && (typeof orgId !== 'string' || orgId === '')) throw new InvalidTokenResponseError(`access token from ${url} has an org_id that is not a string`);
  if (organization === undefined) {
    if (orgId !== undefined || orgName !== undefined) {
      throw new IdpOrganizationMismatchError(`access token from ${url} is for organization ${String(orgId ?? orgName).slice(0, 60)}, but none was requested (a default organization?)`);
    }
    return undefined;
  }
  if (orgId === undefined) throw new IdpOrganizationMismatchError(`access token from ${url} has no org_id, but organization ${organization} was requested (does the tenant ignore the parameter?)`);
  if (organization.startsWith('org_')) {
    if (orgId !== organization) throw new IdpOrganizationMismatchError(`access token from ${url} is for organization ${orgId.slice(0, 60)}, not the ${organization} requested`);
  } else if (typeof orgName !== 'string' || orgName.toLowerCase() !== organization) {
    throw new IdpOrganizationMismatchError(`access token from ${url} has org_name ${JSON.stringify(typeof orgName === 'string' ? orgName.slice(0, 60) : orgName)}, not the ${organization} requested`);
  }
  return orgId;
}

/** Whether a 429 says the organization's quota is used up and the client's is not (§9, §14.9). */
function organizationQuotaOnly(quota: QuotaHeaders): boolean {
  return quota.organization.some((r) => r.remaining === 0) && !quota.client.some((r) => r.remaining === 0);
}

/** RFC 6749 §5.1 plus Auth0's habits; anything else is not a token we can serve. */
function validateTokenResponse(doc: unknown, receivedAt: number): IssuedToken {
  if (typeof doc !== 'object' || doc === null) {
    throw new InvalidTokenResponseError('token response is not a JSON object');
  }
  const { access_token: accessToken, token_type: tokenType, expires_in: expiresIn, scope } = doc as Record<string, unknown>;
  if (typeof accessToken !== 'string' || accessToken.length === 0) {
    throw new InvalidTokenResponseError('token response has no access_token');
  }
  if (typeof tokenType !== 'string' || tokenType.toLowerCase() !== 'bearer') {
    throw new InvalidTokenResponseError(`token_type is ${JSON.stringify(tokenType)}, not Bearer`);
  }
  if (typeof expiresIn !== 'number' || !Number.isSafeInteger(expiresIn) || expiresIn <= 0) {
    throw new InvalidTokenResponseError(`expires_in is ${JSON.stringify(expiresIn)}, not a positive integer`);
  }
  if (scope !== undefined && typeof scope !== 'string') {
    throw new InvalidTokenResponseError('scope is not a string');
  }
  return {
    accessToken,
    scope: scope ?? '',
    // Counted from the moment the response arrived (openid-client's expiresIn(); RFC 6749 §5.1),
    // rounded down so we never believe a token lives longer than it does.
    expiresAt: Math.floor(receivedAt / 1000) + expiresIn,
    fetchedAt: receivedAt,
  };
}

function jwtError(error: unknown, origin: string, joseErrors: Jose['errors']): VendorError {
  // The key set could not be fetched (timeout, network, non-200, a compressed or oversized body):
  // the IdP is unavailable, not the token invalid — so it is retried and backed off, not answered 502.
  const keySetUnreachable =
    error instanceof joseErrors.JWKSTimeout ||
    error instanceof BodyRefusedError ||
    (error instanceof TypeError && !(error instanceof joseErrors.JOSEError)) ||
    (error instanceof joseErrors.JOSEError && error.code === 'ERR_JOSE_GENERIC' && /JSON Web Key Set/i.test(error.message));
  if (keySetUnreachable) {
    return new IdpUnavailableError(`JWKS of ${origin} could not be fetched: ${networkReason(error)}`, DEFAULT_RETRY_AFTER_SECONDS, { cause: error });
  }
  const code = error instanceof joseErrors.JOSEError ? error.code : 'unknown';
  const message = error instanceof Error ? error.message : String(error);
  return new InvalidTokenResponseError(`access token from ${origin} failed verification (${code}: ${message})`, { cause: error });
}

/**
 * How long the IdP asks us to wait, in whole seconds from now: the longest of `Retry-After`
 * (seconds or HTTP date), `X-RateLimit-Reset` (epoch seconds) and, for each bucket of Auth0's
 * `Auth0-Client-Quota-Limit` / `Auth0-Organization-Quota-Limit` that is used up, its `t` (seconds
 * to reset; quotaHeaders.ts reads them; pass `quota` when they are already read).
 */
export function retryAfterSeconds(headers: Headers, nowMs: number, quota: QuotaHeaders = readQuotaHeaders(headers)): number | undefined {
  const waits: number[] = [];
  const retryAfter = headers.get('retry-after')?.trim();
  if (retryAfter !== undefined) {
    if (/^\d+$/.test(retryAfter)) waits.push(Number(retryAfter));
    else {
      const date = Date.parse(retryAfter);
      if (!Number.isNaN(date)) waits.push(Math.ceil((date - nowMs) / 1000));
    }
  }
  const reset = headers.get('x-ratelimit-reset')?.trim();
  if (reset !== undefined && /^\d+$/.test(reset)) waits.push(Number(reset) - Math.floor(nowMs / 1000));
  const exhausted = quotaExhaustedForSeconds(quota);
  if (exhausted !== undefined) waits.push(exhausted);
  if (waits.length === 0) return undefined;
  // Capped: a pause is shared by the whole fleet, and a malformed header must not stop it for days.
  return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, ...waits));
}

/** `; client quota per_hour 0/10 left, resets in 1200 s` for the log: the tightest bucket of each header. */
function quotaSummary(quota: QuotaHeaders): string {
  const client = tightestQuota({ client: quota.client, organization: [] });
  const organization = tightestQuota({ client: [], organization: quota.organization });
  return `${client === undefined ? '' : `; client quota ${describeQuota(client)}`}${organization === undefined ? '' : `; organization quota ${describeQuota(organization)}`}`;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * `: <error> (<description>)` for the log. The description is Auth0's own text (for example
 * "Unauthorized"); it never contains the secret we sent, but it is truncated all the same.
 */
function oauthSummary(text: string): string {
  const doc = parseJson(text) as { error?: unknown; error_description?: unknown } | undefined;
  if (typeof doc?.error !== 'string') return '';
  const description = typeof doc.error_description === 'string' ? ` (${doc.error_description.slice(0, 200)})` : '';
  return `: ${doc.error.slice(0, 64)}${description}`;
}

function networkReason(error: unknown): string {
  if (error instanceof Error) {
    if (error.name === 'TimeoutError') return 'timed out';
    const cause = (error as { cause?: { code?: unknown } }).cause;
    return typeof cause?.code === 'string' ? `${error.message} (${cause.code})` : error.message;
  }
  return String(error);
}

function formEncode(value: string): string {
  return encodeURIComponent(value).replace(/%20/g, '+');
}
