/**
 * A local Auth0 tenant for tests and the local stack, built on panva's oidc-provider.
 *
 *   client ──► front server (origin = issuer, "Auth0's edge") ──► oidc-provider (private loopback port)
 *
 * oidc-provider does the OAuth work: client authentication (client_secret_post / _basic,
 * private_key_jwt), the client_credentials grant, JWT and opaque access tokens, the JWKS.
 *
 * The front server gives it Auth0's face. Auth0 takes JSON bodies and an `audience` parameter;
 * oidc-provider takes only form bodies and RFC 8707 `resource`. The front rewrites the request
 * before oidc-provider reads it, so oidc-provider parses a genuine request stream (handing it a
 * pre-parsed `req.body` also works, but makes it print a warning). The test hooks live in the front
 * too, because they act on the wire as a faulty network or IdP would: request counting, fault
 * injection, token tampering, Auth0's response shape.
 *
 * Auth0 policy that needs the authenticated client (grant types, client grants, default scopes,
 * access_denied being a 403, the assertion limits, the M2M quotas) is enforced inside oidc-provider
 * by its hooks, which run after client authentication, as Auth0 checks credentials before grants
 * (auth0Provider.ts).
 *
 * The front also answers the part of Auth0's Management API (`/api/v2/…`) that credential rotation
 * uses: rotate-secret, client credentials (public keys for private_key_jwt) and attaching them to
 * the client. Those endpoints take the tenant's own JWTs for the Management API audience
 * `${issuer}api/v2/`, obtained with client_credentials like any other API token. They change the
 * live client table, which oidc-provider reads on every request (routes and error shape:
 * auth0Management.ts).
 *
 * Organizations in the client credentials grant (`organization`, `organization_usage`,
 * `allow_any_organization`, associations, default organizations, `org_id`/`org_name`) follow §14
 * and live in auth0Organizations.ts; the provider asks it once the client grant is known.
 *
 * Every answer is the one docs/auth0-wire-behaviour.md records, cited by section (§n): the front
 * reshapes oidc-provider's errors into Auth0's (auth0Answers.ts), and keeps the tenant's rate limit
 * and M2M quotas (auth0Limits.ts). Where the doc says Auth0's answer is unknown, a `set…Answer`
 * switch picks each plausible one; the default is the doc's most likely.
 */
import { appendFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { Agent, createServer, request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, Server, ServerResponse } from 'node:http';
import { createPublicKey, randomBytes, randomUUID } from 'node:crypto';
import { SignJWT, calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, errors as joseErrors, exportJWK, generateKeyPair, jwtVerify } from 'jose';
import type { JWK } from 'jose';
import {
  CLIENT_QUOTA_EXCEEDED,
  GRANT_TYPES_ERROR_URI,
  MANAGEMENT_GLOBAL_LIMIT,
  ORGANIZATION_QUOTA_EXCEEDED,
  acceptsGzip,
  assertionFailureAnswer,
  grantTypeNotAllowed,
  jsonAnswer,
  oauthError,
  quotaHeader,
  quotaRefusalHeaders,
  rateLimitHeaders,
  rateLimitedAnswer,
  refusedCredentialAnswer,
  successBody,
} from './auth0Answers.js';
import type {
  AssertionFailureAnswer,
  Compression,
  GrantTypeCheck,
  MissingAudienceAnswer,
  OrganizationParameter,
  OrganizationRefusalAnswer,
  RateLimitAnswer,
  RefusedCredentialAnswer,
  SecretPropagation,
  TokenFault,
  UnenforcedQuotaRemaining,
  WireAnswer,
} from './auth0Answers.js';
import { QuotaBook, TokenBucket, checkedQuota, checkedRateLimit } from './auth0Limits.js';
import { MANAGEMENT_PREFIX, ManagementError, invalidBody, isObject, jsonBody, managementRoute, tokenErrorMessage } from './auth0Management.js';
import { ORGANIZATION_CLIENT_GRANT_SCOPES, OrganizationDirectory, organizationRoute } from './auth0Organizations.js';
import type { ClientGrantOrganizationSettings, ClientGrantOrganizations, TenantOrganization } from './auth0Organizations.js';
import {
  AUDIENCE_HEADER,
  ISSUED_ORGANIZATION_HEADER,
  ISSUED_TO_HEADER,
  ORGANIZATION_HEADER,
  PRIVATE_HEADER_PREFIX,
  QUOTA_HEADER,
  REFUSAL_HEADER,
  TOKEN_PATH,
  createProvider,
  loadOidcProvider,
} from './auth0Provider.js';
import type { QuotaOutcome } from './auth0Provider.js';
import type { M2mQuota, QuotaBucket, RateLimit } from './auth0Limits.js';
import { closeServer, listenOnLoopback } from './loopbackServer.js';

export { auth0ServerError } from './auth0Answers.js';
export type {
  AssertionFailureAnswer,
  Compression,
  GrantTypeCheck,
  MissingAudienceAnswer,
  OrganizationParameter,
  OrganizationRefusalAnswer,
  RateLimitAnswer,
  RefusedCredentialAnswer,
  SecretPropagation,
  ServerErrorKind,
  TokenFault,
  UnenforcedQuotaRemaining,
} from './auth0Answers.js';
export type { M2mQuota, RateLimit } from './auth0Limits.js';
export type { ClientGrantOrganizationSettings, ClientGrantOrganizations, OrganizationUsage, TenantOrganization } from './auth0Organizations.js';

export type ClientAuthMethod = 'client_secret_post' | 'client_secret_basic' | 'private_key_jwt';

/** Signing algorithms Auth0 accepts for a `public_key` client credential. */
export type CredentialAlg = 'RS256' | 'RS384' | 'PS256';

/** A public key to register as an Auth0 client credential (`credential_type: 'public_key'`). */
export interface TenantCredentialInput {
  name: string;
  /** SPKI PEM public key (`-----BEGIN PUBLIC KEY-----`), RSA, at least 2048 bits */
  pem: string;
  /** default 'RS256' */
  alg?: CredentialAlg;
}

export interface TenantClient {
  clientId: string;
  /** the application's name in Management API responses; default: the client id */
  name?: string;
  /** for client_secret_* methods */
  clientSecret?: string;
  authMethod: ClientAuthMethod;
  /**
   * public keys, for private_key_jwt (two at once allow an overlapping rotation). Bare keys: they
   * have no credential id, so the Management API does not list them. Not together with `credentials`.
   */
  jwks?: { keys: JWK[] };
  /**
   * private_key_jwt only: Auth0 client credentials, created with ids (`cred_…`) and kids (RFC 7638
   * thumbprints) and all attached to the client (`client_authentication_methods.private_key_jwt`),
   * as rotation through the Management API expects. At most 2 (Auth0's per-application limit).
   */
  credentials?: TenantCredentialInput[];
  /**
   * the application's grant types (Auth0's `grant_types`); default ['client_credentials']. Without
   * 'client_credentials' a token request is refused with 403 unauthorized_client (§6).
   */
  grantTypes?: string[];
  /**
   * §14: the application's default organization for client_credentials (Auth0's
   * `default_organization` with `flows: ['client_credentials']`), an organization id or name,
   * applied to a request without `organization` for an API whose client grant requires one.
   */
  defaultOrganization?: string;
}

/** A client credential as `clientCredentials()` reports it: Auth0's fields plus whether it is attached. */
export interface TenantCredential {
  /** 'cred_…' */
  id: string;
  name: string;
  credential_type: 'public_key';
  /** RFC 7638 JWK thumbprint (SHA-256) of the public key; the kid client assertions may name */
  kid: string;
  alg: CredentialAlg;
  /** ISO 8601 */
  created_at: string;
  updated_at: string;
  /** listed in the client's `client_authentication_methods.private_key_jwt.credentials`: its key is accepted */
  attached: boolean;
}

export interface TenantApi {
  /** e.g. 'https://orders.example.com' */
  audience: string;
  /** scopes this API defines */
  scopes: string[];
  /** default 86400, like Auth0 */
  tokenTtlSeconds?: number;
  /** default 'jwt' */
  tokenFormat?: 'jwt' | 'opaque';
}

export interface TenantOptions {
  /** default 0 = pick a free loopback port */
  port?: number;
  clients: TenantClient[];
  apis: TenantApi[];
  /** client grants, as in Auth0: clientId -> audience -> scopes the client may get. No entry = access_denied. */
  clientGrants: Record<string, Record<string, string[]>>;
  /**
   * If set, append one JSON line per issued access token and per client secret the tenant knows,
   * `{"kind":"access_token"|"client_secret","value":"..."}`, for the log scan that checks no secret
   * or token leaks into logs.
   */
  recordFile?: string;
  /**
   * Register Auth0's Management API, audience `${issuer}api/v2/` (see `managementAudience`), with the
   * scopes in `MANAGEMENT_API_SCOPES`. The issuer is only known once the tenant listens, so in
   * `clientGrants` key its grant with the literal `'management'` (`MANAGEMENT_GRANT_KEY`), e.g.
   * `{ rotator: { management: ['update:client_keys'] } }`; the full audience also works when the
   * port is fixed. Without this option the API can still be declared in `apis` by its full audience.
   */
  managementApi?: boolean;
  /**
   * Milliseconds after a Management API rotate-secret during which the secrets propagate (§13:
   * "up to thirty seconds"). Default 0. What is accepted meanwhile is `secretPropagation`; a refused
   * secret gets §1's answer. `setClientSecret` is never delayed.
   */
  secretPropagationMs?: number;
  /** §13: what the propagation window accepts; default 'neither' (see `SecretPropagation`) */
  secretPropagation?: SecretPropagation;
  /**
   * §8: the tenant-wide limit of `/oauth/token`, reported in `X-RateLimit-*` on every answer.
   * Default { limit: 1000, perSecond: 1000 }, which no suite reaches; the free plan is
   * { limit: 30, perSecond: 30 }.
   */
  rateLimit?: RateLimit;
  /** §8, §13: the same for the Management API; default { limit: 1000, perSecond: 1000 } */
  managementRateLimit?: RateLimit;
  /** §9: fine-grained M2M quotas by client id (see `setClientQuota`) */
  clientQuotas?: Record<string, M2mQuota>;
  /**
   * §14: the tenant's organizations. Declaring them (even `[]`) turns on M2M Access for
   * Organizations; without them every `organization` value is taken as the id of an organization
   * any client grant may use (see auth0Organizations.ts).
   */
  organizations?: TenantOrganization[];
  /**
   * §14: organization settings and associations of client grants: clientId -> audience (or
   * `'management'`) -> `{ organizationUsage, allowAnyOrganization, organizations }`. A client grant
   * not listed is `organization_usage: deny`, as in Auth0.
   */
  organizationGrants?: Record<string, Record<string, ClientGrantOrganizations>>;
  /** §14: the tenant setting "Allow Organization Names in Authentication API"; default false */
  allowOrganizationNamesInAuthenticationApi?: boolean;
  /** §9, §14: M2M quotas by organization (id or name; see `setOrganizationQuota`) */
  organizationQuotas?: Record<string, M2mQuota>;
}

export interface IssuedToken {
  clientId: string;
  audience: string;
  scope: string;
  /** the value the client received (tampered, if a tamper mode was on) */
  accessToken: string;
  expiresIn: number;
  /** §14: the `org_id` the token was issued for, if any */
  organization?: string;
}

export type TamperMode = null | 'wrong-key' | 'wrong-aud';

export interface LocalAuth0Tenant {
  /** 'http://127.0.0.1:PORT' */
  readonly origin: string;
  /** 'http://127.0.0.1:PORT/' (Auth0 issuers end with '/') */
  readonly issuer: string;
  readonly port: number;
  /**
   * The Management API identifier, `${issuer}api/v2/` (as Auth0's `https://{domain}/api/v2/`): the
   * audience to request, whether or not the API is registered (`TenantOptions.managementApi`).
   */
  readonly managementAudience: string;
  /** number of POST /oauth/token requests received (every outcome, including failures) since start or last reset */
  tokenRequests(): number;
  /** number of Management API requests (any method under /api/v2/, every outcome) since start or last reset */
  managementRequests(): number;
  /** successful issuances */
  issued(): ReadonlyArray<IssuedToken>;
  /** resets tokenRequests(), managementRequests() and issued() */
  resetCounters(): void;
  /**
   * change a client's secret at once (Auth0's rotate-secret has no overlap). Never delayed by
   * `secretPropagationMs`, and ends a propagation delay still running.
   */
  setClientSecret(clientId: string, secret: string): void;
  /** the client's current secret (after any rotate-secret), undefined if it has none; throws for an unknown client */
  clientSecret(clientId: string): string | undefined;
  /**
   * replace a client's registered public keys (private_key_jwt) with these bare keys; every
   * Management API credential of the client is detached (they stay listed).
   */
  setClientJwks(clientId: string, jwks: { keys: JWK[] }): void;
  /** the client's Management API credentials, in creation order, with whether each is attached; throws for an unknown client */
  clientCredentials(clientId: string): TenantCredential[];
  /**
   * the propagation delay for later rotate-secret calls (see `TenantOptions.secretPropagationMs`); a
   * delay already running keeps its end (setClientSecret ends it). Throws for a negative or non-finite value.
   */
  setSecretPropagationMs(ms: number): void;
  /** §13: what a propagation window accepts from now on, running windows included (see `SecretPropagation`) */
  setSecretPropagationMode(mode: SecretPropagation): void;
  /** §6: replace the application's grant types; without 'client_credentials' its token requests get 403 unauthorized_client */
  setClientGrantTypes(clientId: string, grantTypes: string[]): void;
  /** §6 (unknown): refuse a disabled grant type after client authentication (default) or before it */
  setGrantTypeCheck(check: GrantTypeCheck): void;
  /** §1, §2 (unknown): the answer to a wrong secret or an unknown client; default 'access_denied' */
  setRefusedCredentialAnswer(answer: RefusedCredentialAnswer): void;
  /** §7 (unknown): the answer to a refused client assertion; default 'access_denied' */
  setAssertionFailureAnswer(answer: AssertionFailureAnswer): void;
  /** §10 (unknown): the answer to a request without audience; default 'access_denied' */
  setMissingAudienceAnswer(answer: MissingAudienceAnswer): void;
  /** §8: a new tenant-wide limit, bucket full (`api` default 'authentication' = /oauth/token) */
  setRateLimit(limit: RateLimit, api?: 'authentication' | 'management'): void;
  /** §8 (unknown): the body and headers of the tenant-wide 429; default 'documented' */
  setRateLimitAnswer(answer: RateLimitAnswer): void;
  /**
   * §9: configure (counting from zero) or, with null, remove a client's M2M token quota. Every
   * token request of the client then carries `Auth0-Client-Quota-Limit`; once an enforced bucket
   * has no tokens left, requests get 429 too_many_requests "Client quota exceeded". Throws for an
   * unknown client or a quota without a positive perHour/perDay.
   */
  setClientQuota(clientId: string, quota: M2mQuota | null): void;
  /**
   * §9: the same for an organization (id or name; throws for an undeclared one once organizations
   * are declared), applied to token requests issued for it, header `Auth0-Organization-Quota-Limit`
   */
  setOrganizationQuota(organization: string, quota: M2mQuota | null): void;
  /** §14: the id (`cgr_…`) of a client grant (audience or `'management'`), as the Management API names it */
  clientGrantId(clientId: string, audience: string): string;
  /** §14: change a client grant's `organization_usage` and/or `allow_any_organization` */
  setClientGrantOrganizations(clientId: string, audience: string, settings: ClientGrantOrganizationSettings): void;
  /** §14: associate a client grant with an organization (id or name), as `POST /api/v2/organizations/{id}/client-grants` does */
  associateOrganization(organization: string, clientId: string, audience: string): void;
  /** §14: remove that association, as `DELETE /api/v2/organizations/{id}/client-grants/{grant_id}` does */
  dissociateOrganization(organization: string, clientId: string, audience: string): void;
  /** §14: the tenant setting "Allow Organization Names in Authentication API" */
  setAllowOrganizationNames(allow: boolean): void;
  /** §14 (unknown): the status and error of a refused `organization`; default 'invalid_request' */
  setOrganizationRefusalAnswer(answer: OrganizationRefusalAnswer): void;
  /** §14: 'ignored' plays a tenant from before the 2025-06-12 rollout, which ignores `organization`; default 'enforced' */
  setOrganizationParameter(mode: OrganizationParameter): void;
  /** §9 (unknown): what `r` reports past an unenforced quota; default 'clamp' */
  setUnenforcedQuotaRemaining(mode: UnenforcedQuotaRemaining): void;
  /** §12: when success bodies are gzipped; default 'when-asked' */
  setCompression(mode: Compression): void;
  /**
   * The lifetime of the tokens Auth0 issues for `audience` from now on (the API's "Token
   * Expiration" setting, changed in the dashboard): tokens already issued keep theirs.
   */
  setTokenTtl(audience: string, seconds: number): void;
  /**
   * 'wrong-key' re-signs issued JWTs with a foreign RSA key (same kid); 'wrong-aud' re-signs them
   * with the tenant's real key but aud='https://not-the-requested-audience'. null = normal.
   * Opaque tokens are never tampered with.
   */
  setTamper(mode: TamperMode): void;
  /**
   * When set, POST /oauth/token answers this instead of issuing (still counted, not rate limited,
   * sent without Auth0's headers). 'hang' = never answer until close (or until the client aborts);
   * 'drop' = destroy the socket. A string body is sent as is, anything else as JSON. null = normal.
   * `auth0ServerError(kind)` builds §11's 5xx answers.
   */
  setFault(fault: TokenFault): void;
  /** closes every socket, hung ones included */
  close(): Promise<void>;
}

/** The `clientGrants` key that stands for the Management API audience (see `TenantOptions.managementApi`). */
export const MANAGEMENT_GRANT_KEY = 'management';

/**
 * Scopes of the Management API the tenant registers with `managementApi: true`. Endpoints:
 * - `GET /api/v2/clients/{id}`: read:clients or read:client_keys (client_secret only with the latter)
 * - `PATCH /api/v2/clients/{id}` with only `client_authentication_methods`: update:clients or update:client_keys (§13)
 * - `POST /api/v2/clients/{id}/rotate-secret`: update:client_keys
 * - `POST /api/v2/clients/{id}/credentials`: create:client_credentials
 * - `GET /api/v2/clients/{id}/credentials[/{credential_id}]`: read:client_keys or read:client_credentials
 * - `DELETE /api/v2/clients/{id}/credentials/{credential_id}`: delete:client_credentials
 * - `GET`, `POST /api/v2/organizations/{id}/client-grants` and `DELETE …/client-grants/{grant_id}`:
 *   read:, create:, delete:organization_client_grants (§14)
 */
export const MANAGEMENT_API_SCOPES: readonly string[] = [
  'read:clients',
  'update:clients',
  'update:client_keys',
  'read:client_keys',
  'create:client_credentials',
  'read:client_credentials',
  'update:client_credentials',
  'delete:client_credentials',
  ...ORGANIZATION_CLIENT_GRANT_SCOPES,
];

/** The Management API audience of a tenant: `${tenant.issuer}api/v2/`. */
export function managementAudience(tenant: { readonly issuer: string }): string {
  return `${tenant.issuer}api/v2/`;
}

/** Auth0's limit of credentials per application. */
const MAX_CREDENTIALS = 2;
const CREDENTIAL_ALGS: readonly CredentialAlg[] = ['RS256', 'RS384', 'PS256'];
const WRONG_AUDIENCE = 'https://not-the-requested-audience';
/** Same limit as oidc-provider's own body parser. */
const MAX_BODY_BYTES = 56 * 1024;
/** §8: a limit no suite reaches unless it lowers it */
const DEFAULT_RATE_LIMIT: RateLimit = { limit: 1000, perSecond: 1000 };
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'upgrade']);

