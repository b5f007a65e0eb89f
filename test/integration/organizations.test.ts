/**
 * Auth0 Organizations for M2M tokens, end to end (issue 12, items 1, 2 and 4), against the local
 * tenant configured with organizations (local/auth0Organizations.ts, docs/auth0-wire-behaviour.md
 * §14), counting token requests at the tenant:
 * - a principal gets its organization's token and is refused another's, or none, before any IdP call;
 * - tokens of two organizations (and none) for the same audience and scope are cached and fetched apart;
 * - a token whose org_id is not the one asked for is refused and never cached;
 * - one organization's used-up quota (a 429 with Auth0-Organization-Quota-Limit) pauses that
 *   organization only.
 */
import type { APIGatewayProxyResult } from 'aws-lambda';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { callerFromArn, type Caller } from '../../functions/core/principal.js';
import { apiEvent } from '../helpers/events.js';
import { ORDERS, startTestStack, type TestStack } from '../helpers/testStack.js';

type Res = APIGatewayProxyResult;
const json = (res: Res) => JSON.parse(res.body) as Record<string, unknown>;

const ACME = { id: 'org_vIK75NKFvaozQsFy', name: 'acme' };
const GLOBEX = { id: 'org_gLobex0000000001', name: 'globex' };
const ACME_SERVICE = 'arn:aws:sts::111122223333:assumed-role/acme-service/task-1';
const BACKOFFICE = 'arn:aws:sts::111122223333:assumed-role/backoffice/task-2';

const caller = (arn: string): Caller => ({ ...callerFromArn(arn)!, channel: 'direct' });

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack({
    tokenTtlSeconds: 3600,
    callers: [ACME_SERVICE, BACKOFFICE],
    organizations: [ACME, GLOBEX],
    // Auth0's side: the client grant allows organizations (or none), associated with both.
    organizationGrants: { 'orders-client': { [ORDERS]: { organizationUsage: 'allow', organizations: [ACME.id, GLOBEX.id] } } },
    extraGrants: [
      { principals: ['arn:aws:iam::111122223333:role/acme-service'], client: 'orders', audience: ORDERS, scopes: ['read:orders'], organizations: [ACME.id] },
      {
        principals: ['arn:aws:iam::111122223333:role/backoffice'],
        client: 'orders',
        audience: ORDERS,
        scopes: ['read:orders', 'write:orders'],
        organizations: [ACME.id, GLOBEX.id],
        organizationUsage: 'allow',
      },
    ],
  });
});
afterAll(async () => {
  await stack?.close();
});
beforeEach(() => {
  stack.tenant.resetCounters();
  stack.tenant.setFault(null);
  stack.tenant.setOrganizationParameter('enforced');
  stack.tenant.setOrganizationQuota(ACME.id, null);
});

/** A vendor on a table of its own, so one test's tokens and back-offs are not another's. */
async function freshVendor(deps: Parameters<TestStack['vendor']>[0] = {}) {
  const table = await stack.newTable();
  return stack.vendor({ ...deps, env: { TOKEN_TABLE_NAME: table, ...deps.env } });
}

describe('grants name organizations', () => {
  it('a principal gets its organization\'s token through the API, and is refused another\'s with 403 and no IdP call', async () => {
    const vendor = await freshVendor();
    const ok = (await vendor.handler(apiEvent({ body: JSON.stringify({ audience: ORDERS, scope: 'read:orders', organization: ACME.id }), userArn: ACME_SERVICE }))) as Res;
    expect(ok.statusCode).toBe(200);
    expect(decodeJwt(json(ok).access_token as string)).toMatchObject({ org_id: ACME.id, aud: ORDERS });
    expect(stack.tenant.tokenRequests()).toBe(1);

    const other = (await vendor.handler(apiEvent({ body: JSON.stringify({ audience: ORDERS, scope: 'read:orders', organization: GLOBEX.id }), userArn: ACME_SERVICE }))) as Res;
    expect(other.statusCode).toBe(403);
    expect(json(other)).toEqual({ error: 'access_denied', error_description: `The caller is not granted organization "${GLOBEX.id}" for audience "${ORDERS}".` });
    expect(stack.tenant.tokenRequests()).toBe(1);
  });

  it('a request without organization where the grant requires one is refused, saying so, with no IdP call', async () => {
    const vendor = await freshVendor();
    const res = (await vendor.handler(apiEvent({ body: JSON.stringify({ audience: ORDERS, scope: 'read:orders' }), userArn: ACME_SERVICE }))) as Res;
    expect(res.statusCode).toBe(403);
    expect(json(res)).toEqual({ error: 'access_denied', error_description: `The caller is granted audience "${ORDERS}" only for an Auth0 organization: name one in "organization".` });
    expect(stack.tenant.tokenRequests()).toBe(0);
  });

  it('a malformed organization is a 400 invalid_request before STS or the IdP', async () => {
    const vendor = await freshVendor();
    const stsBefore = stack.sts.calls();
    const res = (await vendor.handler(apiEvent({ body: JSON.stringify({ audience: ORDERS, organization: 'Acme Corp' }), userArn: ACME_SERVICE }))) as Res;
    expect(res.statusCode).toBe(400);
    expect(json(res).error).toBe('invalid_request');
    expect(stack.sts.calls()).toBe(stsBefore);
    expect(stack.tenant.tokenRequests()).toBe(0);
  });
});

