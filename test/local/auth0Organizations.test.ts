/**
 * Contract tests of the local Auth0 tenant's organizations in the client credentials grant: every
 * answer pinned here is the one docs/auth0-wire-behaviour.md §14 records, cited by fact (§14.n).
 * Where §14 says Auth0's answer is unknown, `describe('plausible answers')` pins each answer the
 * tenant's switches can give.
 */
import { randomBytes } from 'node:crypto';
import { describe, it, expect, beforeAll, afterAll, afterEach, vi } from 'vitest';
import { decodeJwt } from 'jose';
import { MANAGEMENT_API_SCOPES, startLocalAuth0Tenant } from '../../local/auth0Tenant.js';
import type { LocalAuth0Tenant } from '../../local/auth0Tenant.js';

const ORDERS = 'https://orders.example.com';
const JSON_TYPE = 'application/json; charset=utf-8';
const ACME = { id: 'org_vIK75NKFvaozQsFy', name: 'acme' };
const GLOBEX = { id: 'org_gLobex0000000001', name: 'globex' };
const INITECH = { id: 'org_1nitech000000001', name: 'initech' };
/** §14.7: the stand-in's default refusal, 400 invalid_request */
const refused = (description: string) => ({ error: 'invalid_request', error_description: description });

interface TokenResponse {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

describe('local Auth0 tenant: organizations (§14)', () => {
  let tenant: LocalAuth0Tenant;
  const secret = randomBytes(24).toString('base64url');
  const clientIds = ['allow-client', 'deny-client', 'require-client', 'default-client', 'any-client', 'admin'];

  beforeAll(async () => {
    tenant = await startLocalAuth0Tenant({
      clients: [
        ...clientIds.filter((id) => id !== 'default-client').map((clientId) => ({ clientId, clientSecret: secret, authMethod: 'client_secret_post' as const })),
        { clientId: 'default-client', clientSecret: secret, authMethod: 'client_secret_post', defaultOrganization: ACME.name },
      ],
      apis: [{ audience: ORDERS, scopes: ['read:orders', 'write:orders'] }],
      clientGrants: {
        'allow-client': { [ORDERS]: ['read:orders'] },
        'deny-client': { [ORDERS]: ['read:orders'] },
        'require-client': { [ORDERS]: ['read:orders'] },
        'default-client': { [ORDERS]: ['read:orders'] },
        'any-client': { [ORDERS]: ['read:orders'] },
        admin: { management: [...MANAGEMENT_API_SCOPES] },
      },
      managementApi: true,
      organizations: [ACME, GLOBEX, INITECH],
      organizationGrants: {
        'allow-client': { [ORDERS]: { organizationUsage: 'allow', organizations: [ACME.id] } },
        // 'deny-client': not listed, so Auth0's default, deny
        'require-client': { [ORDERS]: { organizationUsage: 'require', organizations: [ACME.name] } },
        'default-client': { [ORDERS]: { organizationUsage: 'require', organizations: [ACME.id] } },
        'any-client': { [ORDERS]: { organizationUsage: 'allow', allowAnyOrganization: true } },
      },
    });
  });

  afterAll(async () => {
    await tenant?.close();
  });

  afterEach(() => {
    tenant.setAllowOrganizationNames(false);
    tenant.setOrganizationRefusalAnswer('invalid_request');
    tenant.setOrganizationParameter('enforced');
  });

  async function postToken(clientId: string, extra: Record<string, string> = {}, encoding: 'json' | 'form' = 'json'): Promise<TokenResponse> {
    const params = { grant_type: 'client_credentials', client_id: clientId, client_secret: secret, audience: ORDERS, ...extra };
    const form = encoding === 'form';
    const res = await fetch(`${tenant.origin}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': form ? 'application/x-www-form-urlencoded' : 'application/json' },
      body: form ? new URLSearchParams(params).toString() : JSON.stringify(params),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  }

  const claims = (res: TokenResponse): Record<string, unknown> => decodeJwt(res.body.access_token as string);

  /** A refusal as §14.7 records it: the status, the JSON body exactly, Content-Type, no token issued, nothing private leaked. */
  async function expectRefusal(run: () => Promise<TokenResponse>, status: number, body: Record<string, string>): Promise<void> {
    tenant.resetCounters();
    const res = await run();
    expect(res.status).toBe(status);
    expect(res.body).toEqual(body);
    expect(res.headers.get('content-type')).toBe(JSON_TYPE);
    expect(res.headers.get('x-ratelimit-limit')).not.toBeNull(); // §8: on every answer
    expect([...res.headers.keys()].filter((name) => name.startsWith('x-local-tenant-'))).toEqual([]);
    expect(tenant.tokenRequests()).toBe(1);
    expect(tenant.issued()).toEqual([]);
  }

  async function management(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
    const token = await postToken('admin', { audience: tenant.managementAudience });
    const res = await fetch(`${tenant.origin}/api/v2/${path}`, {
      method,
      headers: { authorization: `Bearer ${token.body.access_token as string}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as unknown) : undefined };
  }

  it('§14.1, §14.2: `organization` as an org_ id (JSON or form) gives 200 with the usual body and a token whose org_id is that id, no org_name', async () => {
    for (const encoding of ['json', 'form'] as const) {
      tenant.resetCounters();
      const res = await postToken('allow-client', { organization: ACME.id }, encoding);
      expect(res.status).toBe(200);
      expect(Object.keys(res.body)).toEqual(['access_token', 'expires_in', 'scope', 'token_type']);
      const token = claims(res);
      expect(token).toMatchObject({ org_id: ACME.id, sub: 'allow-client@clients', azp: 'allow-client', gty: 'client-credentials', aud: ORDERS });
      expect(token).not.toHaveProperty('org_name');
      expect(tenant.issued().map((issued) => issued.organization)).toEqual([ACME.id]);
      expect([...res.headers.keys()].filter((name) => name.startsWith('x-local-tenant-'))).toEqual([]);
    }
  });

  it('§14.2, §14.4: without `organization`, an allow grant issues a token without org_id', async () => {
    tenant.resetCounters();
    const res = await postToken('allow-client');
    expect(res.status).toBe(200);
    expect(claims(res)).not.toHaveProperty('org_id');
    expect(claims(res)).not.toHaveProperty('org_name');
    expect(tenant.issued()[0]).not.toHaveProperty('organization');
  });

  it('§14.2, §14.3: with organization names allowed, the token carries org_id and org_name, asked by id, by name, or by a name in capitals', async () => {
    tenant.setAllowOrganizationNames(true);
    for (const asked of [ACME.id, ACME.name, 'ACME']) {
      const res = await postToken('allow-client', { organization: asked });
      expect(res.status).toBe(200);
      expect(claims(res)).toMatchObject({ org_id: ACME.id, org_name: ACME.name });
    }
  });

  it('§14.3, §14.7: a name while names are not allowed is 400 invalid_request "parameter organization must be an organization id"', async () => {
    await expectRefusal(() => postToken('allow-client', { organization: ACME.name }), 400, refused('parameter organization must be an organization id'));
  });

  it('§14.4, §14.7: `organization` where the client grant denies organizations (the default) is 400 invalid_request "… not allowed for this client"; none is fine', async () => {
    await expectRefusal(() => postToken('deny-client', { organization: ACME.id }), 400, refused('parameter organization is not allowed for this client'));
    const plain = await postToken('deny-client');
    expect(plain.status).toBe(200);
    expect(claims(plain)).not.toHaveProperty('org_id');
  });

  it('§14.4, §14.7: no `organization` where the client grant requires one (and no default) is 400 invalid_request "parameter organization is required for this client"', async () => {
    await expectRefusal(() => postToken('require-client'), 400, refused('parameter organization is required for this client'));
    const withOrganization = await postToken('require-client', { organization: ACME.id });
    expect(withOrganization.status).toBe(200);
    expect(claims(withOrganization).org_id).toBe(ACME.id);
  });

  it('§14.5: the default organization fills a request without `organization` to a require grant: org_id the request did not name', async () => {
    tenant.resetCounters();
    const res = await postToken('default-client');
    expect(res.status).toBe(200);
    expect(claims(res).org_id).toBe(ACME.id);
    expect(tenant.issued().map((issued) => issued.organization)).toEqual([ACME.id]);
  });

  it('§14.4, §14.7: an organization not associated with the client grant (allow_any_organization false) is 400 invalid_request "parameter organization is invalid: <value>"', async () => {
    await expectRefusal(() => postToken('allow-client', { organization: GLOBEX.id }), 400, refused(`parameter organization is invalid: ${GLOBEX.id}`));
    await expectRefusal(() => postToken('require-client', { organization: INITECH.id }), 400, refused(`parameter organization is invalid: ${INITECH.id}`));
  });

  it('§14.4: allow_any_organization admits every organization of the tenant without an association', async () => {
    for (const organization of [ACME, GLOBEX, INITECH]) {
      const res = await postToken('any-client', { organization: organization.id });
      expect(res.status).toBe(200);
      expect(claims(res).org_id).toBe(organization.id);
    }
  });

  it('§14.7: an unknown id, and an unknown name (names allowed), get the same 400 invalid_request "parameter organization is invalid: <value>", even with allow_any_organization', async () => {
    await expectRefusal(() => postToken('any-client', { organization: 'org_doesNotExist0001' }), 400, refused('parameter organization is invalid: org_doesNotExist0001'));
    tenant.setAllowOrganizationNames(true);
    await expectRefusal(() => postToken('any-client', { organization: 'umbrella' }), 400, refused('parameter organization is invalid: umbrella'));
  });

  it('§14.6: associations through the Management API: POST 201 with the grant, GET lists it (include_totals, grant_ids), DELETE 204, and the token follows', async () => {
    const grantId = tenant.clientGrantId('allow-client', ORDERS);
    expect(grantId).toMatch(/^cgr_[A-Za-z0-9]{16}$/);
    expect((await postToken('allow-client', { organization: GLOBEX.id })).status).toBe(400);

    const associated = await management('POST', `organizations/${GLOBEX.id}/client-grants`, { grant_id: grantId });
    const grantJson = { client_id: 'allow-client', audience: ORDERS, scope: ['read:orders'], organization_usage: 'allow', allow_any_organization: false };
    expect(associated).toEqual({ status: 201, body: { grant_id: grantId, ...grantJson } });
    const listed = await management('GET', `organizations/${GLOBEX.id}/client-grants?include_totals=true&per_page=50`);
    expect(listed).toEqual({ status: 200, body: { client_grants: [{ id: grantId, ...grantJson }], start: 0, limit: 50, total: 1 } });
    expect(await management('GET', `organizations/${GLOBEX.id}/client-grants?grant_ids=cgr_other`)).toEqual({ status: 200, body: [] });
    const token = await postToken('allow-client', { organization: GLOBEX.id });
    expect(token.status).toBe(200);
    expect(claims(token).org_id).toBe(GLOBEX.id);

    expect(await management('DELETE', `organizations/${GLOBEX.id}/client-grants/${grantId}`)).toEqual({ status: 204, body: undefined });
    expect(await management('GET', `organizations/${GLOBEX.id}/client-grants`)).toEqual({ status: 200, body: [] });
    expect((await postToken('allow-client', { organization: GLOBEX.id })).status).toBe(400);
    // The association of acme is untouched.
    expect((await postToken('allow-client', { organization: ACME.id })).status).toBe(200);
  });

  it('§14.6: an unknown organization is 404 "The organization does not exist."; the endpoints need their scopes', async () => {
    expect(await management('GET', 'organizations/org_doesNotExist0001/client-grants')).toEqual({
      status: 404,
      body: { statusCode: 404, error: 'Not Found', message: 'The organization does not exist.' },
    });
    const token = await postToken('allow-client', { organization: ACME.id });
    const res = await fetch(`${tenant.origin}/api/v2/organizations/${ACME.id}/client-grants`, {
      headers: { authorization: `Bearer ${token.body.access_token as string}` },
    });
    expect(res.status).toBe(401); // a token for another API
  });

  it('§14.9, §9: the organization quota is keyed by org_id, whether asked by id, by name or through the default organization; other organizations are not affected', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.parse('2025-05-22T07:40:00Z'));
    try {
      tenant.setAllowOrganizationNames(true);
      tenant.setOrganizationQuota(ACME.name, { perHour: 3 });
      const byId = await postToken('allow-client', { organization: ACME.id });
      expect(byId.headers.get('auth0-organization-quota-limit')).toBe('b=per_hour;q=3;r=2;t=1200');
      const byName = await postToken('allow-client', { organization: ACME.name });
      expect(byName.headers.get('auth0-organization-quota-limit')).toBe('b=per_hour;q=3;r=1;t=1200');
      const byDefault = await postToken('default-client');
      expect(byDefault.headers.get('auth0-organization-quota-limit')).toBe('b=per_hour;q=3;r=0;t=1200');

      const spent = await postToken('any-client', { organization: ACME.id });
      expect(spent.status).toBe(429);
      expect(spent.body).toEqual({ error: 'too_many_requests', error_description: 'Organization quota exceeded' });
      expect(spent.headers.get('auth0-organization-quota-limit')).toBe('b=per_hour;q=3;r=0;t=1200');
      expect(spent.headers.get('retry-after')).toBe('1200');

      const other = await postToken('any-client', { organization: GLOBEX.id });
      expect(other.status).toBe(200);
      expect(other.headers.get('auth0-organization-quota-limit')).toBeNull();
      expect(() => tenant.setOrganizationQuota('umbrella', { perHour: 1 })).toThrow(/unknown organization umbrella/);
    } finally {
      vi.useRealTimers();
      tenant.setOrganizationQuota(ACME.id, null);
    }
  });

  describe('plausible answers', () => {
    it('§14 unknown: setOrganizationRefusalAnswer("access_denied") gives 403 access_denied with the same descriptions', async () => {
      tenant.setOrganizationRefusalAnswer('access_denied');
      const denied = (description: string) => ({ error: 'access_denied', error_description: description });
      await expectRefusal(() => postToken('deny-client', { organization: ACME.id }), 403, denied('parameter organization is not allowed for this client'));
      await expectRefusal(() => postToken('require-client'), 403, denied('parameter organization is required for this client'));
      await expectRefusal(() => postToken('allow-client', { organization: GLOBEX.id }), 403, denied(`parameter organization is invalid: ${GLOBEX.id}`));
      await expectRefusal(() => postToken('allow-client', { organization: ACME.name }), 403, denied('parameter organization must be an organization id'));
    });

    it('§14.8: setOrganizationParameter("ignored") plays a tenant from before the rollout: `organization` is ignored, the token has no org_id', async () => {
      tenant.setOrganizationParameter('ignored');
      for (const clientId of ['allow-client', 'deny-client']) {
        const res = await postToken(clientId, { organization: ACME.id });
        expect(res.status).toBe(200);
        expect(claims(res)).not.toHaveProperty('org_id');
      }
    });
  });

  it('§14: options are checked at start (ids, names, associations, settings without organizations)', async () => {
    const base = {
      clients: [{ clientId: 'c', clientSecret: secret, authMethod: 'client_secret_post' as const }],
      apis: [{ audience: ORDERS, scopes: ['read:orders'] }],
      clientGrants: { c: { [ORDERS]: ['read:orders'] } },
    };
    await expect(startLocalAuth0Tenant({ ...base, organizations: [{ id: 'acme', name: 'acme' }] })).rejects.toThrow(/an id is 'org_'/);
    await expect(startLocalAuth0Tenant({ ...base, organizations: [{ id: ACME.id, name: 'Acme Inc' }] })).rejects.toThrow(/lower-case/);
    await expect(startLocalAuth0Tenant({ ...base, organizations: [ACME], organizationGrants: { c: { [ORDERS]: { organizations: ['umbrella'] } } } })).rejects.toThrow(
      /unknown organization umbrella/,
    );
    await expect(startLocalAuth0Tenant({ ...base, organizationGrants: { c: { [ORDERS]: { organizationUsage: 'allow' } } } })).rejects.toThrow(/TenantOptions.organizations/);
    await expect(startLocalAuth0Tenant({ ...base, organizations: [ACME], organizationGrants: { c: { 'https://nope.example.com': { organizationUsage: 'allow' } } } })).rejects.toThrow(
      /no client grant of c/,
    );
  });
});