/** An OAuth error answered by the front server itself. */
class FrontError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly description: string,
  ) {
    super(description);
  }
}

interface Upstream {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** An Auth0 client credential (public key) of a client. */
interface CredentialState {
  readonly id: string;
  readonly name: string;
  readonly alg: CredentialAlg;
  readonly kid: string;
  /** the public key as oidc-provider receives it: with kid and alg */
  readonly jwk: JWK;
  readonly createdAt: string;
}

/** A client of the live client table. */
interface ClientState {
  readonly clientId: string;
  readonly name: string;
  readonly authMethod: ClientAuthMethod;
  clientSecret: string | undefined;
  /** the secret before the last rotate-secret: §13's 'old-or-new' may still accept it until secretAcceptedFrom */
  previousSecret: string | undefined;
  /** after a rotate-secret with a propagation delay, the secret is refused until this time (ms) */
  secretAcceptedFrom: number;
  /** what oidc-provider gets as the secret until then: a random value nobody is told */
  pendingSecret: string;
  /** bare public keys (TenantClient.jwks, setClientJwks), accepted besides the attached credentials */
  jwks: { keys: JWK[] } | undefined;
  credentials: CredentialState[];
  /** ids of the attached credentials (client_authentication_methods.private_key_jwt.credentials) */
  attached: string[];
  /** Auth0's `grant_types` (§6) */
  grantTypes: string[];
}

interface ManagementResult {
  status: number;
  /** undefined = empty body */
  body?: unknown;
}

export async function startLocalAuth0Tenant(opts: TenantOptions): Promise<LocalAuth0Tenant> {
  let propagationMs = checkedDelay(opts.secretPropagationMs ?? 0);
  let propagationMode: SecretPropagation = opts.secretPropagation ?? 'neither';
  const apis = new Map(opts.apis.map((api) => [api.audience, api]));
  const clients = new Map<string, ClientState>();
  for (const client of opts.clients) clients.set(client.clientId, await initialClientState(client));

  // §8: the tenant-wide rate limits; §9: the M2M quotas.
  const tokenBucket = new TokenBucket(checkedRateLimit(opts.rateLimit ?? DEFAULT_RATE_LIMIT, 'rateLimit'));
  const managementBucket = new TokenBucket(checkedRateLimit(opts.managementRateLimit ?? DEFAULT_RATE_LIMIT, 'managementRateLimit'));
  const clientQuotas = new QuotaBook();
  const organizationQuotas = new QuotaBook();
  for (const [clientId, quota] of Object.entries(opts.clientQuotas ?? {})) {
    if (!clients.has(clientId)) throw new Error(`clientQuotas: unknown client ${clientId}`);
    clientQuotas.set(clientId, checkedQuota(quota, `clientQuotas.${clientId}`));
  }
  // The switches among plausible answers (auth0Answers.ts), at the doc's most likely.
  let refusedCredential: RefusedCredentialAnswer = 'access_denied';
  let assertionFailure: AssertionFailureAnswer = 'access_denied';
  let missingAudience: MissingAudienceAnswer = 'access_denied';
  let rateLimitAnswer: RateLimitAnswer = 'documented';
  let grantTypeCheck: GrantTypeCheck = 'after-authentication';
  let unenforcedRemaining: UnenforcedQuotaRemaining = 'clamp';
  let compression: Compression = 'when-asked';

  const record = (kind: 'access_token' | 'client_secret', value: string): void => {
    if (opts.recordFile) appendFileSync(opts.recordFile, `${JSON.stringify({ kind, value })}\n`);
  };

  const [oidcProvider, signingKeys, foreignKeys] = await Promise.all([
    loadOidcProvider(),
    generateKeyPair('RS256', { extractable: true }),
    generateKeyPair('RS256'),
  ]);
  const kid = randomUUID();
  const signingJwk = { ...(await exportJWK(signingKeys.privateKey)), kid, alg: 'RS256', use: 'sig' };

  let requestCount = 0;
  let managementCount = 0;
  let issuedTokens: IssuedToken[] = [];
  let tamperMode: TamperMode = null;
  let fault: TokenFault = null;

  // The issuer embeds the port, so the front server listens before the provider exists; requests
  // that race in meanwhile wait for it.
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => {
    markReady = resolve;
  });
  const front = createServer((req, res) => {
    ready.then(() => handleFront(req, res)).catch((err: unknown) => {
      console.error(`local Auth0 tenant: ${err instanceof Error ? err.message : String(err)}`);
      if (!res.headersSent) sendJson(res, 500, { error: 'server_error', error_description: 'local tenant failure' });
      else res.destroy();
    });
  });
  const port = await listenOnLoopback(front, opts.port ?? 0);
  const origin = `http://127.0.0.1:${port}`;
  const issuer = `${origin}/`;
  const mgmtAudience = managementAudience({ issuer });