describe('tokens are kept per organization', () => {
  it('two organizations and none, same audience and scope: three tokens, three IdP calls, served apart from the store to another instance', async () => {
    const table = await stack.newTable();
    const first = stack.vendor({ env: { TOKEN_TABLE_NAME: table } });
    const second = stack.vendor({ env: { TOKEN_TABLE_NAME: table } });
    const ask = (vendor: ReturnType<TestStack['vendor']>, organization?: string) =>
      vendor.service.vend({ caller: caller(BACKOFFICE), audience: ORDERS, scope: 'read:orders', ...(organization === undefined ? {} : { organization }) });

    const acme = await ask(first, ACME.id);
    const globex = await ask(first, GLOBEX.id);
    const none = await ask(first);
    expect(stack.tenant.tokenRequests()).toBe(3);
    expect(decodeJwt(acme.access_token).org_id).toBe(ACME.id);
    expect(decodeJwt(globex.access_token).org_id).toBe(GLOBEX.id);
    expect(decodeJwt(none.access_token)).not.toHaveProperty('org_id');

    // Again, from memory and from the shared store: no IdP call, each organization its own token.
    expect((await ask(first, ACME.id)).access_token).toBe(acme.access_token);
    expect((await ask(second, GLOBEX.id)).access_token).toBe(globex.access_token);
    expect((await ask(second, ACME.id)).access_token).toBe(acme.access_token);
    expect((await ask(second)).access_token).toBe(none.access_token);
    expect(stack.tenant.tokenRequests()).toBe(3);

    const records = await first.store.listTokens();
    expect(records.map((r) => r.organization ?? null).sort()).toEqual([GLOBEX.id, ACME.id, null].sort());

    // Flush one organization: only its token goes; the next request for it costs one IdP call.
    expect(await first.service.flush('orders', ORDERS, ACME.id)).toBe(1);
    expect((await first.store.listTokens()).map((r) => r.organization ?? null).sort()).toEqual([GLOBEX.id, null].sort());
    expect((await ask(first, GLOBEX.id)).access_token).toBe(globex.access_token);
    expect((await ask(first, ACME.id)).access_token).not.toBe(acme.access_token);
    expect(stack.tenant.tokenRequests()).toBe(4);
  });

  it('the refresher prefetches one token per organization of a prefetch grant', async () => {
    // A grants file of its own: the stack's, plus a prefetch grant naming both organizations.
    const { writeFileSync, readFileSync } = await import('node:fs');
    const grants = JSON.parse(readFileSync(stack.grantsFile, 'utf8')) as { grants: unknown[] };
    const file = `${stack.grantsFile}.prefetch.json`;
    writeFileSync(
      file,
      JSON.stringify({
        ...grants,
        // only this grant prefetches: the stack's own reporting grant does not
        grants: [
          ...(grants.grants as Array<Record<string, unknown>>).map((g) => ({ ...g, prefetch: false })),
          { principals: ['arn:aws:iam::111122223333:role/backoffice'], prefetch: true, client: 'orders', audience: ORDERS, scopes: ['read:orders'], organizations: [ACME.id, GLOBEX.id] },
        ],
      }),
    );
    const vendor = await freshVendor({ env: { GRANTS_FILE: file } });
    const report = await vendor.refresher.run();
    expect(report).toMatchObject({ considered: 2, refreshed: 2, failed: 0 });
    expect(stack.tenant.tokenRequests()).toBe(2);
    expect((await vendor.store.listTokens()).map((r) => r.organization).sort()).toEqual([ACME.id, GLOBEX.id].sort());
    // Run again: both fresh, no IdP call.
    expect(await vendor.refresher.run()).toMatchObject({ considered: 2, fresh: 2 });
    expect(stack.tenant.tokenRequests()).toBe(2);
  });
});

