/**
 * Contract tests of the local tenant's Management API and of secret and key rotation as the token
 * endpoint sees it; each cites its section of docs/auth0-wire-behaviour.md (§n).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, expect, beforeAll, afterAll, afterEach, vi } from 'vitest';
import { SignJWT, calculateJwkThumbprint, createRemoteJWKSet, exportJWK, exportPKCS8, exportSPKI, generateKeyPair, jwtVerify } from 'jose';
import type { CryptoKey } from 'jose';
import { MANAGEMENT_API_SCOPES, managementAudience, startLocalAuth0Tenant } from '../../local/auth0Tenant.js';
import type { LocalAuth0Tenant } from '../../local/auth0Tenant.js';
import { freePort } from '../../local/moto.js';

const ORDERS = 'https://orders.example.com';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** §1 (and §7's most likely answer): a refused credential */
const UNAUTHORIZED = { error: 'access_denied', error_description: 'Unauthorized' };

interface Reply {
  status: number;
  body: unknown;
  headers?: Headers;
}

interface RsaKey {
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  pem: string;
  /** RFC 7638 thumbprint: the kid the tenant gives the credential */
  thumbprint: string;
}

async function rsaKey(): Promise<RsaKey> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  return { privateKey, publicKey, pem: await exportSPKI(publicKey), thumbprint: await calculateJwkThumbprint(await exportJWK(publicKey)) };
}


async function json(res: Response): Promise<Reply> {
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as unknown) : undefined };
}

/** the reply with its headers (json() leaves them out, so that replies compare with toEqual) */
async function withHeaders(res: Response): Promise<Reply & { headers: Headers }> {
  return { ...(await json(res)), headers: res.headers };
}

