/**
 * oidc-provider configured as an Auth0 tenant's `/oauth/token` (the engine behind the local tenant,
 * auth0Tenant.ts). oidc-provider authenticates the client (client_secret_post / _basic,
 * private_key_jwt) and issues the token; the hooks here apply Auth0's policy, which needs the
 * authenticated client and so runs after client authentication, as Auth0 checks credentials
 * before grants: grant types (docs/auth0-wire-behaviour.md §6), audiences and client grants (§3,
 * §5, §10), scopes (§4), the assertion limits (§7), the M2M quotas (§9) and organizations (§14). Its errors are
 * rendered by oidc-provider as `{error, error_description}`; the tenant's front reshapes them where
 * Auth0's answer differs (§1, §6, §7), told by the private headers below.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { JWK } from 'jose';
import { APIV1_REFUSED, NO_AUDIENCE, grantTypeNotAllowed, noClientGrant, scopesNotGranted, serviceNotEnabled } from './auth0Answers.js';
import type { MissingAudienceAnswer } from './auth0Answers.js';
import type { OrganizationOutcome, ResolvedOrganization } from './auth0Organizations.js';
import type { TenantApi, TenantOptions } from './auth0Tenant.js';

export const TOKEN_PATH = '/oauth/token';
/** Auth0's default access-token lifetime (§12) */
export const DEFAULT_TTL_SECONDS = 86_400;

/**
 * Private headers between the front and oidc-provider (never sent to or taken from a client):
 * which client a token was issued to, for which audience ('' for §10's opaque legacy token), what
 * kind of credential was refused (§1 or §7), the quota outcome (§9), and the request's organization.
 */
export const PRIVATE_HEADER_PREFIX = 'x-local-tenant-';
export const ISSUED_TO_HEADER = `${PRIVATE_HEADER_PREFIX}issued-to`;
export const AUDIENCE_HEADER = `${PRIVATE_HEADER_PREFIX}audience`;
export const REFUSAL_HEADER = `${PRIVATE_HEADER_PREFIX}refusal`;
export const QUOTA_HEADER = `${PRIVATE_HEADER_PREFIX}quota`;
export const ORGANIZATION_HEADER = `${PRIVATE_HEADER_PREFIX}organization`;
/** §14: the `org_id` a token was issued for */
export const ISSUED_ORGANIZATION_HEADER = `${PRIVATE_HEADER_PREFIX}issued-organization`;
/** §7: Auth0's limits on a client assertion */
const ASSERTION_MAX_BYTES = 2048;
const ASSERTION_MAX_LIFETIME_SECONDS = 300;
const ASSERTION_MAX_CLAIM_LENGTH = 64;
const ASSERTION_CLOCK_SKEW_SECONDS = 10;

// ---------------------------------------------------------------------------------------------
// The small part of oidc-provider's API used here (the package ships no type declarations).

interface ProviderClient {
  clientId: string;
  clientAuthMethod?: string;
}

interface ProviderContext {
  oidc: {
    client?: ProviderClient;
    params: { scope?: string | undefined; client_assertion?: string | undefined };
  };
  headers: IncomingHttpHeaders;
  set(header: string, value: string): void;
}

interface ProviderError extends Error {
  statusCode?: number;
  error?: string;
}

interface ProviderToken {
  clientId: string;
  resourceServer?: { accessTokenTTL?: number };
}

interface ProviderJwt {
  header?: Record<string, unknown>;
  payload: Record<string, unknown>;
}

interface ResourceServerInfo {
  scope: string;
  audience: string;
  accessTokenTTL: number;
  accessTokenFormat: 'jwt' | 'opaque';
  jwt: { sign: { alg: 'RS256' } };
}

export interface OidcProvider {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  on(event: 'grant.success', listener: (ctx: ProviderContext) => void): void;
  on(event: 'grant.error' | 'server_error', listener: (ctx: ProviderContext, err: ProviderError) => void): void;
}