describe('Auth0 refusing an organization the grants allow (its exact answer is unknown: §14.7)', () => {
  it.each(['invalid_request', 'access_denied'] as const)(
    'answered %s: 502 naming the IdP\'s error, remembered for that organization only, never a refused credential',
    async (answer) => {
      stack.tenant.setOrganizationRefusalAnswer(answer);
      stack.tenant.dissociateOrganization(GLOBEX.id, 'orders-client', ORDERS);
      try {
        const vendor = await freshVendor();
        const ask = (organization: string) => vendor.service.vend({ caller: caller(BACKOFFICE), audience: ORDERS, scope: 'read:orders', organization });
        await expect(ask(GLOBEX.id)).rejects.toMatchObject({ code: 'ERR_IDP_ORGANIZATION_REFUSED', status: 502, oauthError: answer });
        const afterFirst = stack.tenant.tokenRequests();
        // Remembered: the next request for that organization does not reach Auth0 ...
        await expect(ask(GLOBEX.id)).rejects.toMatchObject({ code: 'ERR_IDP_ORGANIZATION_REFUSED' });
        expect(stack.tenant.tokenRequests()).toBe(afterFirst);
        // ... and the other organization is served.
        await expect(ask(ACME.id)).resolves.toMatchObject({ token_type: 'Bearer' });
        // One attempt: a refused organization is no reason to try the other credential.
        expect(afterFirst).toBe(1);
      } finally {
        stack.tenant.associateOrganization(GLOBEX.id, 'orders-client', ORDERS);
        stack.tenant.setOrganizationRefusalAnswer('invalid_request');
      }
    },
  );
});

describe('a default organization at Auth0 (§14.5): tokens for an organization nobody asked for', () => {
  // Between the vendor and the tenant, acme is added to every request that names no organization,
  // which is what Auth0 does for an application with a default organization for client_credentials.
  const defaulting: typeof fetch = (input, init) => {
    if (String(input).endsWith('/oauth/token') && typeof init?.body === 'string') {
      const body = JSON.parse(init.body) as Record<string, unknown>;
      if (body.organization === undefined) return fetch(input, { ...init, body: JSON.stringify({ ...body, organization: ACME.id }) });
    }
    return fetch(input, init);
  };

  it('502 ERR_IDP_ORGANIZATION_MISMATCH, never cached, and remembered: asking again mints no second useless token', async () => {
    const vendor = await freshVendor({ deps: { fetch: defaulting } });
    const ask = () => vendor.service.vend({ caller: caller(BACKOFFICE), audience: ORDERS, scope: 'read:orders' });
    await expect(ask()).rejects.toMatchObject({ code: 'ERR_IDP_ORGANIZATION_MISMATCH', status: 502 });
    await expect(ask()).rejects.toMatchObject({ code: 'ERR_IDP_ORGANIZATION_MISMATCH' });
    expect(stack.tenant.tokenRequests()).toBe(1);
    expect(await vendor.store.listTokens()).toEqual([]);
  });

  it("the default organization's exhausted quota stops that request only: other organizations go on, the client is not paused", async () => {
    const vendor = await freshVendor({ deps: { fetch: defaulting } });
    stack.tenant.setOrganizationQuota(ACME.id, { perHour: 1, enforce: true });
    // The one acme token of the hour goes to an organization-less request (refused: 502) ...
    await expect(vendor.service.vend({ caller: caller(BACKOFFICE), audience: ORDERS, scope: 'read:orders' })).rejects.toMatchObject({ code: 'ERR_IDP_ORGANIZATION_MISMATCH' });
    // ... the next organization-less request meets acme's quota: a 429 for that request alone
    await expect(vendor.service.vend({ caller: caller(BACKOFFICE), audience: ORDERS, scope: 'write:orders' })).rejects.toMatchObject({ code: 'ERR_IDP_ORGANIZATION_QUOTA' });
    // ... and globex is served, with no client back-off recorded.
    await expect(vendor.service.vend({ caller: caller(BACKOFFICE), audience: ORDERS, scope: 'read:orders', organization: GLOBEX.id })).resolves.toMatchObject({ token_type: 'Bearer' });
    expect((await vendor.store.inspect()).backoffs).toEqual([]);
  });
});

