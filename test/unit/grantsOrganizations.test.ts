/**
 * Grants that name Auth0 organizations (issue 12): the syntax (`organizations`, `organizationUsage`),
 * what `authorize` decides for a request with and without an organization, the refresher's and
 * prefetch's requests, and the cache key an organization adds to.
 */
/* eslint-disable @typescript-eslint/no-explicit-any -- the table below mutates a valid document into invalid shapes on purpose */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AccessDeniedError, InvalidRequestError } from '../../functions/core/errors.js';
import { GrantBook, GrantsValidationError, isOrganization } from '../../functions/core/grants.js';
import { callerFromArn, type Caller } from '../../functions/core/principal.js';
import { cacheKey, organizationKey } from '../../functions/core/tokenIdentity.js';
import { parseDirectBody, parseVendBody } from '../../functions/http/vendRequest.js';

const ACME = 'org_vIK75NKFvaozQsFy';
const GLOBEX = 'org_gLobex0000000001';
const ORDERS = 'https://orders';

const doc = () => ({
  clients: {
    orders: { domain: 'tenant.eu.auth0.com', secretId: 'vendor/orders' },
    opaque: { domain: 'tenant.eu.auth0.com', secretId: 'vendor/opaque', tokenFormat: 'opaque' },
  },
  grants: [
    // acme's service: acme only (require, the default with a list)
    { principals: ['arn:aws:iam::111122223333:role/acme-service'], client: 'orders', audience: ORDERS, scopes: ['read:orders', 'write:orders'], organizations: [ACME] },
    // a back office: either organization by id, or globex by name, or none at all (allow)
    { principals: ['arn:aws:iam::111122223333:role/backoffice'], prefetch: true, client: 'orders', audience: ORDERS, scopes: ['read:orders'], organizations: [ACME, GLOBEX, 'globex'], organizationUsage: 'allow' },
    // the same back office, without organization only (deny: no list), with a wider scope
    { principals: ['arn:aws:iam::111122223333:role/backoffice'], client: 'orders', audience: ORDERS, scopes: ['admin:orders'] },
    // a legacy caller: no organization, as before
    { principals: ['arn:aws:iam::111122223333:role/legacy'], prefetch: true, client: 'orders', audience: ORDERS, scopes: ['read:orders'] },
  ],
});

const role = (name: string): Caller => ({ ...callerFromArn(`arn:aws:sts::111122223333:assumed-role/${name}/session`)!, channel: 'api' });
const book = () => GrantBook.parse(doc());

describe('grants: organizations (syntax)', () => {
  it('a grant without organizations denies them; a list requires one of them; "allow" also serves none', () => {
    const grants = book().grants;
    expect(grants.map((g) => [g.organizationUsage, g.organizations])).toEqual([
      ['require', [ACME]],
      ['allow', [ACME, GLOBEX, 'globex']],
      ['deny', []],
      ['deny', []],
    ]);
  });

  it.each([
    [(d: any) => (d.grants[0].organizations = []), 'grants[0].organizations: must be a non-empty array'],
    [(d: any) => (d.grants[0].organizations = 'org_abc'), 'grants[0].organizations: must be a non-empty array'],
    [(d: any) => (d.grants[0].organizations = [null]), 'grants[0].organizations[0]: must be a non-empty string'],
    [(d: any) => (d.grants[0].organizations = ['Acme']), 'grants[0].organizations[0]: "Acme" is not an Auth0 organization id'],
    [(d: any) => (d.grants[0].organizations = ['org_not-an-id']), 'grants[0].organizations[0]: "org_not-an-id" is not an Auth0 organization id'],
    [(d: any) => (d.grants[0].organizations = ['a'.repeat(51)]), 'grants[0].organizations[0]: must be at most 50 characters'],
    [(d: any) => (d.grants[0].organizations = [ACME, ACME]), `grants[0].organizations: "${ACME}" is listed twice`],
    [(d: any) => (d.grants[0].organizationUsage = 'deny'), 'grants[0].organizationUsage: must be "require"'],
    [(d: any) => (d.grants[3].organizationUsage = 'allow'), 'grants[3].organizationUsage: needs "organizations"'],
    [(d: any) => d.grants.push({ principals: ['arn:aws:iam::111122223333:role/x'], client: 'opaque', audience: 'https://o', scopes: ['a'], organizations: [ACME] }), 'grants[4].organizations: client "opaque" issues opaque tokens'],
  ])('refuses a bad organizations field (%#)', (mutate, message) => {
    const d = doc();
    mutate(d);
    expect(() => GrantBook.parse(d)).toThrow(GrantsValidationError);
    expect(() => GrantBook.parse(d)).toThrow(message);
  });

  it('reads an org_ value as an id and anything else as a name, in Auth0\'s forms', () => {
    expect([ACME, 'org_1', 'acme', 'a-b_c9', '9lives'].map(isOrganization)).toEqual([true, true, true, true, true]);
    expect(['', 'Acme', 'org_', 'org_a-b', 'acme corp', 'a'.repeat(51), `org_${'a'.repeat(47)}`, 'acme\n'].map(isOrganization)).toEqual([false, false, false, false, false, false, false, false]);
  });
});

