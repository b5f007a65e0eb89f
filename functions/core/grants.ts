/**
 * Grants: which IAM principals may obtain which Auth0 audience and scopes, and through which
 * Auth0 client. The grants file is code-reviewed configuration deployed with the function; it is
 * validated at build time (`npm run validate:grants`) and again at cold start, and every error
 * names the offending field, e.g. `grants[2].principals[0]: ...`.
 */
import { AccessDeniedError, InvalidRequestError, InvalidTokenResponseError } from './errors.js';
import type { Caller } from './principal.js';

export type ClientAuthMethod = 'client_secret_post' | 'client_secret_basic' | 'private_key_jwt';
export type TokenFormat = 'jwt' | 'opaque';

/** One Auth0 application (M2M client) the vendor holds credentials for. */
export interface ClientConfig {
  readonly name: string;
  /** `https://tenant.eu.auth0.com` (or a loopback http origin, for the local stack and tests) */
  readonly origin: string;
  /** Auth0's issuer: the origin with a trailing slash */
  readonly issuer: string;
  /** Secrets Manager secret id (name or ARN) holding `{"client_id","client_secret"}` */
  readonly secretId: string;
  readonly authMethod: ClientAuthMethod;
  /** `jwt` (default): tokens are verified against the tenant's JWKS; `opaque`: shape checks only */
  readonly tokenFormat: TokenFormat;
  /**
   * The client whose Management API token rotates this client's credentials (`rotation.managementClient`),
   * if rotation is set up.
   */
  readonly rotationManagementClient?: string | undefined;
}

interface PrincipalPattern {
  readonly source: string;
  readonly partition: string;
  readonly account: string;
  readonly type: 'role' | 'user';
  /** only meaningful for users: STS session ARNs do not carry a role's path */
  readonly path: string;
  readonly name: RegExp;
  /**
   * The role's or user's unique id (`AROA…` / `AIDA…`), when the grant pins it: a principal deleted
   * and recreated under the same name gets a new id, and does not inherit the grant (as Vault's AWS
   * auth resolves `bound_iam_principal_arn` to the unique id).
   */
  readonly uniqueId?: string | undefined;
}

/**
 * Which Auth0 organizations a grant serves tokens for (issue 12; docs/auth0-wire-behaviour.md §14),
 * in the words of Auth0's own client-grant setting `organization_usage`:
 * - no `organizations` in the grant: `deny`, only tokens without an organization (as before);
 * - `organizations: [...]`: `require`, only tokens for one of those organizations;
 * - `organizations: [...]` with `organizationUsage: "allow"`: those, or none.
 */
export type GrantOrganizationUsage = 'deny' | 'allow' | 'require';

export interface Grant {
  readonly principals: readonly PrincipalPattern[];
  /** the organizations (`org_…` ids or names, exactly as callers name them); empty for `deny` */
  readonly organizations: readonly string[];
  readonly organizationUsage: GrantOrganizationUsage;
  /** whether the scheduled refresher keeps a token for exactly this grant's scopes ready */
  readonly prefetch: boolean;
  readonly client: ClientConfig;
  readonly audience: string;
  readonly scopes: readonly string[];
}

/** The outcome of a successful authorization: exactly what Auth0 will be asked for. */
export interface AuthorizedRequest {
  readonly client: ClientConfig;
  readonly audience: string;
  /** sorted, de-duplicated, never empty */
  readonly scopes: readonly string[];
  /**
   * The Auth0 organization to ask for (`org_…` id or name, exactly as the caller named it), or
   * none: part of the cache key, so a token for one organization is never served for another.
   */
  readonly organization?: string | undefined;
}

/**
 * A grants file that does not validate. Raised at build time and cold start only (config.ts
 * wraps it in a ConfigError naming GRANTS_FILE), never in answer to a caller.
 */
export class GrantsValidationError extends Error {
  /** stable internal code, as every error of the vendor has (functions/core/errors.ts) */
  readonly code = 'ERR_GRANTS_INVALID';
  constructor(readonly field: string, problem: string) {
    super(`${field}: ${problem}`);
    this.name = 'GrantsValidationError';
  }
}

// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;
const CLIENT_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const HOSTNAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);
const IAM_NAME_CHARS = /^[\w+=,.@-]+$/;
const IAM_NAME_PATTERN_CHARS = /^[\w+=,.@*-]+$/;
const UNIQUE_ID = { role: /^AROA[A-Z0-9]{12,124}$/, user: /^AIDA[A-Z0-9]{12,124}$/ } as const;
const PRINCIPAL_ARN = /^arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):(role|user)\/(.+)$/;
const MAX_AUDIENCE_LENGTH = 600;
/**
 * Auth0 organization ids are `org_` and letters or digits (`org_vIK75NKFvaozQsFy`), at most 50
 * characters (Management API, `Organization.id`: maxLength 50). Names are 1-50 lower-case letters,
 * digits, `_` and `-` (Auth0 docs, "Create Organizations": "May contain lowercase alphabetical
 * characters, numbers, underscores (_), and dashes (-) ... between 1 and 50 characters"). A value
 * starting `org_` is an id, as Auth0's SDKs read it (docs/auth0-wire-behaviour.md §14.3).
 */
export const ORGANIZATION_ID = /^org_[A-Za-z0-9]{1,46}$/;
export const ORGANIZATION_NAME = /^[a-z0-9_-]{1,50}$/;
export const MAX_ORGANIZATION_LENGTH = 50;

/** Whether `value` names an Auth0 organization: an `org_…` id, or a name that does not start `org_`. */
export function isOrganization(value: string): boolean {
  return value.startsWith('org_') ? ORGANIZATION_ID.test(value) : ORGANIZATION_NAME.test(value);
}

/** Whether `value` is an organization id (`org_…`), not a name. */
export function isOrganizationId(value: string): boolean {
  return ORGANIZATION_ID.test(value);
}

/** The validated grants, with the authorization decision. Immutable once built. */
export class GrantBook {
  private constructor(
    readonly clients: ReadonlyMap<string, ClientConfig>,
    readonly grants: readonly Grant[],
  ) {}

  /**
   * Parse and validate a grants document (already JSON-parsed).
   * @throws GrantsValidationError naming the bad field
   */
  static parse(doc: unknown): GrantBook {
    const root = expectObject(doc, '(root)', ['clients', 'grants']);
    const clientsDoc = expectObject(root.clients, 'clients');
    const clients = new Map<string, ClientConfig>();
    for (const [name, value] of Object.entries(clientsDoc)) {
      clients.set(name, parseClient(name, value));
    }
    if (clients.size === 0) throw new GrantsValidationError('clients', 'at least one client is required');
    for (const client of clients.values()) {
      const manager = client.rotationManagementClient;
      if (manager === undefined) continue;
      const field = `clients.${client.name}.rotation.managementClient`;
      const managerClient = clients.get(manager);
      if (managerClient === undefined) throw new GrantsValidationError(field, `no client named "${manager}" in clients`);
      if (managerClient.origin !== client.origin) throw new GrantsValidationError(field, `"${manager}" belongs to another tenant (${managerClient.origin})`);
      if (manager === client.name) throw new GrantsValidationError(field, 'a client cannot rotate itself: its token would be refused mid-rotation');
    }

    if (!Array.isArray(root.grants) || root.grants.length === 0) {
      throw new GrantsValidationError('grants', 'must be a non-empty array');
    }
    const grants = root.grants.map((g, i) => parseGrant(g, `grants[${i}]`, clients));

    // An audience is served through exactly one Auth0 client, so a caller's token never depends
    // on which of several overlapping grants happened to match.
    const clientOfAudience = new Map<string, string>();
    grants.forEach((g, i) => {
      const seen = clientOfAudience.get(g.audience);
      if (seen !== undefined && seen !== g.client.name) {
        throw new GrantsValidationError(
          `grants[${i}].client`,
          `audience "${g.audience}" is already served by client "${seen}"; one audience, one client`,
        );
      }
      clientOfAudience.set(g.audience, g.client.name);
    });
    return Object.freeze(new GrantBook(clients, Object.freeze(grants)));
  }