  let inner: Server;
  let innerPort: number;
  let clientGrants: TenantOptions['clientGrants'];
  let organizationDirectory: OrganizationDirectory;
  try {
    if (opts.managementApi) {
      if (apis.has(mgmtAudience)) throw new Error(`the Management API ${mgmtAudience} is both declared in apis and requested by managementApi`);
      apis.set(mgmtAudience, { audience: mgmtAudience, scopes: [...MANAGEMENT_API_SCOPES] });
    }
    clientGrants = resolveGrants(opts.clientGrants, mgmtAudience);
    validateGrants(clientGrants, clients, apis);
    // §14: organizations, the client grants' organization settings and the default organizations.
    const defaults = new Map<string, string>();
    for (const client of opts.clients) if (client.defaultOrganization !== undefined) defaults.set(client.clientId, client.defaultOrganization);
    organizationDirectory = new OrganizationDirectory({
      organizations: opts.organizations,
      clientGrants,
      settings: resolveGrants(opts.organizationGrants ?? {}, mgmtAudience),
      allowNames: opts.allowOrganizationNamesInAuthenticationApi ?? false,
      defaults,
    });
    for (const [organization, quota] of Object.entries(opts.organizationQuotas ?? {})) {
      organizationQuotas.set(organizationDirectory.organizationId(organization), checkedQuota(quota, `organizationQuotas.${organization}`));
    }
    const directory = organizationDirectory;
    const provider = createProvider(oidcProvider, issuer, signingJwk, {
      apis,
      clientGrants,
      clientMetadata: (clientId) => {
        const client = clients.get(clientId);
        return client && providerMetadata(client, propagationMode);
      },
      grantTypes: (clientId) => clients.get(clientId)?.grantTypes ?? [],
      missingAudience: () => missingAudience,
      chargeQuota,
      organization: (clientId, audience, requested) => directory.resolve(clientId, audience, requested),
    });
    inner = createServer(provider.callback());
    innerPort = await listenOnLoopback(inner, 0);
  } catch (err) {
    await closeServer(front);
    throw err;
  }
  for (const client of clients.values()) {
    if (client.clientSecret !== undefined) record('client_secret', client.clientSecret);
  }
  const agent = new Agent({ keepAlive: true });
  markReady();

  function forward(req: IncomingMessage, headers: OutgoingHttpHeaders, body: Buffer): Promise<Upstream> {
    return new Promise((resolve, reject) => {
      const upstreamReq = httpRequest(
        { host: '127.0.0.1', port: innerPort, method: req.method, path: req.url, headers: { ...headers, 'content-length': body.length }, agent },
        (upstreamRes) => {
          const chunks: Buffer[] = [];
          upstreamRes.on('data', (chunk: Buffer) => chunks.push(chunk));
          upstreamRes.on('end', () => resolve({ status: upstreamRes.statusCode ?? 502, headers: upstreamRes.headers, body: Buffer.concat(chunks) }));
          upstreamRes.on('error', reject);
        },
      );
      upstreamReq.on('error', reject);
      upstreamReq.end(body);
    });
  }

  async function handleFront(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const pathname = new URL(req.url ?? '/', origin).pathname;
    if (pathname.startsWith(MANAGEMENT_PREFIX) || pathname === MANAGEMENT_PREFIX.slice(0, -1)) {
      await handleManagement(req, res, pathname);
      return;
    }
    const isTokenRequest = req.method === 'POST' && pathname === TOKEN_PATH;
    if (!isTokenRequest) {
      const upstream = await forward(req, endToEndHeaders(req.headers), await readBody(req));
      send(res, upstream.status, upstream.headers, upstream.body);
      return;
    }

    requestCount += 1;
    const currentFault = fault;
    if (currentFault === 'hang') return;
    if (currentFault === 'drop') {
      req.socket.destroy();
      return;
    }
    if (currentFault) {
      const isText = typeof currentFault.body === 'string';
      const body = Buffer.from(isText ? String(currentFault.body) : JSON.stringify(currentFault.body));
      const contentType = isText ? 'text/plain; charset=utf-8' : 'application/json; charset=utf-8';
      send(res, currentFault.status, { 'content-type': contentType, ...currentFault.headers }, body);
      return;
    }

    // §8: Auth0's edge counts every request, refused ones too, before anything else.
    const rate = tokenBucket.take();
    if (!rate.allowed) {
      sendAnswer(res, rateLimitedAnswer(rateLimitAnswer, rate.state));
      return;
    }
    const tenantHeaders = rateLimitHeaders(rate.state);
    const answer = (result: WireAnswer): void => sendAnswer(res, { ...result, headers: { ...tenantHeaders, ...result.headers } });

    let form: URLSearchParams | undefined;
    let raw: Buffer;
    try {
      raw = await readBody(req);
      form = toAuth0Form(req.headers['content-type'], raw);
    } catch (err) {
      if (!(err instanceof FrontError)) throw err;
      answer(oauthError(err.status, err.error, err.description));
      return;
    }
    const organization = form?.get('organization') ?? undefined;
    form?.delete('organization');

    // §6 (unknown order): refused before the credential is even looked at.
    if (grantTypeCheck === 'before-authentication' && form?.get('grant_type') === 'client_credentials') {
      const claimed = clients.get(claimedClientId(form, req.headers.authorization) ?? '');
      if (claimed && !claimed.grantTypes.includes('client_credentials')) {
        answer(oauthError(403, 'unauthorized_client', grantTypeNotAllowed('client_credentials'), { error_uri: GRANT_TYPES_ERROR_URI }));
        return;
      }
    }

    // A content type the front does not translate goes through unchanged: oidc-provider then
    // answers with its own OAuth-shaped invalid_request.
    const headers: OutgoingHttpHeaders = {
      ...withoutPrivateHeaders(endToEndHeaders(req.headers)),
      accept: 'application/json',
      'accept-encoding': 'identity',
      ...(organization ? { [ORGANIZATION_HEADER]: organization } : {}),
    };
    const upstream = form
      ? await forward(req, { ...headers, 'content-type': 'application/x-www-form-urlencoded' }, Buffer.from(form.toString()))
      : await forward(req, headers, raw);
    answer(await tokenAnswer(upstream, req.headers['accept-encoding'], form));
  }