describe('the token\'s organization is verified before it is cached or served', () => {
  it('a token for another organization than the one asked for: 502, never cached', async () => {
    // Between the vendor and the tenant, the request's organization is swapped for another the
    // tenant also allows: the tenant issues a token with that other org_id.
    const swapping: typeof fetch = (input, init) => {
      if (String(input).endsWith('/oauth/token') && typeof init?.body === 'string') {
        const body = JSON.parse(init.body) as Record<string, unknown>;
        if (body.organization === ACME.id) return fetch(input, { ...init, body: JSON.stringify({ ...body, organization: GLOBEX.id }) });
      }
      return fetch(input, init);
    };
    const vendor = await freshVendor({ deps: { fetch: swapping } });
    await expect(vendor.service.vend({ caller: caller(BACKOFFICE), audience: ORDERS, scope: 'read:orders', organization: ACME.id })).rejects.toMatchObject({
      code: 'ERR_IDP_ORGANIZATION_MISMATCH',
      oauthError: 'server_error',
      status: 502,
    });
    expect(stack.tenant.issued().map((t) => decodeJwt(t.accessToken).org_id)).toEqual([GLOBEX.id]);
    expect(await vendor.store.listTokens()).toEqual([]);
    // Not cached in memory either, and not asked for again at once: the refusal is remembered
    // (REFUSAL_MEMORY_SECONDS), so a second request mints no second useless token ...
    await expect(vendor.service.vend({ caller: caller(BACKOFFICE), audience: ORDERS, scope: 'read:orders', organization: ACME.id })).rejects.toMatchObject({ status: 502 });
    expect(stack.tenant.tokenRequests()).toBe(1);
    // ... while another instance, which never saw it, asks again and is refused again.
    const other = await freshVendor({ deps: { fetch: swapping } });
    await expect(other.service.vend({ caller: caller(BACKOFFICE), audience: ORDERS, scope: 'read:orders', organization: ACME.id })).rejects.toMatchObject({ code: 'ERR_IDP_ORGANIZATION_MISMATCH' });
    expect(stack.tenant.tokenRequests()).toBe(2);
    expect(await other.store.listTokens()).toEqual([]);
  });

  it('a tenant that ignores the organization (no org_id in the token): 502, never cached', async () => {
    stack.tenant.setOrganizationParameter('ignored');
    const vendor = await freshVendor();
    await expect(vendor.service.vend({ caller: caller(BACKOFFICE), audience: ORDERS, scope: 'read:orders', organization: GLOBEX.id })).rejects.toMatchObject({ code: 'ERR_IDP_ORGANIZATION_MISMATCH' });
    expect(stack.tenant.tokenRequests()).toBe(1);
    expect(await vendor.store.listTokens()).toEqual([]);
  });
});

describe('one organization\'s quota pauses that organization only', () => {
  it('a 429 with Auth0-Organization-Quota-Limit stops acme\'s fetches fleet-wide; globex and organization-less tokens go on', async () => {
    const table = await stack.newTable();
    const instance = () => stack.vendor({ env: { TOKEN_TABLE_NAME: table } });
    const [first, second, third] = [instance(), instance(), instance()];
    const ask = (vendor: ReturnType<TestStack['vendor']>, scope: string, organization?: string) =>
      vendor.service.vend({ caller: caller(BACKOFFICE), audience: ORDERS, scope, ...(organization === undefined ? {} : { organization }) });
    stack.tenant.setOrganizationQuota(ACME.id, { perHour: 1, enforce: true });

    // The first instance spends acme's quota of one token an hour, and hears that nothing is left.
    await ask(first, 'read:orders', ACME.id);
    expect(stack.tenant.tokenRequests()).toBe(1);
    // Another instance, which has not heard, asks for acme's second token: Auth0's 429 says acme's quota.
    await expect(ask(second, 'write:orders', ACME.id)).rejects.toMatchObject({ code: 'ERR_IDP_ORGANIZATION_QUOTA', status: 503 });
    expect(stack.tenant.tokenRequests()).toBe(2);
    // Paused for acme, in that instance and, through the table, in a third: no IdP call.
    await expect(ask(second, 'read:orders write:orders', ACME.id)).rejects.toMatchObject({ code: 'ERR_IDP_BACKOFF', status: 503 });
    await expect(ask(third, 'write:orders', ACME.id)).rejects.toMatchObject({ code: 'ERR_IDP_BACKOFF' });
    // So does the first (which had also heard Auth0's count for acme: nothing left).
    await expect(ask(first, 'write:orders', ACME.id)).rejects.toMatchObject({ code: 'ERR_IDP_BACKOFF' });
    expect(stack.tenant.tokenRequests()).toBe(2);
    // acme's token already cached is still served, by every instance.
    await ask(third, 'read:orders', ACME.id);

    // globex and the organization-less token are not paused, in any of them.
    expect(decodeJwt((await ask(first, 'write:orders', GLOBEX.id)).access_token).org_id).toBe(GLOBEX.id);
    expect(decodeJwt((await ask(second, 'write:orders')).access_token)).not.toHaveProperty('org_id');
    expect(decodeJwt((await ask(third, 'read:orders', GLOBEX.id)).access_token).org_id).toBe(GLOBEX.id);
    expect(stack.tenant.tokenRequests()).toBe(5);

    const { backoffs } = await first.store.inspect();
    expect(backoffs.map((b) => [b.clientKey.slice(0, 2), b.reason])).toEqual([['o.', 'organization_quota']]);
  });
});
