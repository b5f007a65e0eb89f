/**
 * Auth0's Machine-to-Machine Access for Organizations as the local tenant (auth0Tenant.ts) plays it
 * (docs/auth0-wire-behaviour.md §14): the tenant's organizations, each client grant's
 * `organization_usage` and `allow_any_organization`, the associations of client grants with
 * organizations (Management API `/api/v2/organizations/{id}/client-grants`), the client's default
 * organization, and what a client_credentials request's `organization` becomes: an organization for
 * the token's `org_id` (and `org_name`) and for the per-organization quota (§9), or a refusal.
 *
 * Without `TenantOptions.organizations` the feature is not modelled: every value names an
 * organization of that id, as if every client grant were `organization_usage: allow` with
 * `allow_any_organization: true` (the stand-in's behaviour before §14, which the §9 quota tests use).
 */
import { ORGANIZATION_MUST_BE_ID, ORGANIZATION_NOT_ALLOWED, ORGANIZATION_REQUIRED, organizationInvalid } from './auth0Answers.js';
import type { OrganizationParameter, OrganizationRefusalAnswer } from './auth0Answers.js';
import { ManagementError, invalidBody } from './auth0Management.js';

/** §14: a client grant's `organization_usage`; Auth0's default is 'deny'. */
export type OrganizationUsage = 'deny' | 'allow' | 'require';

/** An Auth0 Organization. */
export interface TenantOrganization {
  /** 'org_' and letters or digits, e.g. 'org_kRblHAs7YQpHZNTA' */
  id: string;
  /** Auth0's `name`: 1 to 50 lower-case letters, digits, '_' or '-' */
  name: string;
}

/** §14: a client grant's organization settings. */
export interface ClientGrantOrganizationSettings {
  /** default 'deny' (Auth0's default, "None" in the dashboard) */
  organizationUsage?: OrganizationUsage;
  /** default false: only associated organizations */
  allowAnyOrganization?: boolean;
}

/** §14: settings plus the organizations (ids or names) associated with the client grant. */
export interface ClientGrantOrganizations extends ClientGrantOrganizationSettings {
  organizations?: string[];
}

/** The organization a token is issued for: `org_id`, and `org_name` when the tenant allows names. */
export interface ResolvedOrganization {
  id: string;
  name?: string;
}

export interface OrganizationRefusal {
  status: number;
  error: string;
  description: string;
}

export type OrganizationOutcome = { organization?: ResolvedOrganization } | { refusal: OrganizationRefusal };

/** §14: scopes of the association endpoints (docs-v2 `api/management/v2/organizations/*-client-grants*.mdx`). */
export const ORGANIZATION_CLIENT_GRANT_SCOPES: readonly string[] = [
  'read:organization_client_grants',
  'create:organization_client_grants',
  'delete:organization_client_grants',
];

const ORGANIZATION_ID = /^org_[A-Za-z0-9]+$/;
const ORGANIZATION_NAME = /^[a-z0-9_-]{1,50}$/;
/** docs-v2 `manage-users/organizations/configure-organizations/delete-organizations.mdx`: 404 "The organization does not exist." */
const NO_SUCH_ORGANIZATION = 'The organization does not exist.';

interface GrantState {
  readonly id: string;
  readonly clientId: string;
  readonly audience: string;
  readonly scopes: readonly string[];
  usage: OrganizationUsage;
  allowAny: boolean;
  /** ids of the associated organizations, in association order */
  organizations: string[];
}

export interface OrganizationRoute {
  action: 'list' | 'associate' | 'dissociate';
  scopes: readonly string[];
  organizationId: string;
  grantId: string;
}

/** The Management API association endpoint a request is for, or undefined. */
export function organizationRoute(method: string, pathname: string): OrganizationRoute | undefined {
  const match = /^\/api\/v2\/organizations\/([^/]+)\/client-grants(?:\/([^/]*))?\/?$/.exec(pathname);
  if (!match) return undefined;
  let organizationId: string;
  let grantId: string;
  try {
    organizationId = decodeURIComponent(match[1] ?? '');
    grantId = decodeURIComponent(match[2] ?? '');
  } catch {
    return undefined;
  }
  const [read, create, remove] = ORGANIZATION_CLIENT_GRANT_SCOPES as [string, string, string];
  if (grantId === '' && method === 'GET') return { action: 'list', scopes: [read], organizationId, grantId };
  if (grantId === '' && method === 'POST') return { action: 'associate', scopes: [create], organizationId, grantId };
  if (grantId !== '' && method === 'DELETE') return { action: 'dissociate', scopes: [remove], organizationId, grantId };
  return undefined;
}

/** The tenant's organizations and the organization settings of its client grants. */
export class OrganizationDirectory {
  /** false: organizations are not modelled (see the file comment) */
  readonly modelled: boolean;
  allowNames: boolean;
  refusalAnswer: OrganizationRefusalAnswer = 'invalid_request';
  parameter: OrganizationParameter = 'enforced';
  readonly #byId = new Map<string, TenantOrganization>();
  readonly #grants = new Map<string, GrantState>();
  readonly #defaults: ReadonlyMap<string, string>;