  /** oidc-provider's answer to a token request, as Auth0 gives it (§1-§12). */
  async function tokenAnswer(upstream: Upstream, acceptEncoding: string | undefined, form: URLSearchParams | undefined): Promise<WireAnswer> {
    const take = (name: string): string | undefined => {
      const value = upstream.headers[name];
      delete upstream.headers[name];
      return typeof value === 'string' ? value : undefined;
    };
    const clientId = take(ISSUED_TO_HEADER);
    const audience = take(AUDIENCE_HEADER);
    const refusal = take(REFUSAL_HEADER);
    const quotaJson = take(QUOTA_HEADER);
    const issuedOrganization = take(ISSUED_ORGANIZATION_HEADER);
    // §1: whether Auth0 sends WWW-Authenticate is unknown; its recorded answers show none.
    delete upstream.headers['www-authenticate'];
    const quotaHeaders = quotaJson === undefined ? {} : (JSON.parse(quotaJson) as Record<string, string>);
    const withQuota = (result: WireAnswer): WireAnswer => ({ ...result, headers: { ...result.headers, ...quotaHeaders } });

    if (upstream.status === 401 && refusal !== undefined) {
      // §1, §2: a refused secret or unknown client; §7: a refused client assertion.
      return refusal === 'assertion' ? assertionFailureAnswer(assertionFailure) : refusedCredentialAnswer(refusedCredential);
    }
    if (upstream.status !== 200 || clientId === undefined) {
      const body = parseObject(upstream.body);
      if (upstream.status === 403 && body?.error === 'unauthorized_client') {
        // §6: Auth0 adds an error_uri.
        return jsonAnswer(403, { ...body, error_uri: GRANT_TYPES_ERROR_URI });
      }
      return withQuota({ status: upstream.status, headers: endToEndHeaders(upstream.headers), body: upstream.body });
    }

    const issued = JSON.parse(upstream.body.toString('utf8')) as { access_token: string; expires_in: number; scope?: string; token_type: string };
    const accessToken = await tamper(issued.access_token);
    const scope = issued.scope ?? '';
    issuedTokens.push({
      clientId,
      audience: audience ?? form?.get('resource') ?? '',
      scope,
      accessToken,
      expiresIn: issued.expires_in,
      ...(issuedOrganization === undefined ? {} : { organization: issuedOrganization }),
    });
    record('access_token', accessToken);
    // §12: Auth0's success shape and key order, `scope` only when granted; gzip when asked.
    const body = Buffer.from(JSON.stringify(successBody(accessToken, issued.expires_in, scope, issued.token_type)));
    const headers = endToEndHeaders(upstream.headers);
    const gzip = compression === 'always' || (compression === 'when-asked' && acceptsGzip(acceptEncoding));
    if (!gzip) return withQuota({ status: 200, headers, body });
    return withQuota({ status: 200, headers: { ...headers, 'content-encoding': 'gzip', vary: 'Accept-Encoding' }, body: gzipSync(body) });
  }

  /**
   * §9: the quotas of an issuance that passed every other check. Counts it unless a quota is
   * exhausted; returns the headers to send and, when refused, the 429's description.
   */
  function chargeQuota(clientId: string, organization: string | undefined): QuotaOutcome {
    const now = Date.now();
    const clientExhausted = clientQuotas.exhausted(clientId, now);
    const organizationExhausted = organization === undefined ? undefined : organizationQuotas.exhausted(organization, now);
    let refusal: { description: string; bucket: QuotaBucket } | undefined;
    if (clientExhausted) refusal = { description: CLIENT_QUOTA_EXCEEDED, bucket: clientExhausted };
    else if (organizationExhausted) refusal = { description: ORGANIZATION_QUOTA_EXCEEDED, bucket: organizationExhausted };
    else {
      clientQuotas.consume(clientId, now);
      if (organization !== undefined) organizationQuotas.consume(organization, now);
    }
    const headers: Record<string, string> = {};
    const clientBuckets = clientQuotas.buckets(clientId, now);
    if (clientBuckets.length > 0) headers['auth0-client-quota-limit'] = quotaHeader(clientBuckets, unenforcedRemaining);
    const organizationBuckets = organization === undefined ? [] : organizationQuotas.buckets(organization, now);
    if (organizationBuckets.length > 0) headers['auth0-organization-quota-limit'] = quotaHeader(organizationBuckets, unenforcedRemaining);
    if (refusal) Object.assign(headers, quotaRefusalHeaders(refusal.bucket));
    return { headers, ...(refusal ? { refusal: refusal.description } : {}) };
  }

  async function tamper(accessToken: string): Promise<string> {
    const mode = tamperMode;
    if (mode === null || accessToken.split('.').length !== 3) return accessToken;
    const header = { ...decodeProtectedHeader(accessToken), alg: 'RS256' };
    const payload = decodeJwt(accessToken);
    return mode === 'wrong-key'
      ? new SignJWT(payload).setProtectedHeader(header).sign(foreignKeys.privateKey)
      : new SignJWT({ ...payload, aud: WRONG_AUDIENCE }).setProtectedHeader(header).sign(signingKeys.privateKey);
  }

  // -------------------------------------------------------------------------------------------
  // Management API

