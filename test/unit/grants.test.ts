/* eslint-disable @typescript-eslint/no-explicit-any -- the table below mutates a valid document into invalid shapes on purpose */
import { describe, expect, it } from 'vitest';
import { AccessDeniedError, InvalidRequestError } from '../../functions/core/errors.js';
import { GrantBook, GrantsValidationError, parseScope } from '../../functions/core/grants.js';
import { callerFromArn, type Caller } from '../../functions/core/principal.js';

const doc = () => ({
  clients: {
    orders: { domain: 'tenant.eu.auth0.com', secretId: 'vendor/orders' },
    local: { domain: 'http://127.0.0.1:4000', secretId: 'vendor/local', authMethod: 'client_secret_basic', tokenFormat: 'opaque' },
  },
  grants: [
    { principals: ['arn:aws:iam::111122223333:role/checkout'], client: 'orders', audience: 'https://orders', scopes: ['read:orders', 'write:orders'] },
    { principals: ['arn:aws:iam::111122223333:role/report-*'], client: 'orders', audience: 'https://orders', scopes: ['read:orders'] },
    { principals: ['arn:aws:iam::111122223333:role/teams/billing/billing-api'], client: 'orders', audience: 'https://orders', scopes: ['read:orders'] },
    { principals: ['arn:aws:iam::111122223333:user/ops/alice'], client: 'local', audience: 'https://local', scopes: ['a', 'b'] },
    { principals: ['arn:aws:iam::111122223333:role/reporting-*'], client: 'local', audience: 'https://local', scopes: ['a'] },
  ],
});

const role = (arn: string, channel: Caller['channel'] = 'api', uniqueId?: string): Caller => {
  const caller = callerFromArn(arn);
  if (caller === undefined) throw new Error(`not a caller: ${arn}`);
  return { ...caller, channel, ...(uniqueId !== undefined ? { uniqueId } : {}) };
};
const direct = (arn: string): Caller => role(arn, 'direct');

describe('GrantBook.parse', () => {
  it('accepts a valid document and derives origins and issuers', () => {
    const book = GrantBook.parse(doc());
    expect(book.clients.get('orders')).toMatchObject({ origin: 'https://tenant.eu.auth0.com', issuer: 'https://tenant.eu.auth0.com/', authMethod: 'client_secret_post', tokenFormat: 'jwt' });
    expect(book.clients.get('local')).toMatchObject({ origin: 'http://127.0.0.1:4000', authMethod: 'client_secret_basic', tokenFormat: 'opaque' });
  });

  it.each([
    [(d: any) => (d.extra = 1), 'extra: unknown field'],
    [(d: any) => (d.clients.orders.domain = 'http://tenant.auth0.com'), 'clients.orders.domain: a URL is only allowed'],
    [(d: any) => (d.clients.orders.domain = 'not a host'), 'clients.orders.domain: "not a host" is not a host name'],
    [(d: any) => (d.clients.orders.authMethod = 'mtls'), 'clients.orders.authMethod: must be "client_secret_post", "client_secret_basic" or "private_key_jwt"'],
    [(d: any) => (d.clients.orders.secretKey = 'x'), 'clients.orders.secretKey: unknown field'],
    [(d: any) => delete d.clients.orders.secretId, 'clients.orders.secretId: must be a non-empty string'],
    [(d: any) => (d.grants[1].client = 'nope'), 'grants[1].client: no client named "nope"'],
    [(d: any) => (d.grants[0].scopes = []), 'grants[0].scopes: must be a non-empty array'],
    [(d: any) => (d.grants[0].scopes = ['ok', 'bad"scope']), 'grants[0].scopes[1]'],
    [(d: any) => (d.grants[0].principals = ['arn:aws:iam::*:role/x']), 'grants[0].principals[0]'],
    [(d: any) => (d.grants[0].principals = ['arn:aws:iam::111122223333:role/te*ms/x']), 'grants[0].principals[0]: "*" is allowed only within the role or user name'],
    [(d: any) => (d.grants[0].principals = ['arn:aws:iam::111122223333:role/teams/x-*']), 'grants[0].principals[0]: a role pattern with "*" cannot have a path'],
    [(d: any) => (d.grants[4].principals = []), 'grants[4].principals: name at least one principal'],
    [(d: any) => (d.grants[3].audience = 'https://orders'), 'grants[3].client: audience "https://orders" is already served by client "orders"'],
    [(d: any) => (d.grants = []), 'grants: must be a non-empty array'],
  ])('rejects a bad document naming the field (%#)', (mutate, message) => {
    const d = doc();
    mutate(d);
    expect(() => GrantBook.parse(d)).toThrow(GrantsValidationError);
    expect(() => GrantBook.parse(d)).toThrow(message);
  });
});