describe('grants: authorize with organizations', () => {
  it('a principal gets its organization, and is refused another one, naming it', () => {
    expect(book().authorize(role('acme-service'), ORDERS, 'read:orders', ACME)).toMatchObject({ audience: ORDERS, scopes: ['read:orders'], organization: ACME });
    expect(() => book().authorize(role('acme-service'), ORDERS, 'read:orders', GLOBEX)).toThrow(new AccessDeniedError(`The caller is not granted organization "${GLOBEX}" for audience "${ORDERS}".`));
  });

  it('a request without organization where every grant requires one is refused, saying so', () => {
    expect(() => book().authorize(role('acme-service'), ORDERS, 'read:orders')).toThrow(AccessDeniedError);
    expect(() => book().authorize(role('acme-service'), ORDERS, 'read:orders')).toThrow(`granted audience "${ORDERS}" only for an Auth0 organization`);
  });

  it('grants that do not serve organizations refuse every organization', () => {
    expect(book().authorize(role('legacy'), ORDERS, undefined)).toEqual({ client: book().clients.get('orders'), audience: ORDERS, scopes: ['read:orders'] });
    expect(() => book().authorize(role('legacy'), ORDERS, undefined, ACME)).toThrow(`not granted organization "${ACME}"`);
  });

  it('the scopes are the union over the grants that allow that organization (or none) only', () => {
    const b = book();
    expect(b.authorize(role('backoffice'), ORDERS, undefined).scopes).toEqual(['admin:orders', 'read:orders']);
    expect(b.authorize(role('backoffice'), ORDERS, undefined, GLOBEX).scopes).toEqual(['read:orders']);
    expect(b.authorize(role('backoffice'), ORDERS, undefined, 'globex')).toMatchObject({ organization: 'globex' });
    expect(() => b.authorize(role('backoffice'), ORDERS, 'admin:orders', ACME)).toThrow(`The caller is not granted scope "admin:orders" for audience "${ORDERS}" and organization "${ACME}".`);
    expect(() => b.authorize(role('backoffice'), ORDERS, 'read:orders', 'initech')).toThrow('not granted organization "initech"');
  });

  it('a malformed organization is a 400, an ungranted audience stays the audience\'s refusal', () => {
    expect(() => book().authorize(role('acme-service'), ORDERS, undefined, 'Acme Corp')).toThrow(InvalidRequestError);
    expect(() => book().authorize(role('acme-service'), 'https://other', undefined, ACME)).toThrow('not granted audience "https://other"');
  });

  it('the refresher asks again only while the grants still allow the organization', () => {
    const b = book();
    expect(b.requestFor('orders', ORDERS, ['read:orders'], ACME)).toMatchObject({ organization: ACME });
    expect(b.requestFor('orders', ORDERS, ['write:orders'], ACME)).toMatchObject({ organization: ACME });
    expect(b.requestFor('orders', ORDERS, ['write:orders'], GLOBEX)).toBeUndefined();
    expect(b.requestFor('orders', ORDERS, ['read:orders'], 'org_initech00000001')).toBeUndefined();
    expect(b.requestFor('orders', ORDERS, ['admin:orders'])).not.toHaveProperty('organization');
  });

  it('prefetch: one token per listed organization id, plus one without organization where the grant allows it', () => {
    const requests = book().prefetchRequests().map((r) => [r.scopes.join(' '), r.organization ?? null]);
    expect(requests).toEqual([
      ['read:orders', null],
      ['read:orders', ACME],
      ['read:orders', GLOBEX],
      ['read:orders', null],
    ]);
  });

  it('a rotation tests a requiring grant with its first organization', () => {
    const client = book().clients.get('orders')!;
    expect(book().testRequestFor(client)).toMatchObject({ audience: ORDERS, organization: ACME });
  });
});