  async function handleManagement(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> {
    managementCount += 1;
    // §8, §13: the Management API's own limit, `X-RateLimit-*` on every answer.
    const rate = managementBucket.take();
    const headers = rateLimitHeaders(rate.state);
    if (!rate.allowed) {
      sendAnswer(res, jsonAnswer(429, new ManagementError(429, MANAGEMENT_GLOBAL_LIMIT, 'too_many_requests').toJSON(), headers));
      return;
    }
    let result: ManagementResult;
    try {
      result = await manage(req, pathname);
    } catch (err) {
      const failure = err instanceof FrontError ? new ManagementError(err.status, err.description) : err;
      if (!(failure instanceof ManagementError)) throw failure;
      sendAnswer(res, jsonAnswer(failure.status, failure.toJSON(), headers));
      return;
    }
    if (result.body === undefined) sendAnswer(res, { status: result.status, headers, body: Buffer.alloc(0) });
    else sendAnswer(res, jsonAnswer(result.status, result.body, headers));
  }

  async function manage(req: IncomingMessage, pathname: string): Promise<ManagementResult> {
    const raw = await readBody(req);
    const organizationEndpoint = organizationRoute(req.method ?? 'GET', pathname);
    if (organizationEndpoint) {
      // §14: the associations of client grants with organizations.
      await authenticate(req.headers.authorization, organizationEndpoint.scopes);
      const query = new URL(req.url ?? '/', origin).searchParams;
      return organizationDirectory.manage(organizationEndpoint, () => jsonBody(req.headers['content-type'], raw), query);
    }
    const route = managementRoute(req.method ?? 'GET', pathname);
    if (!route) throw new ManagementError(404, 'Not Found');
    const scopes = await authenticate(req.headers.authorization, route.scopes);
    const client = clients.get(route.clientId);
    if (!client) throw new ManagementError(404, 'The client does not exist', 'inexistent_client');
    const body = (): Record<string, unknown> => jsonBody(req.headers['content-type'], raw);

    switch (route.action) {
      case 'get-client':
        return { status: 200, body: clientJson(client, scopes.has('read:client_keys')) };
      case 'patch-client':
        attachCredentials(client, body());
        return { status: 200, body: clientJson(client, scopes.has('read:client_keys')) };
      case 'rotate-secret':
        rotateSecret(client);
        return { status: 200, body: clientJson(client, true) };
      case 'create-credential':
        return { status: 201, body: credentialJson(await createCredential(client, body())) };
      case 'list-credentials':
        // §13: GET answers carry `expires_at: null`; the POST answer has none.
        return { status: 200, body: client.credentials.map(listedCredentialJson) };
      case 'get-credential':
        return { status: 200, body: listedCredentialJson(knownCredential(client, route.credentialId)) };
      case 'delete-credential':
        deleteCredential(client, route.credentialId);
        return { status: 204 };
    }
  }

  /** Verifies a Management API bearer token as Auth0 does; returns its scopes. */
  async function authenticate(authorization: string | undefined, anyOf: readonly string[]): Promise<Set<string>> {
    if (authorization === undefined || authorization === '') throw new ManagementError(401, 'Missing authentication');
    const token = /^Bearer +(\S+) *$/i.exec(authorization)?.[1];
    if (token === undefined) throw new ManagementError(401, 'Bad HTTP authentication header format');
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, signingKeys.publicKey, {
        issuer,
        audience: mgmtAudience,
        algorithms: ['RS256'],
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      const message = tokenErrorMessage(err);
      // §13: the recorded expired-token 401 carries `attributes`.
      throw new ManagementError(401, message, undefined, err instanceof joseErrors.JWTExpired ? { error: message } : undefined);
    }
    const scopes = new Set(typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : []);
    if (!anyOf.some((scope) => scopes.has(scope))) {
      throw new ManagementError(403, `Insufficient scope, expected any of: ${anyOf.join(',')}`, 'insufficient_scope');
    }
    return scopes;
  }

  function rotateSecret(client: ClientState): void {
    if (client.authMethod === 'private_key_jwt' || client.clientSecret === undefined) {
      throw new ManagementError(400, 'Cannot rotate the secret of a client that authenticates with private_key_jwt');
    }
    const secret = randomBytes(48).toString('base64url');
    client.previousSecret = client.clientSecret;
    client.clientSecret = secret;
    client.pendingSecret = randomBytes(32).toString('base64url');
    client.secretAcceptedFrom = Date.now() + propagationMs;
    record('client_secret', secret);
  }

  async function createCredential(client: ClientState, body: Record<string, unknown>): Promise<CredentialState> {
    const unknownFields = Object.keys(body).filter((field) => !['credential_type', 'name', 'pem', 'alg'].includes(field));
    if (unknownFields.length > 0) throw invalidBody(`Additional properties not allowed: ${unknownFields.join(',')}`);
    if (body.credential_type !== 'public_key') {
      throw invalidBody(`credential_type must be 'public_key' (the only type the local tenant supports)`);
    }
    if (body.name !== undefined && typeof body.name !== 'string') throw invalidBody('name must be a string');
    if (typeof body.pem !== 'string') throw invalidBody('Missing required property: pem');
    if (body.alg !== undefined && !CREDENTIAL_ALGS.includes(body.alg as CredentialAlg)) {
      throw invalidBody(`alg must be one of ${CREDENTIAL_ALGS.join(', ')}`);
    }
    if (client.credentials.length >= MAX_CREDENTIALS) {
      throw new ManagementError(409, `The client already has ${MAX_CREDENTIALS} credentials, the maximum; delete an unused one first`);
    }
    const credential = await newCredential(body.name ?? '', body.pem, (body.alg as CredentialAlg | undefined) ?? 'RS256');
    if (client.credentials.some((existing) => existing.kid === credential.kid)) {
      throw new ManagementError(409, 'The client already has a credential with this public key');
    }
    client.credentials.push(credential);
    return credential;
  }

  function attachCredentials(client: ClientState, body: Record<string, unknown>): void {
    const unknownFields = Object.keys(body).filter((field) => field !== 'client_authentication_methods');
    if (unknownFields.length > 0) {
      throw invalidBody(`the local tenant updates only client_authentication_methods, not: ${unknownFields.join(',')}`);
    }
    const methods = body.client_authentication_methods;
    const pkjwt = isObject(methods) ? methods.private_key_jwt : undefined;
    const list = isObject(pkjwt) ? pkjwt.credentials : undefined;
    if (!isObject(methods) || Object.keys(methods).some((method) => method !== 'private_key_jwt') || !Array.isArray(list)) {
      throw invalidBody('expected client_authentication_methods: { private_key_jwt: { credentials: [{ id }, …] } }');
    }
    if (client.authMethod !== 'private_key_jwt') {
      throw new ManagementError(400, `Client ${client.clientId} authenticates with ${client.authMethod}, not private_key_jwt`);
    }
    if (list.length < 1 || list.length > MAX_CREDENTIALS) {
      throw invalidBody(`private_key_jwt.credentials must hold 1 to ${MAX_CREDENTIALS} items, got ${list.length}`);
    }
    const ids = list.map((item: unknown) => {
      if (!isObject(item) || typeof item.id !== 'string' || Object.keys(item).length !== 1) throw invalidBody('each credential must be { id }');
      if (!client.credentials.some((credential) => credential.id === item.id)) {
        throw invalidBody(`credential ${item.id} does not belong to client ${client.clientId}`);
      }
      return item.id;
    });
    if (new Set(ids).size !== ids.length) throw invalidBody('private_key_jwt.credentials has duplicate ids');
    client.attached = ids;
    client.jwks = undefined;
  }

  function deleteCredential(client: ClientState, credentialId: string): void {
    // §13: DELETE is idempotent: a second DELETE of the same id also answered 204.
    const credential = client.credentials.find((existing) => existing.id === credentialId);
    if (!credential) return;
    if (client.attached.includes(credential.id)) {
      throw new ManagementError(
        409,
        `Credential ${credential.id} is in use by client_authentication_methods.private_key_jwt; detach it from the client first`,
      );
    }
    client.credentials = client.credentials.filter((existing) => existing !== credential);
  }

  /** A client grant's audience, with `'management'` standing for the Management API. */
  const grantAudience = (audience: string): string => (audience === MANAGEMENT_GRANT_KEY ? mgmtAudience : audience);

  let closing: Promise<void> | undefined;
  return {
    origin,
    issuer,
    port,
    managementAudience: mgmtAudience,
    tokenRequests: () => requestCount,
    managementRequests: () => managementCount,
    issued: () => [...issuedTokens],
    resetCounters: () => {
      requestCount = 0;
      managementCount = 0;
      issuedTokens = [];
    },
    setClientSecret: (clientId, secret) => {
      const client = knownClient(clients, clientId);
      client.clientSecret = secret;
      client.previousSecret = undefined;
      client.secretAcceptedFrom = 0;
      record('client_secret', secret);
    },
    clientSecret: (clientId) => knownClient(clients, clientId).clientSecret,
    setClientJwks: (clientId, jwks) => {
      const client = knownClient(clients, clientId);
      client.jwks = jwks;
      client.attached = [];
    },
    clientCredentials: (clientId) => {
      const client = knownClient(clients, clientId);
      return client.credentials.map((credential) => ({ ...credentialJson(credential), attached: client.attached.includes(credential.id) }));
    },
    setSecretPropagationMs: (ms) => {
      propagationMs = checkedDelay(ms);
    },
    setSecretPropagationMode: (mode) => {
      propagationMode = mode;
    },
    setClientGrantTypes: (clientId, grantTypes) => {
      knownClient(clients, clientId).grantTypes = [...grantTypes];
    },
    setGrantTypeCheck: (check) => {
      grantTypeCheck = check;
    },
    setRefusedCredentialAnswer: (next) => {
      refusedCredential = next;
    },
    setAssertionFailureAnswer: (next) => {
      assertionFailure = next;
    },
    setMissingAudienceAnswer: (next) => {
      missingAudience = next;
    },
    setRateLimit: (limit, api = 'authentication') => {
      (api === 'management' ? managementBucket : tokenBucket).set(limit);
    },
    setRateLimitAnswer: (next) => {
      rateLimitAnswer = next;
    },
    setClientQuota: (clientId, quota) => {
      knownClient(clients, clientId);
      clientQuotas.set(clientId, quota);
    },
    setOrganizationQuota: (organization, quota) => {
      organizationQuotas.set(organizationDirectory.organizationId(organization), quota);
    },
    clientGrantId: (clientId, audience) => organizationDirectory.clientGrantId(clientId, grantAudience(audience)),
    setClientGrantOrganizations: (clientId, audience, settings) => {
      organizationDirectory.setSettings(clientId, grantAudience(audience), settings);
    },
    associateOrganization: (organization, clientId, audience) => {
      organizationDirectory.associate(organization, clientId, grantAudience(audience));
    },
    dissociateOrganization: (organization, clientId, audience) => {
      organizationDirectory.dissociate(organization, clientId, grantAudience(audience));
    },
    setAllowOrganizationNames: (allow) => {
      organizationDirectory.allowNames = allow;
    },
    setOrganizationRefusalAnswer: (next) => {
      organizationDirectory.refusalAnswer = next;
    },
    setOrganizationParameter: (mode) => {
      organizationDirectory.parameter = mode;
    },
    setUnenforcedQuotaRemaining: (mode) => {
      unenforcedRemaining = mode;
    },
    setCompression: (mode) => {
      compression = mode;
    },
    setTokenTtl: (audience, seconds) => {
      const api = apis.get(audience);
      if (api === undefined) throw new Error(`no API ${audience} in this tenant`);
      api.tokenTtlSeconds = seconds;
    },
    setTamper: (mode) => {
      tamperMode = mode;
    },
    setFault: (next) => {
      fault = next;
    },
    close: () => {
      closing ??= (async () => {
        await Promise.all([closeServer(front), closeServer(inner)]);
        agent.destroy();
      })();
      return closing;
    },
  };
}

function knownCredential(client: ClientState, credentialId: string): CredentialState {
  const credential = client.credentials.find((existing) => existing.id === credentialId);
  if (!credential) throw new ManagementError(404, 'The credential does not exist');
  return credential;
}

/** The client as Auth0's Management API returns it (the fields this tenant has). */
function clientJson(client: ClientState, includeSecret: boolean): Record<string, unknown> {
  return {
    client_id: client.clientId,
    name: client.name,
    app_type: 'non_interactive',
    is_first_party: true,
    grant_types: [...client.grantTypes],
    jwt_configuration: { alg: 'RS256', lifetime_in_seconds: 36000, secret_encoded: false },
    ...(client.authMethod === 'private_key_jwt'
      ? { client_authentication_methods: { private_key_jwt: { credentials: client.attached.map((id) => ({ id })) } } }
      : { token_endpoint_auth_method: client.authMethod }),
    ...(includeSecret && client.clientSecret !== undefined ? { client_secret: client.clientSecret } : {}),
  };
}

/** §13: a credential as GET lists it */
function listedCredentialJson(credential: CredentialState): Record<string, unknown> {
  return { ...credentialJson(credential), expires_at: null };
}

/** §13: a credential as POST answers it */
function credentialJson(credential: CredentialState): Omit<TenantCredential, 'attached'> {
  return {
    id: credential.id,
    name: credential.name,
    credential_type: 'public_key',
    kid: credential.kid,
    alg: credential.alg,
    created_at: credential.createdAt,
    updated_at: credential.createdAt,
  };
}

/**
 * The client's metadata as oidc-provider reads it on every request. During a propagation window
 * (§13) the secret is one nobody knows ('neither') or, per request, the old or the new one.
 */
function providerMetadata(client: ClientState, propagation: SecretPropagation): Record<string, unknown> {
  let secret = client.clientSecret;
  if (Date.now() < client.secretAcceptedFrom) {
    secret = propagation === 'neither' ? client.pendingSecret : Math.random() < 0.5 ? (client.previousSecret ?? secret) : secret;
  }
  const attachedKeys = client.credentials.filter((credential) => client.attached.includes(credential.id)).map((credential) => credential.jwk);
  // A private_key_jwt client always gets a key set, even an empty one: oidc-provider answers a client
  // without one with 400 invalid_client_metadata, Auth0 with 401 invalid_client.
  const hasKeys = client.authMethod === 'private_key_jwt' || client.jwks !== undefined || client.attached.length > 0;
  return {
    client_id: client.clientId,
    client_secret: secret,
    token_endpoint_auth_method: client.authMethod,
    jwks: hasKeys ? { keys: [...(client.jwks?.keys ?? []), ...attachedKeys] } : undefined,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
  };
}

async function initialClientState(client: TenantClient): Promise<ClientState> {
  const credentials: CredentialState[] = [];
  if (client.credentials !== undefined) {
    const fail = (problem: string): Error => new Error(`client ${client.clientId}: ${problem}`);
    if (client.authMethod !== 'private_key_jwt') throw fail('credentials are for private_key_jwt clients');
    if (client.jwks !== undefined) throw fail('give jwks or credentials, not both');
    if (client.credentials.length > MAX_CREDENTIALS) throw fail(`at most ${MAX_CREDENTIALS} credentials`);
    for (const input of client.credentials) {
      let credential: CredentialState;
      try {
        credential = await newCredential(input.name, input.pem, input.alg ?? 'RS256');
      } catch (err) {
        throw fail(`credential ${input.name}: ${err instanceof Error ? err.message : String(err)}`);
      }
      if (credentials.some((existing) => existing.kid === credential.kid)) throw fail(`credential ${input.name} repeats a public key`);
      credentials.push(credential);
    }
  }
  return {
    clientId: client.clientId,
    name: client.name ?? client.clientId,
    authMethod: client.authMethod,
    clientSecret: client.clientSecret,
    previousSecret: undefined,
    secretAcceptedFrom: 0,
    pendingSecret: '',
    jwks: client.jwks,
    credentials,
    attached: credentials.map((credential) => credential.id),
    grantTypes: [...(client.grantTypes ?? ['client_credentials'])],
  };
}

/** A credential for an SPKI PEM RSA public key; kid = its RFC 7638 thumbprint. Throws a 400 ManagementError. */
async function newCredential(name: string, pem: string, alg: CredentialAlg): Promise<CredentialState> {
  if (!pem.includes('-----BEGIN PUBLIC KEY-----')) throw invalidBody('pem must be an SPKI PEM public key (-----BEGIN PUBLIC KEY-----)');
  let key: ReturnType<typeof createPublicKey>;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch {
    throw invalidBody('pem is not a valid public key');
  }
  if (key.asymmetricKeyType !== 'rsa') throw invalidBody('pem must be an RSA public key');
  if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) throw invalidBody('the RSA key must be at least 2048 bits');
  const publicJwk = key.export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(publicJwk, 'sha256');
  return {
    id: credentialId(),
    name,
    alg,
    kid,
    jwk: { ...publicJwk, kid, alg, use: 'sig' },
    createdAt: new Date().toISOString(),
  };
}

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** 'cred_' and 22 random alphanumerics, like Auth0's credential ids. */
function credentialId(): string {
  let id = 'cred_';
  while (id.length < 27) {
    for (const byte of randomBytes(32)) {
      // 248 = 4 * 62: rejecting larger bytes keeps every character equally likely.
      if (byte < 248 && id.length < 27) id += ID_ALPHABET[byte % 62];
    }
  }
  return id;
}