describe('GrantBook.authorize', () => {
  const book = GrantBook.parse(doc());

  it('matches an assumed-role session as its role and grants all scopes when none are asked', () => {
    const out = book.authorize(role('arn:aws:sts::111122223333:assumed-role/checkout/i-0abc'), 'https://orders', undefined);
    expect(out.client.name).toBe('orders');
    expect(out.scopes).toEqual(['read:orders', 'write:orders']);
  });

  it('grants a subset, sorted and de-duplicated', () => {
    const out = book.authorize(role('arn:aws:sts::111122223333:assumed-role/checkout/ss'), 'https://orders', 'write:orders  read:orders write:orders');
    expect(out.scopes).toEqual(['read:orders', 'write:orders']);
  });

  it('denies a scope outside the grant, naming it', () => {
    expect(() => book.authorize(role('arn:aws:sts::111122223333:assumed-role/report-daily/ss'), 'https://orders', 'write:orders')).toThrow(
      new AccessDeniedError('The caller is not granted scope "write:orders" for audience "https://orders".'),
    );
  });

  it('matches * within a role name only', () => {
    expect(book.authorize(role('arn:aws:sts::111122223333:assumed-role/report-daily/ss'), 'https://orders', undefined).scopes).toEqual(['read:orders']);
    expect(() => book.authorize(role('arn:aws:sts::111122223333:assumed-role/xreport-daily/ss'), 'https://orders', undefined)).toThrow(AccessDeniedError);
    expect(() => book.authorize(role('arn:aws:sts::999988887777:assumed-role/report-daily/ss'), 'https://orders', undefined)).toThrow(AccessDeniedError);
  });

  it('matches a role granted with a path (STS ARNs omit it)', () => {
    expect(book.authorize(role('arn:aws:sts::111122223333:assumed-role/billing-api/ss'), 'https://orders', 'read:orders').scopes).toEqual(['read:orders']);
  });

  it('matches IAM users by full ARN, path included', () => {
    expect(book.authorize(role('arn:aws:iam::111122223333:user/ops/alice'), 'https://local', undefined).scopes).toEqual(['a', 'b']);
    expect(() => book.authorize(role('arn:aws:iam::111122223333:user/alice'), 'https://local', undefined)).toThrow(AccessDeniedError);
  });

  it('gives a direct invoker exactly its own grants, as through the API (the channel cannot be proven)', () => {
    const reporting = 'arn:aws:sts::111122223333:assumed-role/reporting-daily/job';
    expect(book.authorize(direct(reporting), 'https://local', undefined).scopes).toEqual(['a']);
    expect(book.authorize(role(reporting), 'https://local', undefined).scopes).toEqual(['a']);
    expect(() => book.authorize(direct(reporting), 'https://local', 'b')).toThrow(AccessDeniedError);
    expect(book.authorize(direct('arn:aws:iam::111122223333:user/ops/alice'), 'https://local', 'b').scopes).toEqual(['b']);
    expect(() => book.authorize(direct('arn:aws:sts::111122223333:assumed-role/someone-else/ss'), 'https://local', undefined)).toThrow(AccessDeniedError);
  });

  it('refuses the retired directInvoke field, naming it, rather than ignore a protection that would not hold', () => {
    const old = { clients: { c: { domain: 'tenant.eu.auth0.com', secretId: 's' } }, grants: [{ principals: ['arn:aws:iam::111122223333:role/job'], directInvoke: true, client: 'c', audience: 'https://a', scopes: ['a'] }] };
    expect(() => GrantBook.parse(old)).toThrow('grants[0].directInvoke: is no longer used');
  });

  it('matches a pinned unique id exactly: a role recreated under the same name is another principal', () => {
    const pinned = GrantBook.parse({
      clients: { c: { domain: 'tenant.eu.auth0.com', secretId: 's' } },
      grants: [{ principals: [{ arn: 'arn:aws:iam::111122223333:role/payments', uniqueId: 'AROAPINNEDROLE0000001' }], client: 'c', audience: 'https://pay', scopes: ['pay'] }],
    });
    const session = 'arn:aws:sts::111122223333:assumed-role/payments/ss';
    expect(pinned.authorize(role(session, 'api', 'AROAPINNEDROLE0000001'), 'https://pay', undefined).scopes).toEqual(['pay']);
    expect(() => pinned.authorize(role(session, 'api', 'AROARECREATEDROLE0002'), 'https://pay', undefined)).toThrow(AccessDeniedError);
    expect(() => pinned.authorize(role(session), 'https://pay', undefined)).toThrow(AccessDeniedError);
  });

  it.each([
    [{ arn: 'arn:aws:iam::111122223333:role/app-*', uniqueId: 'AROAPINNEDROLE0000001' }, 'uniqueId'],
    [{ arn: 'arn:aws:iam::111122223333:role/app', uniqueId: 'AIDAAUSERSID00000001' }, "role's unique id"],
    [{ arn: 'arn:aws:iam::111122223333:user/app', uniqueId: 'AROAPINNEDROLE0000001' }, "user's unique id"],
    [{ arn: 'arn:aws:iam::111122223333:role/app' }, 'uniqueId: must be a non-empty string'],
    [{ arn: 'arn:aws:iam::111122223333:role/app', uniqueId: 'AROAPINNEDROLE0000001', extra: 1 }, 'unknown field'],
  ])('refuses a bad pinned principal %j', (principal, message) => {
    const bad = { clients: { c: { domain: 'tenant.eu.auth0.com', secretId: 's' } }, grants: [{ principals: [principal], client: 'c', audience: 'https://pay', scopes: ['pay'] }] };
    expect(() => GrantBook.parse(bad)).toThrow(message);
  });

  it('denies an unknown audience and rejects a malformed scope', () => {
    expect(() => book.authorize(role('arn:aws:sts::111122223333:assumed-role/checkout/ss'), 'https://other', undefined)).toThrow(AccessDeniedError);
    expect(() => book.authorize(role('arn:aws:sts::111122223333:assumed-role/checkout/ss'), 'https://orders', 'read:orders\\x')).toThrow(InvalidRequestError);
  });
});

describe('callerFromArn', () => {
  it('maps assumed roles to roles and rejects what is not a principal', () => {
    expect(callerFromArn('arn:aws:sts::111122223333:assumed-role/my-role/session')).toMatchObject({ type: 'role', name: 'my-role', arn: 'arn:aws:iam::111122223333:role/my-role' });
    expect(callerFromArn('arn:aws-us-gov:sts::111122223333:assumed-role/r/ss')).toMatchObject({ partition: 'aws-us-gov' });
    for (const bad of [undefined, null, '', 'arn:aws:iam::111122223333:root', 'arn:aws:sts::111122223333:federated-user/bob', 'arn:aws:sts::1:assumed-role/r/ss']) {
      expect(callerFromArn(bad)).toBeUndefined();
    }
  });

  it('parses scopes per RFC 6749', () => {
    expect(parseScope(' b a  b ')).toEqual(['a', 'b']);
    expect(parseScope('')).toEqual([]);
    expect(() => parseScope('a\tb')).toThrow(InvalidRequestError);
  });
});