describe('cache key and back-off key with organizations', () => {
  it('a request without organization keeps exactly the key it had before organizations existed', () => {
    const before = createHash('sha256').update(JSON.stringify(['https://t/', 'vendor/orders', 'https://api', ['read', 'write']])).digest('base64url');
    expect(cacheKey('https://t/', 'vendor/orders', 'https://api', ['write', 'read'])).toBe(before);
    expect(cacheKey('https://t/', 'vendor/orders', 'https://api', ['write', 'read'], undefined)).toBe(before);
  });

  it('each organization has a key of its own, apart from the organization-less one', () => {
    const keys = [undefined, ACME, GLOBEX, 'globex'].map((o) => cacheKey('https://t/', 'vendor/orders', 'https://api', ['read'], o));
    expect(new Set(keys).size).toBe(4);
    // the organization cannot be confused with a scope
    expect(cacheKey('https://t/', 'vendor/orders', 'https://api', ['read'], 'acme')).not.toBe(cacheKey('https://t/', 'vendor/orders', 'https://api', ['read', 'acme']));
  });

  it('an organization back-off key is per client and organization, and never a client key', () => {
    expect(organizationKey('client-a', ACME)).not.toBe(organizationKey('client-a', GLOBEX));
    expect(organizationKey('client-a', ACME)).not.toBe(organizationKey('client-b', ACME));
    expect(organizationKey('client-a', ACME)).toMatch(/^o\.[A-Za-z0-9_-]{22}$/);
  });
});

describe('the request body names an organization', () => {
  it('accepts an id or a name, in the API body and a direct invocation', () => {
    expect(parseVendBody({ audience: ORDERS, organization: ACME })).toEqual({ audience: ORDERS, scope: undefined, organization: ACME });
    expect(parseDirectBody({ audience: ORDERS, organization: 'acme', proof: 'p' })).toMatchObject({ organization: 'acme', proof: 'p' });
    expect(parseVendBody({ audience: ORDERS })).not.toHaveProperty('organization');
  });

  it.each([
    [42, 'organization must be a non-empty string'],
    ['', 'organization must be a non-empty string'],
    ['a'.repeat(51), 'organization must be at most 50 characters'],
    ['acme\nglobex', 'organization must not contain control characters'],
    ['Acme', 'organization must be an Auth0 organization id'],
    ['org_x y', 'organization must be an Auth0 organization id'],
  ])('refuses %j with a 400', (organization, message) => {
    expect(() => parseVendBody({ audience: ORDERS, organization })).toThrow(InvalidRequestError);
    expect(() => parseVendBody({ audience: ORDERS, organization })).toThrow(message);
  });
});