export interface OidcProviderModule {
  Provider: new (issuer: string, configuration: Record<string, unknown>) => OidcProvider;
  errors: {
    CustomOIDCProviderError: new (error: string, description: string) => Error;
    InvalidClientAuth: new (detail: string) => Error;
  };
}

/**
 * oidc-provider 9 prints "Unsupported runtime" when imported under Node 20 (it targets 22+). This
 * repo's engine is Node >= 20.19 and everything the tenant uses works there (its tests prove it),
 * so that one line is dropped to keep output clean; any other warning passes through.
 */
export async function loadOidcProvider(): Promise<OidcProviderModule> {
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (!String(args[0]).includes('Unsupported runtime')) warn(...args);
  };
  try {
    // @ts-expect-error -- oidc-provider ships no type declarations; its used surface is typed above.
    return (await import('oidc-provider')) as OidcProviderModule;
  } finally {
    console.warn = warn;
  }
}

/**
 * Minimal in-memory storage for oidc-provider's models. Clients come from the tenant's live client
 * table, so secret and key changes apply to the very next request (oidc-provider caches clients by
 * a hash of their metadata). Other models (opaque tokens, client-assertion jti replay detection)
 * are kept until they expire. Providing an adapter also avoids oidc-provider's dev-adapter warning.
 */
function createAdapterClass(clientMetadata: (clientId: string) => Record<string, unknown> | undefined) {
  const store = new Map<string, { payload: Record<string, unknown>; expiresAt: number }>();
  return class TenantAdapter {
    readonly #model: string;

    constructor(model: string) {
      this.#model = model;
    }

    async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number): Promise<void> {
      const expiresAt = expiresIn === undefined ? Infinity : Date.now() + expiresIn * 1000;
      store.set(`${this.#model}:${id}`, { payload, expiresAt });
    }

    async find(id: string): Promise<Record<string, unknown> | undefined> {
      if (this.#model === 'Client') return clientMetadata(id);
      const key = `${this.#model}:${id}`;
      const entry = store.get(key);
      if (entry === undefined) return undefined;
      if (entry.expiresAt <= Date.now()) {
        store.delete(key);
        return undefined;
      }
      return entry.payload;
    }

    async destroy(id: string): Promise<void> {
      store.delete(`${this.#model}:${id}`);
    }
  };
}

export interface TenantTables {
  apis: ReadonlyMap<string, TenantApi>;
  clientGrants: TenantOptions['clientGrants'];
  /** the live client table, read on every request */
  clientMetadata: (clientId: string) => Record<string, unknown> | undefined;
  /** the client's Auth0 grant types (§6) */
  grantTypes: (clientId: string) => readonly string[];
  /** the current §10 switch */
  missingAudience: () => MissingAudienceAnswer;
  /** §9: checks and counts the quotas of an issuance */
  chargeQuota: (clientId: string, organization: string | undefined) => QuotaOutcome;
  /** §14: the organization of a request for this client grant (`requested` = the `organization` parameter), or its refusal */
  organization: (clientId: string, audience: string, requested: string | undefined) => OrganizationOutcome;
}

/** §9: the quota headers of a token request, and the 429's description when a quota refused it. */
export interface QuotaOutcome {
  headers: Record<string, string>;
  refusal?: string;
}

/** The audience oidc-provider issues §10's opaque legacy token for; reachable only through a missing audience. */
const LEGACY_AUDIENCE = 'urn:local-tenant:legacy-opaque';