function checkedDelay(ms: number): number {
  if (!Number.isFinite(ms) || ms < 0) throw new Error(`secretPropagationMs must be a finite number >= 0, got ${ms}`);
  return ms;
}

/** The grants (or their organization settings, §14) with the `'management'` key replaced by the Management API audience. */
function resolveGrants<T>(grants: Record<string, Record<string, T>>, mgmtAudience: string): Record<string, Record<string, T>> {
  const resolved: Record<string, Record<string, T>> = {};
  for (const [clientId, byAudience] of Object.entries(grants)) {
    const audiences: Record<string, T> = {};
    for (const [key, scopes] of Object.entries(byAudience)) {
      const audience = key === MANAGEMENT_GRANT_KEY ? mgmtAudience : key;
      if (Object.hasOwn(audiences, audience)) {
        throw new Error(`client grant of ${clientId} grants the Management API twice ('${MANAGEMENT_GRANT_KEY}' and ${mgmtAudience})`);
      }
      audiences[audience] = scopes;
    }
    resolved[clientId] = audiences;
  }
  return resolved;
}

function validateGrants(
  grants: TenantOptions['clientGrants'],
  clients: ReadonlyMap<string, unknown>,
  apis: ReadonlyMap<string, TenantApi>,
): void {
  for (const [clientId, byAudience] of Object.entries(grants)) {
    if (!clients.has(clientId)) throw new Error(`client grant for unknown client ${clientId}`);
    for (const [audience, scopes] of Object.entries(byAudience)) {
      const api = apis.get(audience);
      if (!api) throw new Error(`client grant of ${clientId} for unknown API ${audience}`);
      const undefinedScopes = scopes.filter((scope) => !api.scopes.includes(scope));
      if (undefinedScopes.length > 0) {
        throw new Error(`client grant of ${clientId} for ${audience} has scopes the API does not define: ${undefinedScopes.join(' ')}`);
      }
    }
  }
}