  /**
   * Decide what `caller` may get for `audience`, and for which Auth0 organization. The scopes
   * granted are the union over every grant that matches the caller for that audience and allows
   * the organization asked for (or, without one, allows none). A requested scope must be a
   * subset; no scope means every granted scope.
   * @throws InvalidRequestError for a malformed scope or organization, AccessDeniedError otherwise
   */
  authorize(caller: Caller, audience: string, requestedScope: string | undefined, organization?: string): AuthorizedRequest {
    const requested = parseScope(requestedScope);
    if (organization !== undefined && !isOrganization(organization)) {
      throw new InvalidRequestError('organization must be an Auth0 organization id (org_ and letters or digits) or name (lower-case letters, digits, _ and -), at most 50 characters.');
    }
    const forAudience = this.grants.filter((g) => g.audience === audience && grantMatches(g, caller));
    if (forAudience.length === 0) {
      throw new AccessDeniedError(`The caller is not granted audience "${audience}".`);
    }
    const matching = forAudience.filter((g) => allowsOrganization(g, organization));
    const first = matching[0];
    if (first === undefined) {
      throw new AccessDeniedError(
        organization === undefined
          ? `The caller is granted audience "${audience}" only for an Auth0 organization: name one in "organization".`
          : `The caller is not granted organization "${organization}" for audience "${audience}".`,
      );
    }
    const granted = new Set(matching.flatMap((g) => g.scopes));
    const scopes = requested.length === 0 ? [...granted] : requested;
    const missing = scopes.filter((s) => !granted.has(s));
    if (missing.length > 0) {
      throw new AccessDeniedError(
        `The caller is not granted scope ${missing.map((s) => `"${s}"`).join(', ')} for audience "${audience}"${organization === undefined ? '' : ` and organization "${organization}"`}.`,
      );
    }
    return request(first.client, audience, scopes, organization);
  }

  /**
   * For the scheduled refresher: the request behind a cached token, if the grants still allow
   * it — a token whose grant was removed or narrowed (scopes or organizations) is not refreshed.
   */
  requestFor(clientName: string, audience: string, scopes: readonly string[], organization?: string): AuthorizedRequest | undefined {
    const matching = this.grants.filter((g) => g.client.name === clientName && g.audience === audience && allowsOrganization(g, organization));
    const first = matching[0];
    if (first === undefined || scopes.length === 0) return undefined;
    const granted = new Set(matching.flatMap((g) => g.scopes));
    if (!scopes.every((s) => granted.has(s))) return undefined;
    return request(first.client, audience, scopes, organization);
  }

  /** The client whose credentials live in `secretId` (a name or an ARN). */
  clientForSecret(secretName: string, secretArn: string): ClientConfig | undefined {
    return [...this.clients.values()].find((c) => c.secretId === secretName || c.secretId === secretArn);
  }

  /**
   * What a rotation tests a new credential with: the client's first grant (audience and scopes),
   * for its first organization when it requires one (Auth0 refuses a `require` client grant's
   * request without organization: docs/auth0-wire-behaviour.md §14.7).
   */
  testRequestFor(client: ClientConfig): AuthorizedRequest | undefined {
    const grant = this.grants.find((g) => g.client.name === client.name);
    if (grant === undefined) return undefined;
    return request(client, grant.audience, grant.scopes, grant.organizationUsage === 'require' ? grant.organizations[0] : undefined);
  }

  /**
   * The tokens grants ask to have fetched in advance: each prefetch grant's exact scope set, once
   * without organization when the grant allows that, and once per organization it lists by id.
   * Names are not prefetched: a name can be renamed and reused (§14.3), and a caller asking by name
   * gets a token of its own, keyed by that name.
   */
  prefetchRequests(): AuthorizedRequest[] {
    return this.grants
      .filter((g) => g.prefetch)
      .flatMap((g) => [
        ...(g.organizationUsage === 'require' ? [] : [request(g.client, g.audience, g.scopes, undefined)]),
        ...g.organizations.filter(isOrganizationId).map((organization) => request(g.client, g.audience, g.scopes, organization)),
      ]);
  }
}

/** Split a space-delimited scope string into scope tokens (RFC 6749 §3.3). Empty → []. */
export function parseScope(scope: string | undefined): string[] {
  if (scope === undefined) return [];
  const tokens = scope.split(' ').filter((s) => s.length > 0);
  for (const t of tokens) {
    if (!SCOPE_TOKEN.test(t)) {
      throw new InvalidRequestError('scope must be space-separated scope tokens (RFC 6749 §3.3).');
    }
  }
  return [...new Set(tokens)].sort();
}