  constructor(options: {
    organizations: readonly TenantOrganization[] | undefined;
    /** the resolved client grants: clientId -> audience -> scopes */
    clientGrants: Readonly<Record<string, Readonly<Record<string, readonly string[]>>>>;
    /** clientId -> audience -> settings and associations (audiences already resolved) */
    settings: Readonly<Record<string, Readonly<Record<string, ClientGrantOrganizations>>>>;
    allowNames: boolean;
    /** clientId -> organization (id or name) applied when a 'require' grant gets none */
    defaults: ReadonlyMap<string, string>;
  }) {
    this.modelled = options.organizations !== undefined;
    this.allowNames = options.allowNames;
    for (const organization of options.organizations ?? []) {
      if (!ORGANIZATION_ID.test(organization.id)) throw new Error(`organization ${organization.id}: an id is 'org_' and letters or digits`);
      if (!ORGANIZATION_NAME.test(organization.name)) {
        throw new Error(`organization ${organization.id}: a name is 1 to 50 lower-case letters, digits, '_' or '-', got ${JSON.stringify(organization.name)}`);
      }
      if (this.#byId.has(organization.id)) throw new Error(`organization ${organization.id} is declared twice`);
      if ([...this.#byId.values()].some((existing) => existing.name === organization.name)) {
        throw new Error(`organization name ${organization.name} is used twice`);
      }
      this.#byId.set(organization.id, { ...organization });
    }
    for (const [clientId, byAudience] of Object.entries(options.clientGrants)) {
      for (const [audience, scopes] of Object.entries(byAudience)) {
        this.#grants.set(grantKey(clientId, audience), {
          id: clientGrantIdFor(clientId, audience),
          clientId,
          audience,
          scopes: [...scopes],
          usage: 'deny',
          allowAny: false,
          organizations: [],
        });
      }
    }
    const needsModel = Object.keys(options.settings).length > 0 || options.defaults.size > 0 || options.allowNames;
    if (!this.modelled && needsModel) throw new Error('organization settings need TenantOptions.organizations (declare the organizations, even [])');
    for (const [clientId, byAudience] of Object.entries(options.settings)) {
      for (const [audience, settings] of Object.entries(byAudience)) {
        this.setSettings(clientId, audience, settings);
        for (const organization of settings.organizations ?? []) this.associate(this.#known(organization).id, clientId, audience);
      }
    }
    const defaults = new Map<string, string>();
    for (const [clientId, organization] of options.defaults) defaults.set(clientId, this.#known(organization).id);
    this.#defaults = defaults;
  }

  /** §14: what a token request's `organization` (undefined when absent or blank) becomes for this client grant. */
  resolve(clientId: string, audience: string, requested: string | undefined): OrganizationOutcome {
    if (this.parameter === 'ignored') return {};
    if (!this.modelled) return requested === undefined ? {} : { organization: { id: requested } };
    const grant = this.#grants.get(grantKey(clientId, audience));
    if (grant === undefined) return {};
    if (requested === undefined) {
      if (grant.usage !== 'require') return {};
      // configure-your-application-for-m2m-access.mdx: the default organization "is applied when
      // organization_usage=require"; it must still be one the grant may use.
      const fallback = this.#defaults.get(clientId);
      if (fallback === undefined) return this.#refuse(ORGANIZATION_REQUIRED);
      return this.#permitted(grant, fallback, fallback);
    }
    if (grant.usage === 'deny') return this.#refuse(ORGANIZATION_NOT_ALLOWED);
    if (!requested.startsWith('org_')) {
      if (!this.allowNames) return this.#refuse(ORGANIZATION_MUST_BE_ID);
      // Names are lower case in Auth0; the SDKs compare org_name case-insensitively (auth0/auth0-auth-js#211).
      const byName = [...this.#byId.values()].find((organization) => organization.name === requested.toLowerCase());
      return byName === undefined ? this.#refuse(organizationInvalid(requested)) : this.#permitted(grant, byName.id, requested);
    }
    return this.#byId.has(requested) ? this.#permitted(grant, requested, requested) : this.#refuse(organizationInvalid(requested));
  }

  /** The id of an organization named by id or name; throws for an unknown one. In the unmodelled tenant, the value itself. */
  organizationId(organization: string): string {
    return this.modelled ? this.#known(organization).id : organization;
  }

  clientGrantId(clientId: string, audience: string): string {
    return this.#grant(clientId, audience).id;
  }

  setSettings(clientId: string, audience: string, settings: ClientGrantOrganizationSettings): void {
    if (!this.modelled) throw new Error('organization settings need TenantOptions.organizations');
    const grant = this.#grant(clientId, audience);
    if (settings.organizationUsage !== undefined) {
      if (!['deny', 'allow', 'require'].includes(settings.organizationUsage)) throw new Error(`organizationUsage must be deny, allow or require`);
      grant.usage = settings.organizationUsage;
    }
    if (settings.allowAnyOrganization !== undefined) grant.allowAny = settings.allowAnyOrganization;
  }

  associate(organizationId: string, clientId: string, audience: string): void {
    const grant = this.#grant(clientId, audience);
    const id = this.#known(organizationId).id;
    if (!grant.organizations.includes(id)) grant.organizations.push(id);
  }

  dissociate(organizationId: string, clientId: string, audience: string): void {
    const grant = this.#grant(clientId, audience);
    const id = this.#known(organizationId).id;
    grant.organizations = grant.organizations.filter((existing) => existing !== id);
  }

  /** §14: the association endpoints of the Management API. Throws a ManagementError. */
  manage(route: OrganizationRoute, body: () => Record<string, unknown>, query: URLSearchParams): { status: number; body?: unknown } {
    if (!this.#byId.has(route.organizationId)) throw new ManagementError(404, NO_SUCH_ORGANIZATION);
    switch (route.action) {
      case 'list': {
        const wanted = query.get('grant_ids')?.split(',').filter(Boolean);
        const grants = [...this.#grants.values()]
          .filter((grant) => grant.organizations.includes(route.organizationId))
          .filter((grant) => wanted === undefined || wanted.includes(grant.id))
          .map(grantJson);
        // go-auth0 TestOrganizationManager_ClientGrants.yaml: `include_totals=true` wraps the list.
        return { status: 200, body: query.get('include_totals') === 'true' ? { client_grants: grants, start: 0, limit: 50, total: grants.length } : grants };
      }
      case 'associate': {
        const input = body();
        if (typeof input.grant_id !== 'string') throw invalidBody('Missing required property: grant_id');
        const grant = [...this.#grants.values()].find((candidate) => candidate.id === input.grant_id);
        if (grant === undefined) throw new ManagementError(404, 'The client grant does not exist.');
        this.associate(route.organizationId, grant.clientId, grant.audience);
        // The 2025 recording (TestClientGrantManager_Organizations.yaml) answers 201 with the grant
        // under `grant_id` and its organization fields.
        const { id, ...rest } = grantJson(grant);
        return { status: 201, body: { grant_id: id, ...rest } };
      }
      case 'dissociate': {
        const grant = [...this.#grants.values()].find((candidate) => candidate.id === route.grantId);
        // Idempotent like every recorded Auth0 DELETE (§13): an unknown or unassociated grant is 204 too.
        if (grant !== undefined) this.dissociate(route.organizationId, grant.clientId, grant.audience);
        return { status: 204 };
      }
    }
  }

  #permitted(grant: GrantState, id: string, asked: string): OrganizationOutcome {
    if (!grant.allowAny && !grant.organizations.includes(id)) return this.#refuse(organizationInvalid(asked));
    const organization = this.#byId.get(id);
    if (organization === undefined) return this.#refuse(organizationInvalid(asked));
    // use-org-name-authentication-api.mdx: with names allowed, tokens "include both org_name and org_id".
    return { organization: this.allowNames ? { id, name: organization.name } : { id } };
  }

  #refuse(description: string): OrganizationOutcome {
    return {
      refusal:
        this.refusalAnswer === 'invalid_request'
          ? { status: 400, error: 'invalid_request', description }
          : { status: 403, error: 'access_denied', description },
    };
  }

  #known(organization: string): TenantOrganization {
    const found = this.#byId.get(organization) ?? [...this.#byId.values()].find((candidate) => candidate.name === organization);
    if (found === undefined) throw new Error(`unknown organization ${organization}`);
    return found;
  }

  #grant(clientId: string, audience: string): GrantState {
    const grant = this.#grants.get(grantKey(clientId, audience));
    if (grant === undefined) throw new Error(`no client grant of ${clientId} for ${audience}`);
    return grant;
  }
}

/** A client grant as the Management API returns it, with its organization fields (go-auth0 recordings, §14). */
function grantJson(grant: GrantState): Record<string, unknown> {
  return {
    id: grant.id,
    client_id: grant.clientId,
    audience: grant.audience,
    scope: [...grant.scopes],
    organization_usage: grant.usage,
    allow_any_organization: grant.allowAny,
  };
}

function grantKey(clientId: string, audience: string): string {
  return `${clientId}\n${audience}`;
}

/** 'cgr_' and 16 characters, like Auth0's ids; stable for a client and audience so tests can name it. */
function clientGrantIdFor(clientId: string, audience: string): string {
  let hash = 0x811c9dc5;
  let id = 'cgr_';
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  for (let round = 0; id.length < 20; round += 1) {
    for (const char of `${round}\n${clientId}\n${audience}`) hash = Math.imul(hash ^ char.charCodeAt(0), 0x01000193) >>> 0;
    id += alphabet[hash % alphabet.length];
  }
  return id;
}

