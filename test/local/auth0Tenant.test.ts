import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { SignJWT, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, errors, exportJWK, generateKeyPair, jwtVerify } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import { startLocalAuth0Tenant } from '../../local/auth0Tenant.js';
import type { LocalAuth0Tenant } from '../../local/auth0Tenant.js';

const ORDERS = 'https://orders.example.com';
const REPORTS = 'https://reports.example.com';
const BILLING = 'https://billing.example.com';

interface TokenResponse {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

interface KeyPair {
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function rsaKeyPair(): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  return { privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid: randomUUID(), alg: 'RS256', use: 'sig' } };
}

describe('local Auth0 tenant (oidc-provider)', () => {
  let tenant: LocalAuth0Tenant;
  let recordDir: string;
  let recordFile: string;
  let clientKey: KeyPair;
  const postSecret = randomBytes(24).toString('base64url');
  const basicSecret = randomBytes(24).toString('base64url');

  beforeAll(async () => {
    recordDir = mkdtempSync(join(tmpdir(), 'auth0-tenant-test-'));
    recordFile = join(recordDir, 'sensitive.jsonl');
    clientKey = await rsaKeyPair();
    tenant = await startLocalAuth0Tenant({
      clients: [
        { clientId: 'post-client', clientSecret: postSecret, authMethod: 'client_secret_post' },
        { clientId: 'basic-client', clientSecret: basicSecret, authMethod: 'client_secret_basic' },
        { clientId: 'jwt-client', authMethod: 'private_key_jwt', jwks: { keys: [clientKey.publicJwk] } },
      ],
      apis: [
        { audience: ORDERS, scopes: ['read:orders', 'write:orders', 'admin:orders'] },
        { audience: REPORTS, scopes: ['read:reports'], tokenFormat: 'opaque', tokenTtlSeconds: 600 },
        { audience: BILLING, scopes: ['read:billing'] },
      ],
      clientGrants: {
        'post-client': { [ORDERS]: ['read:orders', 'write:orders'], [REPORTS]: ['read:reports'] },
        'basic-client': { [ORDERS]: ['read:orders'] },
        'jwt-client': { [ORDERS]: ['read:orders'] },
      },
      recordFile,
    });
  });

  afterAll(async () => {
    await tenant?.close();
    rmSync(recordDir, { recursive: true, force: true });
  });

  const tokenUrl = (): string => `${tenant.origin}/oauth/token`;

  async function postToken(
    params: Record<string, string>,
    options: { encoding?: 'json' | 'form'; headers?: Record<string, string>; signal?: AbortSignal } = {},
  ): Promise<TokenResponse> {
    const form = options.encoding === 'form';
    const res = await fetch(tokenUrl(), {
      method: 'POST',
      headers: { 'content-type': form ? 'application/x-www-form-urlencoded' : 'application/json', ...options.headers },
      body: form ? new URLSearchParams(params).toString() : JSON.stringify(params),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  }

  const postClient = (extra: Record<string, string> = {}): Record<string, string> => ({
    grant_type: 'client_credentials',
    client_id: 'post-client',
    client_secret: postSecret,
    audience: ORDERS,
    ...extra,
  });

  function verify(token: string, audience = ORDERS) {
    const jwks = createRemoteJWKSet(new URL(`${tenant.issuer}.well-known/jwks.json`));
    return jwtVerify(token, jwks, { issuer: tenant.issuer, audience });
  }

  function clientAssertion(clientId: string, key: CryptoKey, kid: string | undefined, aud: string): Promise<string> {
    return new SignJWT({})
      .setProtectedHeader({ alg: 'RS256', ...(kid ? { kid } : {}) })
      .setIssuer(clientId)
      .setSubject(clientId)
      .setAudience(aud)
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime('2m')
      .sign(key);
  }

  async function privateKeyJwtRequest(key: KeyPair, aud = tokenUrl()): Promise<TokenResponse> {
    return postToken({
      grant_type: 'client_credentials',
      client_id: 'jwt-client',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await clientAssertion('jwt-client', key.privateKey, key.publicJwk.kid, aud),
      audience: ORDERS,
    });
  }

  it('listens on loopback with an Auth0-style issuer and publishes discovery and JWKS', async () => {
    expect(tenant.origin).toBe(`http://127.0.0.1:${tenant.port}`);
    expect(tenant.issuer).toBe(`${tenant.origin}/`);
    const discovery = (await (await fetch(`${tenant.issuer}.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(discovery).toMatchObject({
      issuer: tenant.issuer,
      token_endpoint: tokenUrl(),
      jwks_uri: `${tenant.origin}/.well-known/jwks.json`,
    });
    const jwks = (await (await fetch(`${tenant.origin}/.well-known/jwks.json`)).json()) as { keys: JWK[] };
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kty: 'RSA', alg: 'RS256', use: 'sig' });
    expect(jwks.keys[0]).not.toHaveProperty('d');
  });

  it('issues an Auth0-shaped JWT for a JSON body with audience', async () => {
    tenant.resetCounters();
    const res = await postToken(postClient({ scope: 'read:orders' }));

    expect(res.status).toBe(200);
    expect(Object.keys(res.body)).toEqual(['access_token', 'expires_in', 'scope', 'token_type']);
    expect(res.body).toMatchObject({ expires_in: 86400, scope: 'read:orders', token_type: 'Bearer' });

    const token = res.body.access_token as string;
    const { payload, protectedHeader } = await verify(token);
    expect(protectedHeader).toMatchObject({ alg: 'RS256', typ: 'JWT' });
    expect(protectedHeader.kid).toEqual(expect.any(String));
    expect(payload).toMatchObject({
      iss: tenant.issuer,
      aud: ORDERS,
      sub: 'post-client@clients',
      azp: 'post-client',
      scope: 'read:orders',
      gty: 'client-credentials',
    });
    expect(payload).not.toHaveProperty('client_id');
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(86400);

    expect(tenant.issued()).toEqual([
      { clientId: 'post-client', audience: ORDERS, scope: 'read:orders', accessToken: token, expiresIn: 86400 },
    ]);
  });

  it('accepts a form body and translates audience the same way', async () => {
    const res = await postToken(postClient({ scope: 'write:orders' }), { encoding: 'form' });
    expect(res.status).toBe(200);
    const { payload } = await verify(res.body.access_token as string);
    expect(payload).toMatchObject({ aud: ORDERS, scope: 'write:orders' });
  });

  it('authenticates client_secret_basic', async () => {
    const basic = Buffer.from(`basic-client:${basicSecret}`).toString('base64');
    const res = await postToken(
      { grant_type: 'client_credentials', audience: ORDERS },
      { encoding: 'form', headers: { authorization: `Basic ${basic}` } },
    );
    expect(res.status).toBe(200);
    const { payload } = await verify(res.body.access_token as string);
    expect(payload).toMatchObject({ sub: 'basic-client@clients', scope: 'read:orders' });
  });

  it('authenticates private_key_jwt with the token endpoint or the issuer as assertion audience', async () => {
    for (const aud of [tokenUrl(), tenant.issuer]) {
      const res = await privateKeyJwtRequest(clientKey, aud);
      expect(res.status, aud).toBe(200);
      const { payload } = await verify(res.body.access_token as string);
      expect(payload).toMatchObject({ sub: 'jwt-client@clients', azp: 'jwt-client' });
    }
  });

  it('rejects a client assertion signed with an unregistered key', async () => {
    const res = await privateKeyJwtRequest(await rsaKeyPair());
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('invalid_client');
  });

  it('rejects a replayed client assertion (same jti)', async () => {
    const params = {
      grant_type: 'client_credentials',
      client_id: 'jwt-client',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await clientAssertion('jwt-client', clientKey.privateKey, clientKey.publicJwk.kid, tokenUrl()),
      audience: ORDERS,
    };
    expect((await postToken(params)).status).toBe(200);
    const replay = await postToken(params);
    expect(replay.status).toBe(401);
    expect(replay.body.error).toBe('invalid_client');
  });

  it('replaces private_key_jwt keys, and accepts two at once for an overlapping rotation', async () => {
    const next = await rsaKeyPair();
    try {
      tenant.setClientJwks('jwt-client', { keys: [clientKey.publicJwk, next.publicJwk] });
      expect((await privateKeyJwtRequest(clientKey)).status).toBe(200);
      expect((await privateKeyJwtRequest(next)).status).toBe(200);

      tenant.setClientJwks('jwt-client', { keys: [next.publicJwk] });
      expect((await privateKeyJwtRequest(clientKey)).status).toBe(401);
      expect((await privateKeyJwtRequest(next)).status).toBe(200);
    } finally {
      tenant.setClientJwks('jwt-client', { keys: [clientKey.publicJwk] });
    }
  });

  it('issues opaque tokens for an API configured so, with its TTL', async () => {
    const res = await postToken(postClient({ audience: REPORTS }));
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ expires_in: 600, scope: 'read:reports', token_type: 'Bearer' });
    const token = res.body.access_token as string;
    expect(token).toMatch(/^[\w-]{20,}$/);
    expect(() => decodeJwt(token)).toThrow();
  });

  it('answers a wrong secret with 401 invalid_client', async () => {
    for (const params of [postClient({ client_secret: 'not-the-secret' }), postClient({ client_id: 'no-such-client' })]) {
      const res = await postToken(params);
      expect(res.status).toBe(401);
      expect(res.body).toEqual({ error: 'invalid_client', error_description: expect.any(String) });
    }
  });

  it('answers an audience without a client grant with 403 access_denied', async () => {
    const res = await postToken(postClient({ audience: BILLING }));
    expect(res.status).toBe(403);
    expect(res.body).toEqual({
      error: 'access_denied',
      error_description: `Client is not authorized to access "${BILLING}". You need to create a "client-grant" associated to this API.`,
    });
  });

  it('answers scopes outside the grant with 403 access_denied', async () => {
    const res = await postToken(postClient({ scope: 'read:orders admin:orders' }));
    expect(res.status).toBe(403);
    expect(res.body).toEqual({ error: 'access_denied', error_description: 'Client has not been granted scopes: admin:orders' });
  });

  it('grants every scope of the client grant when none is requested', async () => {
    const res = await postToken(postClient());
    expect(res.status).toBe(200);
    expect(res.body.scope).toBe('read:orders write:orders');
    const { payload } = await verify(res.body.access_token as string);
    expect(payload.scope).toBe('read:orders write:orders');
  });

  it('answers a missing or unknown audience with 403 access_denied', async () => {
    const { audience: _omitted, ...withoutAudience } = postClient();
    const missing = await postToken(withoutAudience);
    expect(missing.status).toBe(403);
    expect(missing.body.error).toBe('access_denied');

    const unknown = await postToken(postClient({ audience: 'https://unknown.example.com' }));
    expect(unknown.status).toBe(403);
    expect(unknown.body).toEqual({ error: 'access_denied', error_description: 'Service not found: https://unknown.example.com' });
  });

  it('answers malformed requests with OAuth-shaped errors', async () => {
    const badJson = await fetch(tokenUrl(), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"grant_type":' });
    expect(badJson.status).toBe(400);
    expect(await badJson.json()).toMatchObject({ error: 'invalid_request' });

    const text = await fetch(tokenUrl(), { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' });
    expect(text.status).toBe(400);
    expect(await text.json()).toMatchObject({ error: 'invalid_request' });

    const unsupported = await postToken(postClient({ grant_type: 'password' }));
    expect(unsupported.status).toBe(400);
    expect(unsupported.body.error).toEqual(expect.any(String));
  });

  it('counts every token request, failures included, until reset', async () => {
    tenant.resetCounters();
    await postToken(postClient());
    await postToken(postClient({ client_secret: 'wrong' }));
    await postToken(postClient({ audience: BILLING }));
    await fetch(`${tenant.origin}/.well-known/jwks.json`);
    expect(tenant.tokenRequests()).toBe(3);
    expect(tenant.issued()).toHaveLength(1);

    tenant.resetCounters();
    expect(tenant.tokenRequests()).toBe(0);
    expect(tenant.issued()).toEqual([]);
  });

  it('wrong-key tamper mode issues tokens whose signature does not verify', async () => {
    const genuine = (await postToken(postClient())).body.access_token as string;
    tenant.setTamper('wrong-key');
    try {
      const res = await postToken(postClient());
      expect(res.status).toBe(200);
      const token = res.body.access_token as string;
      expect(decodeProtectedHeader(token).kid).toBe(decodeProtectedHeader(genuine).kid);
      expect(decodeJwt(token)).toMatchObject({ aud: ORDERS, iss: tenant.issuer });
      await expect(verify(token)).rejects.toBeInstanceOf(errors.JWSSignatureVerificationFailed);
      expect(tenant.issued().at(-1)?.accessToken).toBe(token);
    } finally {
      tenant.setTamper(null);
    }
    await expect(verify((await postToken(postClient())).body.access_token as string)).resolves.toBeTruthy();
  });

  it('wrong-aud tamper mode issues validly signed tokens for another audience', async () => {
    tenant.setTamper('wrong-aud');
    try {
      const token = (await postToken(postClient())).body.access_token as string;
      expect(decodeJwt(token).aud).toBe('https://not-the-requested-audience');
      const failure = await verify(token).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(failure).toBeInstanceOf(errors.JWTClaimValidationFailed);
      expect((failure as InstanceType<typeof errors.JWTClaimValidationFailed>).claim).toBe('aud');
    } finally {
      tenant.setTamper(null);
    }
  });

  it('answers an injected fault instead of issuing, and still counts it', async () => {
    tenant.resetCounters();
    tenant.setFault({ status: 429, body: { error: 'too_many_requests', error_description: 'Global limit has been reached' }, headers: { 'retry-after': '2' } });
    try {
      const res = await postToken(postClient());
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toBe('2');
      expect(res.body).toEqual({ error: 'too_many_requests', error_description: 'Global limit has been reached' });

      tenant.setFault({ status: 503, body: '<html>upstream down</html>', headers: { 'content-type': 'text/html' } });
      const html = await fetch(tokenUrl(), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(postClient()) });
      expect(html.status).toBe(503);
      expect(html.headers.get('content-type')).toBe('text/html');
      expect(await html.text()).toBe('<html>upstream down</html>');

      tenant.setFault('drop');
      await expect(postToken(postClient())).rejects.toThrow();
    } finally {
      tenant.setFault(null);
    }
    expect(tenant.tokenRequests()).toBe(3);
    expect(tenant.issued()).toEqual([]);
    expect((await postToken(postClient())).status).toBe(200);
  });

  it('hang fault never answers; the client gives up by aborting', async () => {
    tenant.resetCounters();
    tenant.setFault('hang');
    try {
      const started = Date.now();
      const failure = await postToken(postClient(), { signal: AbortSignal.timeout(300) }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect((failure as Error).name).toBe('TimeoutError');
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(tenant.tokenRequests()).toBe(1);
    } finally {
      tenant.setFault(null);
    }
    expect((await postToken(postClient())).status).toBe(200);
  });

  it('setClientSecret makes the old secret fail at once', async () => {
    const rotated = randomBytes(24).toString('base64url');
    tenant.setClientSecret('post-client', rotated);
    try {
      const old = await postToken(postClient());
      expect(old.status).toBe(401);
      expect(old.body.error).toBe('invalid_client');
      expect((await postToken(postClient({ client_secret: rotated }))).status).toBe(200);
    } finally {
      tenant.setClientSecret('post-client', postSecret);
    }
    const lines = readFileSync(recordFile, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as unknown);
    expect(lines).toContainEqual({ kind: 'client_secret', value: rotated });
  });

  it('records every known secret and every issued token in recordFile', () => {
    const lines = readFileSync(recordFile, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { kind: string; value: string });
    expect(lines).toContainEqual({ kind: 'client_secret', value: postSecret });
    expect(lines).toContainEqual({ kind: 'client_secret', value: basicSecret });
    const tokens = new Set(lines.filter((line) => line.kind === 'access_token').map((line) => line.value));
    for (const issued of tenant.issued()) expect(tokens.has(issued.accessToken)).toBe(true);
    expect(lines.every((line) => line.kind === 'client_secret' || line.kind === 'access_token')).toBe(true);
  });

  it('close() resolves promptly while a request hangs', async () => {
    const other = await startLocalAuth0Tenant({
      clients: [{ clientId: 'c', clientSecret: 's', authMethod: 'client_secret_post' }],
      apis: [{ audience: ORDERS, scopes: ['read:orders'] }],
      clientGrants: { c: { [ORDERS]: ['read:orders'] } },
    });
    other.setFault('hang');
    const hung = fetch(`${other.origin}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }).then(
      () => 'answered',
      () => 'failed',
    );
    while (other.tokenRequests() === 0) await new Promise((resolve) => setTimeout(resolve, 10));

    const started = Date.now();
    await other.close();
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(await hung).toBe('failed');
    await expect(fetch(`${other.origin}/.well-known/jwks.json`)).rejects.toThrow();
  });
});