function request(client: ClientConfig, audience: string, scopes: readonly string[], organization: string | undefined): AuthorizedRequest {
  return { client, audience, scopes: [...new Set(scopes)].sort(), ...(organization === undefined ? {} : { organization }) };
}

/** Whether `grant` serves tokens for `organization` (undefined: a token without organization). */
function allowsOrganization(grant: Grant, organization: string | undefined): boolean {
  if (organization === undefined) return grant.organizationUsage !== 'require';
  return grant.organizations.includes(organization);
}

function grantMatches(grant: Grant, caller: Caller): boolean {
  return grant.principals.some(
    (p) =>
      p.partition === caller.partition &&
      p.account === caller.account &&
      p.type === caller.type &&
      // IAM role names are unique within an account whatever their path, and STS session ARNs
      // omit the path, so a role is identified by account + name. Users keep their path.
      (p.type === 'role' || p.path === caller.path) &&
      p.name.test(caller.name) &&
      (p.uniqueId === undefined || p.uniqueId === caller.uniqueId),
  );
}

function parseClient(name: string, value: unknown): ClientConfig {
  const field = `clients.${name}`;
  if (!CLIENT_NAME.test(name)) {
    throw new GrantsValidationError(field, 'client names are 1-64 of A-Z a-z 0-9 _ . -');
  }
  const c = expectObject(value, field, ['domain', 'secretId', 'authMethod', 'tokenFormat', 'rotation']);
  const origin = parseDomain(c.domain, `${field}.domain`);
  const secretId = expectString(c.secretId, `${field}.secretId`, 2048);
  const authMethod = c.authMethod ?? 'client_secret_post';
  if (authMethod !== 'client_secret_post' && authMethod !== 'client_secret_basic' && authMethod !== 'private_key_jwt') {
    throw new GrantsValidationError(`${field}.authMethod`, 'must be "client_secret_post", "client_secret_basic" or "private_key_jwt"');
  }
  const tokenFormat = c.tokenFormat ?? 'jwt';
  if (tokenFormat !== 'jwt' && tokenFormat !== 'opaque') {
    throw new GrantsValidationError(`${field}.tokenFormat`, 'must be "jwt" or "opaque"');
  }
  let rotationManagementClient: string | undefined;
  if (c.rotation !== undefined) {
    const rotation = expectObject(c.rotation, `${field}.rotation`, ['managementClient']);
    rotationManagementClient = expectString(rotation.managementClient, `${field}.rotation.managementClient`, 64);
  }
  return Object.freeze({ name, origin, issuer: `${origin}/`, secretId, authMethod, tokenFormat, rotationManagementClient });
}

/**
 * An Auth0 domain (`tenant.eu.auth0.com`, or a custom domain) means `https://<domain>`. A full
 * origin is accepted only for plain-http loopback hosts, for the local stack and tests: a token
 * request must never leave the machine in clear text.
 */
function parseDomain(value: unknown, field: string): string {
  const raw = expectString(value, field, 300);
  if (!raw.includes('://')) {
    if (!HOSTNAME.test(raw)) throw new GrantsValidationError(field, `"${raw}" is not a host name`);
    return `https://${raw}`;
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new GrantsValidationError(field, `"${raw}" is not a URL`);
  }
  if (url.protocol !== 'http:' || !LOOPBACK_HOSTS.has(url.hostname)) {
    throw new GrantsValidationError(field, 'a URL is only allowed for http://127.0.0.1 or localhost; give a bare domain for https');
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash || url.username) {
    throw new GrantsValidationError(field, 'must be an origin, without path, query or credentials');
  }
  return url.origin;
}