/** oidc-provider configured as an Auth0 tenant's client_credentials endpoint. */
export function createProvider(
  { Provider, errors }: OidcProviderModule,
  issuer: string,
  signingJwk: JWK,
  { apis, clientGrants, clientMetadata, grantTypes, missingAudience, chargeQuota, organization }: TenantTables,
): OidcProvider {
  // An error oidc-provider renders as `{error, error_description}` with Auth0's status.
  const auth0Error = (status: number, error: string, description: string): Error =>
    Object.assign(new errors.CustomOIDCProviderError(error, description), { status, statusCode: status });
  const accessDenied = (description: string): Error => auth0Error(403, 'access_denied', description);
  // Requests whose audience was defaulted to the legacy opaque token (§10 'opaque-token').
  const legacyRequests = new WeakSet<ProviderContext>();
  // §14: the organization each request's token is issued for, read again by the quota and the claims.
  const organizations = new WeakMap<ProviderContext, ResolvedOrganization>();

  // §6: checked once the client is authenticated (both hooks below run after client authentication).
  const checkGrantType = (client: ProviderClient): void => {
    if (!grantTypes(client.clientId).includes('client_credentials')) {
      throw auth0Error(403, 'unauthorized_client', grantTypeNotAllowed('client_credentials'));
    }
  };
  // §9: last, so that a refused request never counts against the quota.
  const applyQuota = (ctx: ProviderContext, client: ProviderClient): void => {
    // §9: "Auth0 checks the client-level and organization-level quotas concurrently" for the
    // organization "defined explicitly or via default organization settings".
    const outcome = chargeQuota(client.clientId, organizations.get(ctx)?.id);
    if (Object.keys(outcome.headers).length > 0) ctx.set(QUOTA_HEADER, JSON.stringify(outcome.headers));
    if (outcome.refusal !== undefined) throw auth0Error(429, 'too_many_requests', outcome.refusal);
  };

  const provider = new Provider(issuer, {
    adapter: createAdapterClass(clientMetadata),
    jwks: { keys: [signingJwk] },
    routes: { token: TOKEN_PATH, jwks: '/.well-known/jwks.json' },
    // oidc-provider's defaults plus RS384, which Auth0 accepts for client credentials.
    enabledJWA: { clientAuthSigningAlgValues: ['HS256', 'RS256', 'RS384', 'PS256', 'ES256', 'Ed25519', 'EdDSA'] },
    // §7: "A clock skew of up to 10 seconds is allowed".
    clockTolerance: ASSERTION_CLOCK_SKEW_SECONDS,
    // §7: Auth0's documented limits on a client assertion, beyond what oidc-provider checks
    // (signature, exp, jti replay, iss, aud).
    assertJwtClientAuthClaimsAndHeader: (ctx: ProviderContext, claims: Record<string, unknown>) => {
      const refuse = (detail: string): Error => new errors.InvalidClientAuth(detail);
      if ((ctx.oidc.params.client_assertion ?? '').length > ASSERTION_MAX_BYTES) throw refuse(`the assertion exceeds ${ASSERTION_MAX_BYTES} bytes`);
      for (const claim of ['iss', 'sub', 'jti']) {
        const value = claims[claim];
        if (typeof value === 'string' && value.length > ASSERTION_MAX_CLAIM_LENGTH) throw refuse(`${claim} exceeds ${ASSERTION_MAX_CLAIM_LENGTH} characters`);
      }
      const now = Math.floor(Date.now() / 1000);
      const iat = typeof claims.iat === 'number' ? claims.iat : now;
      if (iat > now + ASSERTION_CLOCK_SKEW_SECONDS) throw refuse('iat is in the future');
      if (typeof claims.exp === 'number' && claims.exp - iat > ASSERTION_MAX_LIFETIME_SECONDS) {
        throw refuse(`the assertion lives longer than ${ASSERTION_MAX_LIFETIME_SECONDS} seconds`);
      }
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // The front maps Auth0's `audience` to `resource`, so no resource means no audience (§10).
        defaultResource: (ctx: ProviderContext, client: ProviderClient) => {
          checkGrantType(client);
          const answer = missingAudience();
          if (typeof answer === 'object') return answer.defaultAudience;
          if (answer === 'opaque-token') {
            legacyRequests.add(ctx);
            return LEGACY_AUDIENCE;
          }
          throw accessDenied(answer === 'apiv1-refused' ? APIV1_REFUSED : NO_AUDIENCE);
        },
        getResourceServerInfo: (ctx: ProviderContext, audience: string, client: ProviderClient): ResourceServerInfo => {
          checkGrantType(client);
          if (audience === LEGACY_AUDIENCE && legacyRequests.has(ctx)) {
            // §10 (b): an opaque token, no scope.
            applyQuota(ctx, client);
            ctx.set(AUDIENCE_HEADER, '');
            return { scope: '', audience, accessTokenTTL: DEFAULT_TTL_SECONDS, accessTokenFormat: 'opaque', jwt: { sign: { alg: 'RS256' } } };
          }
          const api = apis.get(audience);
          if (!api) throw accessDenied(serviceNotEnabled(audience)); // §5
          const granted = clientGrants[client.clientId]?.[audience];
          if (!granted) throw accessDenied(noClientGrant(audience)); // §3
          // §14: organization_usage and the associations belong to the client grant.
          const requested = ctx.headers[ORGANIZATION_HEADER];
          const outcome = organization(client.clientId, audience, typeof requested === 'string' ? requested : undefined);
          if ('refusal' in outcome) throw auth0Error(outcome.refusal.status, outcome.refusal.error, outcome.refusal.description);
          if (outcome.organization) {
            organizations.set(ctx, outcome.organization);
            ctx.set(ISSUED_ORGANIZATION_HEADER, outcome.organization.id);
          }
          const { params } = ctx.oidc;
          if (params.scope === undefined) {
            // §4: Auth0 grants every scope of the client grant when none is requested. oidc-provider's
            // client_credentials handler reads the requested scope after resolving the resource
            // (this call), so filling it in here is what puts the scopes in the token.
            params.scope = granted.join(' ') || undefined;
          } else {
            // §4: refused, not dropped.
            const notGranted = params.scope.split(' ').filter((scope) => scope && !granted.includes(scope));
            if (notGranted.length > 0) throw accessDenied(scopesNotGranted(notGranted));
          }
          applyQuota(ctx, client);
          ctx.set(AUDIENCE_HEADER, audience);
          return {
            scope: granted.join(' '),
            audience,
            accessTokenTTL: api.tokenTtlSeconds ?? DEFAULT_TTL_SECONDS,
            accessTokenFormat: api.tokenFormat ?? 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    ttl: {
      ClientCredentials: (_ctx: unknown, token: ProviderToken) => token.resourceServer?.accessTokenTTL ?? DEFAULT_TTL_SECONDS,
    },
    formats: {
      customizers: {
        // Auth0's M2M access-token claims; oidc-provider already sets iss, aud, iat, exp, scope, jti.
        jwt: (ctx: ProviderContext, token: ProviderToken, jwt: ProviderJwt) => {
          jwt.header = { typ: 'JWT' };
          jwt.payload.sub = `${token.clientId}@clients`;
          jwt.payload.azp = token.clientId;
          jwt.payload.gty = 'client-credentials';
          delete jwt.payload.client_id;
          // §14: `org_id`, and `org_name` when the tenant allows organization names.
          const issuedFor = organizations.get(ctx);
          if (issuedFor !== undefined) jwt.payload.org_id = issuedFor.id;
          if (issuedFor?.name !== undefined) jwt.payload.org_name = issuedFor.name;
        },
      },
    },
  });
  provider.on('grant.success', (ctx) => {
    if (ctx.oidc.client) ctx.set(ISSUED_TO_HEADER, ctx.oidc.client.clientId);
  });
  provider.on('grant.error', (ctx, err) => {
    // A refused credential: a client assertion of a private_key_jwt client (§7), or anything
    // else, an unknown client included (§1, §2). The front answers each as its switch says.
    if (err.statusCode === 401 && err.error === 'invalid_client') {
      const assertion = ctx.oidc.client?.clientAuthMethod === 'private_key_jwt' && ctx.oidc.params.client_assertion !== undefined;
      ctx.set(REFUSAL_HEADER, assertion ? 'assertion' : 'credential');
    }
  });
  provider.on('server_error', (_ctx, err) => {
    console.error(`local Auth0 tenant: oidc-provider server_error: ${err.message}`);
  });
  return provider;
}