describe('local Auth0 tenant: Management API for credential rotation', () => {
  let tenant: LocalAuth0Tenant;
  let recordDir: string;
  let recordFile: string;
  let initialKey: RsaKey;
  const rotatorSecret = randomBytes(24).toString('base64url');
  const readerSecret = randomBytes(24).toString('base64url');
  const appSecret = randomBytes(24).toString('base64url');
  const basicSecret = randomBytes(24).toString('base64url');

  beforeAll(async () => {
    recordDir = mkdtempSync(join(tmpdir(), 'auth0-mgmt-test-'));
    recordFile = join(recordDir, 'sensitive.jsonl');
    initialKey = await rsaKey();
    tenant = await startLocalAuth0Tenant({
      managementApi: true,
      clients: [
        { clientId: 'rotator', name: 'Secret rotation Lambda', clientSecret: rotatorSecret, authMethod: 'client_secret_post' },
        { clientId: 'reader', clientSecret: readerSecret, authMethod: 'client_secret_post' },
        { clientId: 'app', name: 'Orders app', clientSecret: appSecret, authMethod: 'client_secret_post' },
        { clientId: 'app-basic', clientSecret: basicSecret, authMethod: 'client_secret_basic' },
        { clientId: 'app-jwt', authMethod: 'private_key_jwt', credentials: [{ name: 'initial', pem: initialKey.pem }] },
      ],
      apis: [{ audience: ORDERS, scopes: ['read:orders'] }],
      clientGrants: {
        rotator: { management: [...MANAGEMENT_API_SCOPES] },
        reader: { management: ['read:clients'] },
        app: { [ORDERS]: ['read:orders'] },
        'app-basic': { [ORDERS]: ['read:orders'] },
        'app-jwt': { [ORDERS]: ['read:orders'] },
      },
      recordFile,
    });
  });

  afterAll(async () => {
    await tenant?.close();
    rmSync(recordDir, { recursive: true, force: true });
  });

  afterEach(() => {
    tenant.setSecretPropagationMs(0);
    tenant.setSecretPropagationMode('neither');
    tenant.setTamper(null);
  });

  const tokenUrl = (): string => `${tenant.origin}/oauth/token`;

  async function postToken(params: Record<string, string>, headers: Record<string, string> = {}): Promise<Reply> {
    return json(await fetch(tokenUrl(), { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(params) }));
  }

  async function managementToken(clientId = 'rotator', secret = rotatorSecret, scope?: string): Promise<string> {
    const res = await postToken({
      grant_type: 'client_credentials',
      client_id: clientId,
      client_secret: secret,
      audience: tenant.managementAudience,
      ...(scope ? { scope } : {}),
    });
    expect(res.status).toBe(200);
    return (res.body as { access_token: string }).access_token;
  }

  async function api(method: string, path: string, options: { token?: string | null; body?: unknown; authorization?: string } = {}): Promise<Reply> {
    const token = options.token === undefined ? await managementToken() : options.token;
    const authorization = options.authorization ?? (token === null ? undefined : `Bearer ${token}`);
    const res = await fetch(`${tenant.origin}/api/v2${path}`, {
      method,
      headers: {
        ...(authorization ? { authorization } : {}),
        ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
    });
    return json(res);
  }

  const secretToken = (clientId: string, secret: string): Promise<Reply> =>
    postToken({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret, audience: ORDERS });

  function assertion(key: CryptoKey, kid: string | undefined, aud = tokenUrl()): Promise<string> {
    return new SignJWT({})
      .setProtectedHeader({ alg: 'RS256', ...(kid === undefined ? {} : { kid }) })
      .setIssuer('app-jwt')
      .setSubject('app-jwt')
      .setAudience(aud)
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime('2m')
      .sign(key);
  }

  /** token request for app-jwt, with a client assertion signed by `key` (kid = its thumbprint unless `withKid` is false) */
  async function jwtToken(key: RsaKey, options: { withKid?: boolean; aud?: string } = {}): Promise<Reply> {
    return postToken({
      grant_type: 'client_credentials',
      client_id: 'app-jwt',
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: await assertion(key.privateKey, options.withKid === false ? undefined : key.thumbprint, options.aud),
      audience: ORDERS,
    });
  }

  it('registers the Management API at ${issuer}api/v2/ and issues Auth0-shaped JWTs for it via client_credentials', async () => {
    expect(tenant.managementAudience).toBe(`${tenant.issuer}api/v2/`);
    expect(managementAudience(tenant)).toBe(tenant.managementAudience);

    const res = await postToken({
      grant_type: 'client_credentials',
      client_id: 'rotator',
      client_secret: rotatorSecret,
      audience: tenant.managementAudience,
      scope: 'update:client_keys read:client_keys',
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ expires_in: 86400, scope: 'update:client_keys read:client_keys', token_type: 'Bearer' });
    const jwks = createRemoteJWKSet(new URL(`${tenant.origin}/.well-known/jwks.json`));
    const { payload, protectedHeader } = await jwtVerify((res.body as { access_token: string }).access_token, jwks, {
      issuer: tenant.issuer,
      audience: tenant.managementAudience,
    });
    expect(protectedHeader).toMatchObject({ alg: 'RS256', typ: 'JWT' });
    expect(payload).toMatchObject({ sub: 'rotator@clients', azp: 'rotator', gty: 'client-credentials', scope: 'update:client_keys read:client_keys' });

    // Every scope of the grant when none is requested; nothing beyond the grant.
    const all = await postToken({ grant_type: 'client_credentials', client_id: 'rotator', client_secret: rotatorSecret, audience: tenant.managementAudience });
    expect((all.body as { scope: string }).scope).toBe(MANAGEMENT_API_SCOPES.join(' '));
    const beyond = await postToken({
      grant_type: 'client_credentials',
      client_id: 'reader',
      client_secret: readerSecret,
      audience: tenant.managementAudience,
      scope: 'update:client_keys',
    });
    expect(beyond).toEqual({ status: 403, body: { error: 'access_denied', error_description: 'Client has not been granted scopes: update:client_keys' } });
    // No grant for the Management API: access_denied, as for any API.
    expect((await postToken({ grant_type: 'client_credentials', client_id: 'app', client_secret: appSecret, audience: tenant.managementAudience })).status).toBe(403);
  });

  it('rotate-secret replaces the secret at once: the old one is refused immediately, the new one works', async () => {
    expect((await secretToken('app', appSecret)).status).toBe(200);
    const token = await managementToken();
    tenant.resetCounters();

    const res = await api('POST', '/clients/app/rotate-secret', { token });
    expect(res.status).toBe(200);
    const client = res.body as Record<string, unknown>;
    expect(client).toMatchObject({ client_id: 'app', name: 'Orders app', token_endpoint_auth_method: 'client_secret_post' });
    const newSecret = client.client_secret as string;
    expect(newSecret).toMatch(/^[\w-]{64}$/);
    expect(newSecret).not.toBe(appSecret);
    expect(tenant.clientSecret('app')).toBe(newSecret);

    const old = await secretToken('app', appSecret);
    // Was 401 invalid_client (oidc-provider); a refused secret is §1's access_denied.
    expect(old).toEqual({ status: 401, body: UNAUTHORIZED });
    expect((await secretToken('app', newSecret)).status).toBe(200);

    expect(tenant.managementRequests()).toBe(1);
    expect(tenant.tokenRequests()).toBe(2);
    const lines = readFileSync(recordFile, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as unknown);
    expect(lines).toContainEqual({ kind: 'client_secret', value: newSecret });

    tenant.resetCounters();
    expect(tenant.managementRequests()).toBe(0);
  });

  it('rotate-secret works for client_secret_basic clients too', async () => {
    const res = await api('POST', '/clients/app-basic/rotate-secret');
    expect(res.status).toBe(200);
    const newSecret = (res.body as { client_secret: string }).client_secret;
    const basic = (secret: string) =>
      postToken({ grant_type: 'client_credentials', audience: ORDERS }, { authorization: `Basic ${Buffer.from(`app-basic:${secret}`).toString('base64')}` });
    expect((await basic(basicSecret)).status).toBe(401);
    expect((await basic(newSecret)).status).toBe(200);
  });

  it('with a propagation delay, the new secret is refused too until the delay has passed', async () => {
    tenant.setSecretPropagationMs(300);
    const before = tenant.clientSecret('app') as string;
    const rotatedAt = Date.now();
    const res = await api('POST', '/clients/app/rotate-secret');
    expect(res.status).toBe(200);
    const newSecret = (res.body as { client_secret: string }).client_secret;

    const early = await secretToken('app', newSecret);
    if (Date.now() - rotatedAt < 300) {
      // Was 401 invalid_client; a refused secret is §1's access_denied.
      expect(early).toEqual({ status: 401, body: UNAUTHORIZED });
    }
    expect((await secretToken('app', before)).status).toBe(401);

    await new Promise((resolve) => setTimeout(resolve, Math.max(0, rotatedAt + 350 - Date.now())));
    expect((await secretToken('app', newSecret)).status).toBe(200);
    expect((await secretToken('app', before)).status).toBe(401);
  });

  it('TenantOptions.secretPropagationMs sets the delay from the start; setClientSecret is never delayed', async () => {
    const other = await startLocalAuth0Tenant({
      managementApi: true,
      secretPropagationMs: 10_000,
      clients: [
        { clientId: 'rotator', clientSecret: 'rotator-secret', authMethod: 'client_secret_post' },
        { clientId: 'app', clientSecret: 'app-secret', authMethod: 'client_secret_post' },
      ],
      apis: [{ audience: ORDERS, scopes: ['read:orders'] }],
      clientGrants: { rotator: { management: ['update:client_keys'] }, app: { [ORDERS]: ['read:orders'] } },
    });
    try {
      const post = (params: Record<string, string>) =>
        fetch(`${other.origin}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(params) });
      const mgmt = (await (
        await post({ grant_type: 'client_credentials', client_id: 'rotator', client_secret: 'rotator-secret', audience: other.managementAudience })
      ).json()) as { access_token: string };
      const rotated = await fetch(`${other.origin}/api/v2/clients/app/rotate-secret`, { method: 'POST', headers: { authorization: `Bearer ${mgmt.access_token}` } });
      expect(rotated.status).toBe(200);
      const newSecret = ((await rotated.json()) as { client_secret: string }).client_secret;
      const orders = (secret: string) => post({ grant_type: 'client_credentials', client_id: 'app', client_secret: secret, audience: ORDERS });
      expect((await orders(newSecret)).status).toBe(401);
      expect((await orders('app-secret')).status).toBe(401);

      other.setClientSecret('app', newSecret);
      expect((await orders(newSecret)).status).toBe(200);
    } finally {
      await other.close();
    }
  });

  it('answers a missing or invalid bearer token with 401 and a missing scope with 403, Auth0-shaped', async () => {
    expect(await api('POST', '/clients/app/rotate-secret', { token: null })).toEqual({
      status: 401,
      body: { statusCode: 401, error: 'Unauthorized', message: 'Missing authentication' },
    });
    expect(await api('POST', '/clients/app/rotate-secret', { authorization: 'Basic abc' })).toMatchObject({ status: 401, body: { statusCode: 401, error: 'Unauthorized' } });
    expect(await api('POST', '/clients/app/rotate-secret', { token: 'not-a-jwt' })).toEqual({
      status: 401,
      body: { statusCode: 401, error: 'Unauthorized', message: 'Invalid token' },
    });

    // A genuine token of this tenant, for another audience.
    const ordersToken = ((await secretToken('app', tenant.clientSecret('app') as string)).body as { access_token: string }).access_token;
    expect(await api('POST', '/clients/app/rotate-secret', { token: ordersToken })).toEqual({
      status: 401,
      body: { statusCode: 401, error: 'Unauthorized', message: `Bad audience: ${ORDERS}` },
    });

    // Right claims, foreign signature.
    tenant.setTamper('wrong-key');
    const forged = await managementToken();
    tenant.setTamper(null);
    expect(await api('POST', '/clients/app/rotate-secret', { token: forged })).toEqual({
      status: 401,
      body: { statusCode: 401, error: 'Unauthorized', message: 'Invalid signature received for JSON Web Token validation' },
    });

    const readerToken = await managementToken('reader', readerSecret);
    expect(await api('POST', '/clients/app/rotate-secret', { token: readerToken })).toEqual({
      status: 403,
      body: { statusCode: 403, error: 'Forbidden', message: 'Insufficient scope, expected any of: update:client_keys', errorCode: 'insufficient_scope' },
    });
    // read:clients reads the client, without its secret.
    const read = await api('GET', '/clients/app', { token: readerToken });
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({ client_id: 'app', name: 'Orders app' });
    expect(read.body).not.toHaveProperty('client_secret');
    expect((await api('GET', '/clients/app')).body).toMatchObject({ client_secret: tenant.clientSecret('app') });

    // A token narrowed to a scope the endpoint does not take.
    const narrow = await managementToken('rotator', rotatorSecret, 'read:clients');
    expect((await api('POST', '/clients/app/credentials', { token: narrow, body: {} })).status).toBe(403);
  });

  it('refuses an expired management token', async () => {
    const token = await managementToken();
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.now() + 86_401_000);
      // §13: the recorded expired-token 401 carries `attributes`.
      expect(await api('POST', '/clients/app/rotate-secret', { token })).toEqual({
        status: 401,
        body: {
          statusCode: 401,
          error: 'Unauthorized',
          message: 'Expired token received for JSON Web Token validation',
          attributes: { error: 'Expired token received for JSON Web Token validation' },
        },
      });
    } finally {
      vi.useRealTimers();
    }
  });

  it('answers unknown clients, credentials and routes with 404', async () => {
    expect(await api('POST', '/clients/nobody/rotate-secret')).toEqual({
      status: 404,
      body: { statusCode: 404, error: 'Not Found', message: 'The client does not exist', errorCode: 'inexistent_client' },
    });
    // Was 404; §13: DELETE of a credential is idempotent (a repeated DELETE answered 204).
    expect(await api('DELETE', '/clients/app-jwt/credentials/cred_nope')).toEqual({ status: 204, body: undefined });
    expect(await api('GET', '/clients/app-jwt/credentials/cred_nope')).toEqual({
      status: 404,
      body: { statusCode: 404, error: 'Not Found', message: 'The credential does not exist' },
    });
    expect((await api('GET', '/users')).status).toBe(404);
    expect((await api('PUT', '/clients/app/rotate-secret')).status).toBe(404);
  });

  it('rotate-secret on a private_key_jwt client is a 400', async () => {
    const res = await api('POST', '/clients/app-jwt/rotate-secret');
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ statusCode: 400, error: 'Bad Request' });
  });

  it('rotates private_key_jwt credentials: add, attach both, attach only the new one, delete the old one', async () => {
    const token = await managementToken();
    const call = (method: string, path: string, body?: unknown) => api(method, path, { token, ...(body === undefined ? {} : { body }) });

    // Initial credential from TenantOptions: listed with an id and the key's thumbprint as kid, attached.
    const initial = await call('GET', '/clients/app-jwt/credentials');
    expect(initial.status).toBe(200);
    // §13: GET lists carry `expires_at: null`.
    expect(initial.body).toEqual([
      { id: expect.stringMatching(/^cred_[A-Za-z0-9]{22}$/), name: 'initial', credential_type: 'public_key', kid: initialKey.thumbprint, alg: 'RS256', created_at: expect.any(String), updated_at: expect.any(String), expires_at: null },
    ]);
    const oldId = (initial.body as Array<{ id: string }>)[0]?.id as string;
    expect(tenant.clientCredentials('app-jwt')).toEqual([expect.objectContaining({ id: oldId, attached: true })]);
    expect((await jwtToken(initialKey)).status).toBe(200);
    expect((await jwtToken(initialKey, { withKid: false, aud: tenant.issuer })).status).toBe(200);

    // 1. Create a credential for a new key: listed, not yet accepted.
    const nextKey = await rsaKey();
    const created = await call('POST', '/clients/app-jwt/credentials', { credential_type: 'public_key', name: 'next', pem: nextKey.pem, alg: 'RS256' });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({
      id: expect.stringMatching(/^cred_/),
      name: 'next',
      credential_type: 'public_key',
      kid: nextKey.thumbprint,
      alg: 'RS256',
      created_at: expect.any(String),
      updated_at: expect.any(String),
    });
    const newId = (created.body as { id: string }).id;
    expect(tenant.clientCredentials('app-jwt').map((c) => [c.id, c.attached])).toEqual([
      [oldId, true],
      [newId, false],
    ]);
    const unattached = await jwtToken(nextKey);
    // Was 401 invalid_client; a refused assertion is §7's most likely answer, §1's access_denied.
    expect(unattached).toEqual({ status: 401, body: UNAUTHORIZED });

    // 2. Attach both: assertions signed by either key work, with or without a kid.
    const both = await call('PATCH', '/clients/app-jwt', { client_authentication_methods: { private_key_jwt: { credentials: [{ id: oldId }, { id: newId }] } } });
    expect(both.status).toBe(200);
    expect(both.body).toMatchObject({ client_id: 'app-jwt', client_authentication_methods: { private_key_jwt: { credentials: [{ id: oldId }, { id: newId }] } } });
    for (const key of [initialKey, nextKey]) {
      expect((await jwtToken(key)).status).toBe(200);
      expect((await jwtToken(key, { withKid: false })).status).toBe(200);
    }

    // An attached credential cannot be deleted.
    const inUse = await call('DELETE', `/clients/app-jwt/credentials/${oldId}`);
    expect(inUse.status).toBe(409);
    expect(inUse.body).toMatchObject({ statusCode: 409, error: 'Conflict' });

    // 3. Attach only the new one: the old key is refused at once.
    expect((await call('PATCH', '/clients/app-jwt', { client_authentication_methods: { private_key_jwt: { credentials: [{ id: newId }] } } })).status).toBe(200);
    const old = await jwtToken(initialKey);
    // Was 401 invalid_client; §7's most likely answer is §1's access_denied.
    expect(old).toEqual({ status: 401, body: UNAUTHORIZED });
    expect((await jwtToken(initialKey, { withKid: false })).status).toBe(401);
    expect((await jwtToken(nextKey)).status).toBe(200);
    expect((await jwtToken(nextKey, { withKid: false })).status).toBe(200);

    // 4. Delete the detached old credential.
    const deleted = await call('DELETE', `/clients/app-jwt/credentials/${oldId}`);
    expect(deleted).toEqual({ status: 204, body: undefined });
    expect((await call('GET', '/clients/app-jwt/credentials')).body).toEqual([expect.objectContaining({ id: newId, kid: nextKey.thumbprint })]);
    expect((await call('GET', `/clients/app-jwt/credentials/${newId}`)).body).toMatchObject({ id: newId, name: 'next' });
    expect(tenant.clientCredentials('app-jwt')).toEqual([expect.objectContaining({ id: newId, attached: true })]);
    expect((await jwtToken(nextKey)).status).toBe(200);

    // Auth0 stores at most two credentials per application.
    const third = await rsaKey();
    const second = await call('POST', '/clients/app-jwt/credentials', { credential_type: 'public_key', name: 'second', pem: third.pem });
    expect(second.status).toBe(201);
    const tooMany = await call('POST', '/clients/app-jwt/credentials', { credential_type: 'public_key', name: 'third', pem: (await rsaKey()).pem });
    expect(tooMany.status).toBe(409);
    expect((await call('DELETE', `/clients/app-jwt/credentials/${(second.body as { id: string }).id}`)).status).toBe(204);
  });

  it('validates credential and attachment payloads', async () => {
    const token = await managementToken();
    const call = (method: string, path: string, body?: unknown) => api(method, path, { token, ...(body === undefined ? {} : { body }) });
    const key = await rsaKey();

    const privatePem = await exportPKCS8(key.privateKey);
    for (const body of [
      { credential_type: 'public_key', name: 'x', pem: privatePem },
      { credential_type: 'public_key', name: 'x', pem: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n' },
      { credential_type: 'x509_cert', name: 'x', pem: key.pem },
      { credential_type: 'public_key', name: 'x', pem: key.pem, alg: 'HS256' },
      { credential_type: 'public_key', name: 'x' },
    ]) {
      const res = await call('POST', '/clients/app-jwt/credentials', body);
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(res.body).toMatchObject({ statusCode: 400, error: 'Bad Request', errorCode: 'invalid_body' });
    }

    const [current] = tenant.clientCredentials('app-jwt');
    const attach = (credentials: unknown) => call('PATCH', '/clients/app-jwt', { client_authentication_methods: { private_key_jwt: { credentials } } });
    expect((await attach([])).status).toBe(400);
    expect((await attach([{ id: 'cred_unknown' }])).status).toBe(400);
    expect((await attach([{ id: current?.id }, { id: current?.id }])).status).toBe(400);
    expect((await call('PATCH', '/clients/app-jwt', { name: 'renamed' })).status).toBe(400);
    // Attaching private_key_jwt credentials to a client_secret client is refused.
    expect((await call('PATCH', '/clients/app', { client_authentication_methods: { private_key_jwt: { credentials: [{ id: current?.id }] } } })).status).toBe(400);
    // Nothing changed.
    expect(tenant.clientCredentials('app-jwt')).toEqual([expect.objectContaining({ id: current?.id, attached: true })]);
  });

  it('setClientJwks replaces the accepted keys with bare keys and detaches every credential', async () => {
    const bare = await rsaKey();
    const [current] = tenant.clientCredentials('app-jwt');
    tenant.setClientJwks('app-jwt', { keys: [{ ...(await exportJWK(bare.publicKey)), kid: bare.thumbprint, alg: 'RS256' }] });
    expect(tenant.clientCredentials('app-jwt')).toEqual([expect.objectContaining({ id: current?.id, attached: false })]);
    expect((await jwtToken(bare)).status).toBe(200);

    // No key at all: a refused assertion (not oidc-provider's invalid_client_metadata). Was
    // 401 invalid_client; §7's most likely answer is §1's access_denied.
    tenant.setClientJwks('app-jwt', { keys: [] });
    const none = await jwtToken(bare);
    expect(none).toEqual({ status: 401, body: UNAUTHORIZED });

    // Attaching through the Management API replaces the bare keys again.
    const res = await api('PATCH', '/clients/app-jwt', { body: { client_authentication_methods: { private_key_jwt: { credentials: [{ id: current?.id }] } } } });
    expect(res.status).toBe(200);
    expect((await jwtToken(bare)).status).toBe(401);
  });

  it('also takes the Management API declared in apis by its full audience (fixed port), with a grant keyed by it', async () => {
    const port = await freePort();
    const audience = `http://127.0.0.1:${port}/api/v2/`;
    const other = await startLocalAuth0Tenant({
      port,
      clients: [
        { clientId: 'rotator', clientSecret: 'rotator-secret', authMethod: 'client_secret_post' },
        { clientId: 'app', clientSecret: 'app-secret', authMethod: 'client_secret_post' },
      ],
      apis: [{ audience, scopes: ['update:client_keys'] }],
      clientGrants: { rotator: { [audience]: ['update:client_keys'] } },
    });
    try {
      expect(other.managementAudience).toBe(audience);
      const issued = await fetch(`${other.origin}/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ grant_type: 'client_credentials', client_id: 'rotator', client_secret: 'rotator-secret', audience }),
      });
      expect(issued.status).toBe(200);
      const { access_token: token } = (await issued.json()) as { access_token: string };
      const rotated = await fetch(`${other.origin}/api/v2/clients/app/rotate-secret`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
      expect(rotated.status).toBe(200);
      expect(((await rotated.json()) as { client_secret: string }).client_secret).toBe(other.clientSecret('app'));
    } finally {
      await other.close();
    }
  });

  async function apiWithHeaders(method: string, path: string, token: string, body?: unknown): Promise<Reply & { headers: Headers }> {
    return withHeaders(
      await fetch(`${tenant.origin}/api/v2${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      }),
    );
  }

  function expectRateLimitHeaders(headers: Headers): void {
    const nowSeconds = Math.floor(Date.now() / 1000);
    expect(Number(headers.get('x-ratelimit-limit'))).toBeGreaterThan(0);
    expect(Number(headers.get('x-ratelimit-remaining'))).toBeGreaterThanOrEqual(0);
    expect(Number(headers.get('x-ratelimit-reset'))).toBeGreaterThanOrEqual(nowSeconds - 1);
    expect(Number(headers.get('x-ratelimit-reset'))).toBeLessThanOrEqual(nowSeconds + 2);
  }

  it('§13: rotate-secret answers 200 with the whole client, the new client_secret included, and X-RateLimit-*', async () => {
    const res = await apiWithHeaders('POST', '/clients/app/rotate-secret', await managementToken());
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expectRateLimitHeaders(res.headers);
    expect(res.body).toEqual({
      client_id: 'app',
      name: 'Orders app',
      app_type: 'non_interactive',
      is_first_party: true,
      grant_types: ['client_credentials'],
      jwt_configuration: expect.any(Object),
      token_endpoint_auth_method: 'client_secret_post',
      client_secret: tenant.clientSecret('app'),
    });
  });

  it('§13: a credential is created (201, no expires_at), read (200, expires_at: null), and deleted idempotently (204, 204)', async () => {
    const token = await managementToken();
    const key = await rsaKey();
    const created = await apiWithHeaders('POST', '/clients/app-jwt/credentials', token, { credential_type: 'public_key', name: 'spare', pem: key.pem, alg: 'RS256' });
    expect(created.status).toBe(201);
    expect(created.body).not.toHaveProperty('expires_at');
    expectRateLimitHeaders(created.headers);
    const id = (created.body as { id: string }).id;
    const read = await apiWithHeaders('GET', `/clients/app-jwt/credentials/${id}`, token);
    expect(read).toMatchObject({ status: 200, body: { id, name: 'spare', kid: key.thumbprint, alg: 'RS256', expires_at: null } });
    for (let i = 0; i < 2; i += 1) {
      const deleted = await apiWithHeaders('DELETE', `/clients/app-jwt/credentials/${id}`, token);
      expect([deleted.status, deleted.body]).toEqual([204, undefined]);
      expectRateLimitHeaders(deleted.headers);
    }
    expect((await apiWithHeaders('GET', `/clients/app-jwt/credentials/${id}`, token)).status).toBe(404);
  });

  it('§13: PATCH of client_authentication_methods takes update:clients as well as update:client_keys', async () => {
    const [current] = tenant.clientCredentials('app-jwt');
    const patch = { client_authentication_methods: { private_key_jwt: { credentials: [{ id: current?.id }] } } };
    for (const scope of ['update:clients', 'update:client_keys']) {
      const res = await api('PATCH', '/clients/app-jwt', { token: await managementToken('rotator', rotatorSecret, scope), body: patch });
      expect(res.status, scope).toBe(200);
    }
    const narrow = await api('PATCH', '/clients/app-jwt', { token: await managementToken('rotator', rotatorSecret, 'read:clients'), body: patch });
    expect(narrow).toEqual({
      status: 403,
      body: { statusCode: 403, error: 'Forbidden', message: 'Insufficient scope, expected any of: update:clients,update:client_keys', errorCode: 'insufficient_scope' },
    });
  });

  it('§13: in the documented propagation window ("old-or-new"), either secret may be accepted per request; afterwards only the new one', async () => {
    const before = tenant.clientSecret('app') as string;
    tenant.setSecretPropagationMs(60_000);
    tenant.setSecretPropagationMode('old-or-new');
    const rotated = await api('POST', '/clients/app/rotate-secret');
    expect(rotated.status).toBe(200);
    const newSecret = (rotated.body as { client_secret: string }).client_secret;

    const outcomes = { old: new Set<number>(), new: new Set<number>() };
    for (let i = 0; i < 20; i += 1) {
      for (const [which, secret] of [['old', before], ['new', newSecret]] as const) {
        const res = await secretToken('app', secret);
        if (res.status !== 200) expect(res).toEqual({ status: 401, body: UNAUTHORIZED });
        outcomes[which].add(res.status);
      }
    }
    // 20 tries each: both answers show up for both secrets (a miss has odds of 2^-19).
    expect([...outcomes.old].sort()).toEqual([200, 401]);
    expect([...outcomes.new].sort()).toEqual([200, 401]);

    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.now() + 61_000);
      for (let i = 0; i < 5; i += 1) {
        expect((await secretToken('app', before)).status).toBe(401);
        expect((await secretToken('app', newSecret)).status).toBe(200);
      }
    } finally {
      vi.useRealTimers();
      // End the window (it runs on the real clock) so later tests see a settled secret.
      tenant.setClientSecret('app', newSecret);
    }
  });

  it('§13, §8: past its limit the Management API answers 429 {statusCode,error,message,errorCode} with X-RateLimit-*', async () => {
    const token = await managementToken();
    tenant.setRateLimit({ limit: 1, perSecond: 0.001 }, 'management');
    try {
      const first = await apiWithHeaders('GET', '/clients/app', token);
      expect(first.status).toBe(200);
      expect([first.headers.get('x-ratelimit-limit'), first.headers.get('x-ratelimit-remaining')]).toEqual(['1', '0']);
      const limited = await apiWithHeaders('GET', '/clients/app', token);
      expect(limited.status).toBe(429);
      expect(limited.body).toEqual({ statusCode: 429, error: 'Too Many Requests', message: 'Global limit has been reached', errorCode: 'too_many_requests' });
      expect(limited.headers.get('x-ratelimit-limit')).toBe('1');
      expect(limited.headers.get('x-ratelimit-remaining')).toBe('0');
      expect(Number(limited.headers.get('x-ratelimit-reset')) - Date.now() / 1000).toBeGreaterThan(990);
      // The token endpoint has its own limit.
      expect((await secretToken('app', tenant.clientSecret('app') as string)).status).toBe(200);
    } finally {
      tenant.setRateLimit({ limit: 1000, perSecond: 1000 }, 'management');
    }
  });

  it('rejects invalid options at start', async () => {
    const base = {
      clients: [{ clientId: 'c', clientSecret: 's', authMethod: 'client_secret_post' as const }],
      apis: [],
    };
    // The management key needs the Management API.
    await expect(startLocalAuth0Tenant({ ...base, clientGrants: { c: { management: ['read:clients'] } } })).rejects.toThrow(/unknown API/);
    await expect(startLocalAuth0Tenant({ ...base, managementApi: true, clientGrants: { c: { management: ['delete:everything'] } } })).rejects.toThrow(
      /scopes the API does not define/,
    );
    await expect(startLocalAuth0Tenant({ ...base, clientGrants: {}, secretPropagationMs: -1 })).rejects.toThrow(/secretPropagationMs/);
    await expect(
      startLocalAuth0Tenant({ ...base, clients: [{ clientId: 'j', authMethod: 'private_key_jwt', credentials: [{ name: 'bad', pem: 'nope' }] }], clientGrants: {} }),
    ).rejects.toThrow(/client j: credential bad/);
  });
});