function parseGrant(value: unknown, field: string, clients: ReadonlyMap<string, ClientConfig>): Grant {
  const g = expectObject(value, field, ['principals', 'directInvoke', 'prefetch', 'client', 'audience', 'scopes', 'organizations', 'organizationUsage']);
  const principalsDoc = g.principals ?? [];
  if (!Array.isArray(principalsDoc)) throw new GrantsValidationError(`${field}.principals`, 'must be an array of IAM ARNs');
  const principals = principalsDoc.map((p, i) => parsePrincipalPattern(p, `${field}.principals[${i}]`));
  if (g.directInvoke !== undefined) {
    // It used to hand grants to unidentified direct invokers. Every invocation is now proven, and
    // the channel itself cannot be: an event shaped like API Gateway's can be written by any direct
    // invoker, so a per-channel restriction would only hold for honest callers. Refused rather than
    // ignored, so that no one relies on a protection that does not exist.
    throw new GrantsValidationError(`${field}.directInvoke`, 'is no longer used: a principal uses its grants through the API or by direct invocation alike, with the same proof (docs/identity-proof.md); remove the field');
  }
  const prefetch = g.prefetch ?? false;
  if (typeof prefetch !== 'boolean') throw new GrantsValidationError(`${field}.prefetch`, 'must be true or false');
  if (principals.length === 0) {
    // A direct invocation is proven like an API call (docs/identity-proof.md): there is no
    // anonymous invoker left for a grant without principals to serve.
    throw new GrantsValidationError(`${field}.principals`, 'name at least one principal');
  }
  const clientName = expectString(g.client, `${field}.client`, 64);
  const client = clients.get(clientName);
  if (client === undefined) throw new GrantsValidationError(`${field}.client`, `no client named "${clientName}" in clients`);
  const audience = expectString(g.audience, `${field}.audience`, MAX_AUDIENCE_LENGTH);
  if (!Array.isArray(g.scopes) || g.scopes.length === 0) {
    // Auth0 answers a request without scope with every scope of its client grant, which may be
    // more than this grant allows: a grant must therefore name its scopes.
    throw new GrantsValidationError(`${field}.scopes`, 'must be a non-empty array of scope strings');
  }
  const scopes = g.scopes.map((s, i) => {
    const scope = expectString(s, `${field}.scopes[${i}]`, 256);
    if (!SCOPE_TOKEN.test(scope)) throw new GrantsValidationError(`${field}.scopes[${i}]`, `"${scope}" is not a valid scope token`);
    return scope;
  });
  const { organizations, organizationUsage } = parseOrganizations(g.organizations, g.organizationUsage, field, client);
  return Object.freeze({ principals: Object.freeze(principals), prefetch, client, audience, scopes: Object.freeze(scopes), organizations, organizationUsage });
}

/**
 * A grant's organizations (issue 12): absent, none (Auth0's `organization_usage: deny`); a list,
 * only those (`require`), unless `organizationUsage` is `"allow"`, which also serves requests
 * without organization. Each is an `org_…` id or a name, as callers will name it: the vendor
 * cannot map one to the other, so a grant lists the form its callers use (an id is better: names
 * can be renamed and reused, docs/auth0-wire-behaviour.md §14.3).
 */
function parseOrganizations(value: unknown, usageValue: unknown, field: string, client: ClientConfig): { organizations: readonly string[]; organizationUsage: GrantOrganizationUsage } {
  if (value === undefined) {
    if (usageValue !== undefined) throw new GrantsValidationError(`${field}.organizationUsage`, 'needs "organizations": list the organizations the grant serves');
    return { organizations: Object.freeze([]), organizationUsage: 'deny' };
  }
  if (!Array.isArray(value) || value.length === 0) {
    throw new GrantsValidationError(`${field}.organizations`, 'must be a non-empty array of Auth0 organization ids (org_…) or names; leave it out for tokens without organization');
  }
  const organizations = value.map((o, i) => {
    const organization = expectString(o, `${field}.organizations[${i}]`, MAX_ORGANIZATION_LENGTH);
    if (!isOrganization(organization)) {
      throw new GrantsValidationError(`${field}.organizations[${i}]`, `"${organization}" is not an Auth0 organization id (org_ and letters or digits) or name (lower-case letters, digits, _ and -)`);
    }
    return organization;
  });
  const duplicate = organizations.find((o, i) => organizations.indexOf(o) !== i);
  if (duplicate !== undefined) throw new GrantsValidationError(`${field}.organizations`, `"${duplicate}" is listed twice`);
  const usage = usageValue ?? 'require';
  if (usage !== 'require' && usage !== 'allow') {
    throw new GrantsValidationError(`${field}.organizationUsage`, 'must be "require" (only the organizations listed; the default) or "allow" (those, or no organization)');
  }
  if (client.tokenFormat !== 'jwt') {
    // The vendor checks a token's org_id against the request before serving it; an opaque token
    // has no claims to check.
    throw new GrantsValidationError(`${field}.organizations`, `client "${client.name}" issues opaque tokens, whose organization cannot be verified; organizations need tokenFormat "jwt"`);
  }
  return { organizations: Object.freeze(organizations), organizationUsage: usage };
}