function knownClient(clients: ReadonlyMap<string, ClientState>, clientId: string): ClientState {
  const client = clients.get(clientId);
  if (!client) throw new Error(`unknown client ${clientId}`);
  return client;
}

/**
 * Auth0's token request (JSON or form, `audience`) as the form oidc-provider takes (`resource`).
 * `resource` is not an Auth0 parameter, so a client-sent one is dropped: only `audience` selects
 * the API. Returns undefined for other content types.
 */
function toAuth0Form(contentType: string | undefined, raw: Buffer): URLSearchParams | undefined {
  const mediaType = contentType?.split(';')[0]?.trim().toLowerCase();
  let form: URLSearchParams;
  if (mediaType === 'application/x-www-form-urlencoded') {
    form = new URLSearchParams(raw.toString('utf8'));
  } else if (mediaType === 'application/json') {
    form = jsonToForm(raw);
  } else {
    return undefined;
  }
  // §10: a blank audience is a missing one.
  const audiences = form.getAll('audience').filter((audience) => audience.trim() !== '');
  form.delete('audience');
  form.delete('resource');
  for (const audience of audiences) form.append('resource', audience);
  return form;
}

/** The client a token request names (not yet authenticated): `client_id`, Basic auth, or the assertion's `sub`. */
function claimedClientId(form: URLSearchParams, authorization: string | undefined): string | undefined {
  const fromForm = form.get('client_id');
  if (fromForm) return fromForm;
  const basic = /^Basic +(\S+)$/i.exec(authorization ?? '')?.[1];
  if (basic !== undefined) {
    const pair = Buffer.from(basic, 'base64').toString('utf8');
    const colon = pair.indexOf(':');
    if (colon > 0) {
      try {
        return decodeURIComponent(pair.slice(0, colon).replace(/\+/g, ' '));
      } catch {
        return undefined;
      }
    }
  }
  const assertion = form.get('client_assertion');
  if (assertion) {
    try {
      const { sub } = decodeJwt(assertion);
      return sub;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** A JSON object body, or undefined. */
function parseObject(body: Buffer): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    return isObject(parsed) ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** The client's headers without any the front and oidc-provider use between themselves. */
function withoutPrivateHeaders(headers: OutgoingHttpHeaders): OutgoingHttpHeaders {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !name.startsWith(PRIVATE_HEADER_PREFIX)));
}

function jsonToForm(raw: Buffer): URLSearchParams {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new FrontError(400, 'invalid_request', 'failed to parse the request body');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new FrontError(400, 'invalid_request', 'the request body must be a JSON object');
  }
  const form = new URLSearchParams();
  for (const [name, value] of Object.entries(parsed)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item === null || item === undefined) continue;
      form.append(name, typeof item === 'object' ? JSON.stringify(item) : String(item));
    }
  }
  return form;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new FrontError(413, 'invalid_request', 'request entity too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function endToEndHeaders(headers: IncomingHttpHeaders | OutgoingHttpHeaders): OutgoingHttpHeaders {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !HOP_BY_HOP.has(name)));
}

function send(res: ServerResponse, status: number, headers: IncomingHttpHeaders | OutgoingHttpHeaders, body: Buffer): void {
  res.writeHead(status, { ...endToEndHeaders(headers), 'content-length': body.length });
  res.end(body);
}

function sendAnswer(res: ServerResponse, answer: WireAnswer): void {
  send(res, answer.status, answer.headers, answer.body);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, { 'content-type': 'application/json; charset=utf-8' }, Buffer.from(JSON.stringify(body)));
}