function parsePrincipalPattern(value: unknown, field: string): PrincipalPattern {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const pinned = expectObject(value, field, ['arn', 'uniqueId']);
    const pattern = parsePrincipalPattern(pinned.arn, `${field}.arn`);
    const uniqueId = expectString(pinned.uniqueId, `${field}.uniqueId`, 128);
    if (pattern.source.includes('*')) throw new GrantsValidationError(`${field}.uniqueId`, 'a pattern with "*" matches many principals: pin a unique id only on an exact ARN');
    if (!UNIQUE_ID[pattern.type].test(uniqueId)) {
      throw new GrantsValidationError(`${field}.uniqueId`, `"${uniqueId.slice(0, 40)}" is not a ${pattern.type}'s unique id (${pattern.type === 'role' ? 'AROA…' : 'AIDA…'}, as STS returns it)`);
    }
    return { ...pattern, uniqueId };
  }
  const source = expectString(value, field, 2048);
  const m = PRINCIPAL_ARN.exec(source);
  if (m === null) {
    throw new GrantsValidationError(field, `"${source}" is not an IAM role or user ARN (arn:aws:iam::<12-digit account>:role/<name>)`);
  }
  const [, partition = '', account = '', type = '', rest = ''] = m;
  const segments = rest.split('/');
  const name = segments.pop() ?? '';
  const pathSegments = segments;
  if (pathSegments.some((s) => !IAM_NAME_CHARS.test(s))) {
    throw new GrantsValidationError(field, '"*" is allowed only within the role or user name, not in its path');
  }
  if (!IAM_NAME_PATTERN_CHARS.test(name)) throw new GrantsValidationError(field, `"${name}" is not a valid IAM name pattern`);
  if (type === 'role' && pathSegments.length > 0 && name.includes('*')) {
    // The caller's assumed-role ARN does not say which path its role lives under, so the path
    // of a wildcard pattern could not be enforced and would silently widen the grant.
    throw new GrantsValidationError(field, 'a role pattern with "*" cannot have a path: STS session ARNs omit the role path');
  }
  const regex = new RegExp(`^${name.replace(/[.+]/g, '\\$&').replace(/\*/g, '[\\w+=,.@-]*')}$`);
  return {
    source,
    partition,
    account,
    type: type as 'role' | 'user',
    path: pathSegments.join('/'),
    name: regex,
  };
}

function expectObject(value: unknown, field: string, allowed?: readonly string[]): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new GrantsValidationError(field, 'must be an object');
  }
  if (allowed !== undefined) {
    for (const key of Object.keys(value)) {
      if (!allowed.includes(key)) {
        const where = field === '(root)' ? key : `${field}.${key}`;
        throw new GrantsValidationError(where, `unknown field (expected one of: ${allowed.join(', ')})`);
      }
    }
  }
  return value as Record<string, unknown>;
}

function expectString(value: unknown, field: string, maxLength: number): string {
  if (typeof value !== 'string' || value.length === 0) throw new GrantsValidationError(field, 'must be a non-empty string');
  if (value.length > maxLength) throw new GrantsValidationError(field, `must be at most ${maxLength} characters`);
  return value;
}

/**
 * The IdP may grant fewer scopes than asked (RFC 6749 §3.3) but never more: a caller must not
 * end up holding more than its grant. An omitted `scope` means exactly what was asked.
 */
export function checkGrantedScope(granted: string, requested: readonly string[]): string {
  if (granted === '') return requested.join(' ');
  const grantedScopes = parseScope(granted);
  const extra = grantedScopes.filter((s) => !requested.includes(s));
  if (extra.length > 0) {
    // IdP-controlled text: bounded before it reaches a log line.
    throw new InvalidTokenResponseError(`the IdP granted scopes that were not requested: ${extra.join(' ').slice(0, 200)}`);
  }
  return grantedScopes.join(' ');
}
