/**
 * Contract tests of the local Auth0 tenant: every answer pinned here is the one
 * docs/auth0-wire-behaviour.md records, cited by section (§n). Where the doc says Auth0's answer is
 * unknown, `describe('plausible answers')` pins each answer the tenant's switches can give.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import { SignJWT, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, errors, exportJWK, generateKeyPair, jwtVerify } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import { auth0ServerError, startLocalAuth0Tenant } from '../../local/auth0Tenant.js';
import type { LocalAuth0Tenant } from '../../local/auth0Tenant.js';

const ORDERS = 'https://orders.example.com';
const REPORTS = 'https://reports.example.com';
const BILLING = 'https://billing.example.com';
/** granted with zero scopes (§4, §12) */
const INVENTORY = 'https://inventory.example.com';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** §1, §2 */
const UNAUTHORIZED = { error: 'access_denied', error_description: 'Unauthorized' };
const JSON_TYPE = 'application/json; charset=utf-8';
/** §6: Auth0's answer when the client_credentials grant type is disabled on the application. */
const GRANT_TYPE_NOT_ALLOWED = {
  error: 'unauthorized_client',
  error_description: "Grant type 'client_credentials' not allowed for the client.",
  error_uri: 'https://auth0.com/docs/clients/client-grant-types',
};

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

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
  const noGrantTypeSecret = randomBytes(24).toString('base64url');
  const quotaSecret = randomBytes(24).toString('base64url');

  beforeAll(async () => {
    recordDir = mkdtempSync(join(tmpdir(), 'auth0-tenant-test-'));
    recordFile = join(recordDir, 'sensitive.jsonl');
    clientKey = await rsaKeyPair();
    tenant = await startLocalAuth0Tenant({
      clients: [
        { clientId: 'post-client', clientSecret: postSecret, authMethod: 'client_secret_post' },
        { clientId: 'basic-client', clientSecret: basicSecret, authMethod: 'client_secret_basic' },
        { clientId: 'jwt-client', authMethod: 'private_key_jwt', jwks: { keys: [clientKey.publicJwk] } },
        { clientId: 'no-cc-client', clientSecret: noGrantTypeSecret, authMethod: 'client_secret_post', grantTypes: ['authorization_code'] },
        { clientId: 'quota-client', clientSecret: quotaSecret, authMethod: 'client_secret_post' },
      ],
      apis: [
        { audience: ORDERS, scopes: ['read:orders', 'write:orders', 'admin:orders'] },
        { audience: REPORTS, scopes: ['read:reports'], tokenFormat: 'opaque', tokenTtlSeconds: 600 },
        { audience: BILLING, scopes: ['read:billing'] },
        { audience: INVENTORY, scopes: ['read:inventory'] },
      ],
      clientGrants: {
        'post-client': { [ORDERS]: ['read:orders', 'write:orders'], [REPORTS]: ['read:reports'], [INVENTORY]: [] },
        'basic-client': { [ORDERS]: ['read:orders'] },
        'jwt-client': { [ORDERS]: ['read:orders'] },
        'no-cc-client': { [ORDERS]: ['read:orders'] },
        'quota-client': { [ORDERS]: ['read:orders', 'write:orders'] },
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

  /** POST /oauth/token over node:http: the bytes and headers exactly as sent (no transparent gunzip). */
  function rawPost(params: Record<string, string>, headers: Record<string, string> = {}): Promise<RawResponse> {
    const body = Buffer.from(JSON.stringify(params));
    return new Promise((resolve, reject) => {
      const req = httpRequest(
        tokenUrl(),
        { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': String(body.length), ...headers } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  /** §8: the tenant's `X-RateLimit-*`, present and in epoch seconds */
  function expectRateLimitHeaders(headers: Headers): void {
    const nowSeconds = Math.floor(Date.now() / 1000);
    expect(Number(headers.get('x-ratelimit-limit'))).toBeGreaterThan(0);
    expect(Number(headers.get('x-ratelimit-remaining'))).toBeGreaterThanOrEqual(0);
    const reset = Number(headers.get('x-ratelimit-reset'));
    expect(reset).toBeGreaterThanOrEqual(nowSeconds - 1);
    expect(reset).toBeLessThanOrEqual(nowSeconds + 2);
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

  /** a client assertion for jwt-client with every claim adjustable (§7) */
  function assertionWith(
    key: CryptoKey,
    options: { kid?: string; aud?: string; iat?: number; exp?: number; padding?: string } = {},
  ): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT(options.padding === undefined ? {} : { padding: options.padding })
      .setProtectedHeader({ alg: 'RS256', kid: options.kid ?? clientKey.publicJwk.kid ?? '' })
      .setIssuer('jwt-client')
      .setSubject('jwt-client')
      .setAudience(options.aud ?? tenant.issuer)
      .setJti(randomUUID())
      .setIssuedAt(options.iat ?? now)
      .setExpirationTime(options.exp ?? now + 60)
      .sign(key);
  }

  const assertionRequest = (assertion: string): Promise<TokenResponse> =>
    postToken({ grant_type: 'client_credentials', client_id: 'jwt-client', client_assertion_type: ASSERTION_TYPE, client_assertion: assertion, audience: ORDERS });

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

  it('rejects a client assertion signed with an unregistered key (§7)', async () => {
    const res = await privateKeyJwtRequest(await rsaKeyPair());
    // Was oidc-provider's 401 invalid_client; §7's most likely answer is §1's access_denied.
    expect(res.status).toBe(401);
    expect(res.body).toEqual(UNAUTHORIZED);
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
    // Was oidc-provider's 401 invalid_client; §7's most likely answer is §1's access_denied.
    expect(replay.status).toBe(401);
    expect(replay.body).toEqual(UNAUTHORIZED);
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

  it('answers a wrong secret or an unknown client with 401 access_denied "Unauthorized" (§1, §2)', async () => {
    // Was oidc-provider's 401 invalid_client; Auth0 answers access_denied (§1, §2).
    for (const params of [postClient({ client_secret: 'not-the-secret' }), postClient({ client_id: 'no-such-client' })]) {
      const res = await postToken(params);
      expect(res.status).toBe(401);
      expect(res.body).toEqual(UNAUTHORIZED);
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

  it('answers a missing or unknown audience with 403 access_denied (§10, §5)', async () => {
    const { audience: _omitted, ...withoutAudience } = postClient();
    const missing = await postToken(withoutAudience);
    expect(missing.status).toBe(403);
    expect(missing.body.error).toBe('access_denied');

    // Was "Service not found: …", the /authorize wording; §5 records the client_credentials one.
    const unknown = await postToken(postClient({ audience: 'https://unknown.example.com' }));
    expect(unknown.status).toBe(403);
    expect(unknown.body).toEqual({ error: 'access_denied', error_description: 'Service not enabled within domain: https://unknown.example.com' });
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
      // Was 401 invalid_client; a refused secret is §1's access_denied.
      expect(old.status).toBe(401);
      expect(old.body).toEqual(UNAUTHORIZED);
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

  describe('Auth0 answers (docs/auth0-wire-behaviour.md)', () => {
    it('§1: a wrong secret, post or basic, is 401 access_denied "Unauthorized", JSON, without WWW-Authenticate', async () => {
      const post = await postToken(postClient({ client_secret: 'not-the-secret' }));
      expect(post.status).toBe(401);
      expect(post.body).toEqual(UNAUTHORIZED);
      expect(post.headers.get('content-type')).toBe(JSON_TYPE);

      const basic = await postToken(
        { grant_type: 'client_credentials', audience: ORDERS },
        { encoding: 'form', headers: { authorization: `Basic ${Buffer.from('basic-client:not-the-secret').toString('base64')}` } },
      );
      expect(basic.status).toBe(401);
      expect(basic.body).toEqual(UNAUTHORIZED);
      expect(basic.headers.get('www-authenticate')).toBeNull();
      expectRateLimitHeaders(basic.headers);
    });

    it('§1: a secret sent for a private_key_jwt client, or a credential of the wrong kind, is the same 401', async () => {
      const res = await postToken({ grant_type: 'client_credentials', client_id: 'jwt-client', client_secret: 'anything', audience: ORDERS });
      expect(res.status).toBe(401);
      expect(res.body).toEqual(UNAUTHORIZED);
    });

    it('§2: an unknown client_id, by post, basic or client assertion, is 401 access_denied "Unauthorized"', async () => {
      const post = await postToken(postClient({ client_id: 'no-such-client' }));
      expect([post.status, post.body]).toEqual([401, UNAUTHORIZED]);
      const basic = await postToken(
        { grant_type: 'client_credentials', audience: ORDERS },
        { encoding: 'form', headers: { authorization: `Basic ${Buffer.from('no-such-client:secret').toString('base64')}` } },
      );
      expect([basic.status, basic.body]).toEqual([401, UNAUTHORIZED]);
      const assertion = await new SignJWT({})
        .setProtectedHeader({ alg: 'RS256' })
        .setIssuer('no-such-client')
        .setSubject('no-such-client')
        .setAudience(tenant.issuer)
        .setJti(randomUUID())
        .setIssuedAt()
        .setExpirationTime('1m')
        .sign(clientKey.privateKey);
      const jwt = await postToken({ grant_type: 'client_credentials', client_id: 'no-such-client', client_assertion_type: ASSERTION_TYPE, client_assertion: assertion, audience: ORDERS });
      expect([jwt.status, jwt.body]).toEqual([401, UNAUTHORIZED]);
    });

    it('§3: an audience without a client grant is 403 access_denied with the current wording, and issues nothing', async () => {
      tenant.resetCounters();
      const res = await postToken(postClient({ audience: BILLING }));
      expect(res.status).toBe(403);
      expect(res.body).toEqual({
        error: 'access_denied',
        error_description: `Client is not authorized to access "${BILLING}". You need to create a "client-grant" associated to this API.`,
      });
      expect(res.headers.get('content-type')).toBe(JSON_TYPE);
      expectRateLimitHeaders(res.headers);
      expect(tenant.issued()).toEqual([]);
    });

    it('§4: scopes outside the grant are refused (403), not dropped; several are joined with ", "', async () => {
      tenant.resetCounters();
      const one = await postToken(postClient({ scope: 'read:orders admin:orders' }));
      expect(one.status).toBe(403);
      expect(one.body).toEqual({ error: 'access_denied', error_description: 'Client has not been granted scopes: admin:orders' });
      // A scope the API does not even define is refused the same way.
      const two = await postToken(postClient({ scope: 'admin:orders read:orders delete:everything' }));
      expect(two.status).toBe(403);
      expect(two.body).toEqual({ error: 'access_denied', error_description: 'Client has not been granted scopes: admin:orders, delete:everything' });
      expect(tenant.issued()).toEqual([]);
    });

    it('§4, §12: a grant with zero scopes gives a token without scopes, and the answer has no `scope`', async () => {
      const res = await postToken(postClient({ audience: INVENTORY }));
      expect(res.status).toBe(200);
      expect(Object.keys(res.body)).toEqual(['access_token', 'expires_in', 'token_type']);
      expect(res.body).toMatchObject({ expires_in: 86400, token_type: 'Bearer' });
      const { payload } = await verify(res.body.access_token as string, INVENTORY);
      expect(payload).not.toHaveProperty('scope');
      expect(tenant.issued().at(-1)).toMatchObject({ audience: INVENTORY, scope: '' });
    });

    it('§5: an unknown audience is 403 access_denied "Service not enabled within domain: …"', async () => {
      const res = await postToken(postClient({ audience: 'https://nope.example.com' }));
      expect(res.status).toBe(403);
      expect(res.body).toEqual({ error: 'access_denied', error_description: 'Service not enabled within domain: https://nope.example.com' });
      expectRateLimitHeaders(res.headers);
    });

    it('§6: client_credentials disabled on the application is 403 unauthorized_client with error_uri, after the secret is checked', async () => {
      const params = { grant_type: 'client_credentials', client_id: 'no-cc-client', client_secret: noGrantTypeSecret, audience: ORDERS };
      const res = await postToken(params);
      expect(res.status).toBe(403);
      expect(res.body).toEqual(GRANT_TYPE_NOT_ALLOWED);
      expect(res.headers.get('content-type')).toBe(JSON_TYPE);
      expectRateLimitHeaders(res.headers);
      // Default order: the credential first (a wrong secret is still §1's 401).
      expect((await postToken({ ...params, client_secret: 'wrong' })).body).toEqual(UNAUTHORIZED);
      // Without audience too: the grant type is checked before §10.
      const { audience: _omitted, ...withoutAudience } = params;
      expect((await postToken(withoutAudience)).body.error).toBe('unauthorized_client');

      tenant.setClientGrantTypes('no-cc-client', ['authorization_code', 'client_credentials']);
      try {
        expect((await postToken(params)).status).toBe(200);
      } finally {
        tenant.setClientGrantTypes('no-cc-client', ['authorization_code']);
      }
      expect((await postToken(params)).status).toBe(403);
    });

    it('§7: a refused client assertion (bad signature, unknown kid, reused jti, expired, wrong aud, too long-lived, too large) is 401 access_denied', async () => {
      const now = Math.floor(Date.now() / 1000);
      const reused = await assertionWith(clientKey.privateKey);
      expect((await assertionRequest(reused)).status).toBe(200);
      const cases: Record<string, string> = {
        'bad signature': await assertionWith((await rsaKeyPair()).privateKey),
        'unknown kid': await assertionWith(clientKey.privateKey, { kid: 'no-such-kid' }),
        'reused jti': reused,
        expired: await assertionWith(clientKey.privateKey, { iat: now - 120, exp: now - 60 }),
        'wrong aud': await assertionWith(clientKey.privateKey, { aud: 'https://elsewhere.example.com/' }),
        'lifetime over 5 minutes': await assertionWith(clientKey.privateKey, { exp: now + 600 }),
        'over 2048 bytes': await assertionWith(clientKey.privateKey, { padding: 'x'.repeat(2048) }),
      };
      for (const [name, assertion] of Object.entries(cases)) {
        const res = await assertionRequest(assertion);
        expect(res.status, name).toBe(401);
        expect(res.body, name).toEqual(UNAUTHORIZED);
        expect(res.headers.get('content-type'), name).toBe(JSON_TYPE);
      }
      // Within the documented limits (10 s skew, 5 minutes, the issuer as aud) it is accepted.
      expect((await assertionRequest(await assertionWith(clientKey.privateKey, { iat: now + 5, exp: now + 290 }))).status).toBe(200);
    });

    it('§8: every answer carries X-RateLimit-Limit/-Remaining/-Reset (epoch seconds), 200s included', async () => {
      const ok = await postToken(postClient());
      expect(ok.status).toBe(200);
      expectRateLimitHeaders(ok.headers);
      const refused = await postToken(postClient({ client_secret: 'wrong' }));
      expectRateLimitHeaders(refused.headers);
      const malformed = await fetch(tokenUrl(), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' });
      expect(malformed.status).toBe(400);
      expectRateLimitHeaders(malformed.headers);
      // Remaining counts down with every request, refused ones included (a slow refill, so none comes back meanwhile).
      tenant.setRateLimit({ limit: 100, perSecond: 0.001 });
      try {
        const remaining: Array<string | null> = [];
        for (const params of [postClient({ client_secret: 'wrong' }), postClient({ audience: BILLING }), postClient()]) {
          remaining.push((await postToken(params)).headers.get('x-ratelimit-remaining'));
        }
        expect(remaining).toEqual(['99', '98', '97']);
      } finally {
        tenant.setRateLimit({ limit: 1000, perSecond: 1000 });
      }
    });

    it('§8: past the tenant limit, 429 too_many_requests with the documented message, X-RateLimit-* and no Retry-After', async () => {
      tenant.resetCounters();
      tenant.setRateLimit({ limit: 2, perSecond: 0.001 });
      try {
        const first = await postToken(postClient());
        expect([first.status, first.headers.get('x-ratelimit-limit'), first.headers.get('x-ratelimit-remaining')]).toEqual([200, '2', '1']);
        const second = await postToken(postClient({ client_secret: 'wrong' }));
        expect([second.status, second.headers.get('x-ratelimit-remaining')]).toEqual([401, '0']);
        const limited = await postToken(postClient());
        expect(limited.status).toBe(429);
        expect(limited.body).toEqual({
          error: 'too_many_requests',
          error_description: 'Too many requests. Check the X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset headers.',
        });
        expect(limited.headers.get('content-type')).toBe(JSON_TYPE);
        expect(limited.headers.get('x-ratelimit-limit')).toBe('2');
        expect(limited.headers.get('x-ratelimit-remaining')).toBe('0');
        // one request a 1000 s: the next is added in about 1000 s, in epoch seconds
        const reset = Number(limited.headers.get('x-ratelimit-reset'));
        expect(reset - Date.now() / 1000).toBeGreaterThan(990);
        expect(reset - Date.now() / 1000).toBeLessThan(1002);
        expect(limited.headers.get('retry-after')).toBeNull();
        expect(tenant.tokenRequests()).toBe(3);
        expect(tenant.issued()).toHaveLength(1);
      } finally {
        tenant.setRateLimit({ limit: 1000, perSecond: 1000 });
      }
      expect((await postToken(postClient())).status).toBe(200);
    });

    describe('§9 M2M quotas', () => {
      // 2025-05-22T07:40:00Z: the per_hour bucket resets in 1200 s at 1747900800 (the doc's example), per_day in 58800 s.
      const AT = Date.parse('2025-05-22T07:40:00Z');
      const quotaParams = (extra: Record<string, string> = {}) => ({
        grant_type: 'client_credentials',
        client_id: 'quota-client',
        client_secret: quotaSecret,
        audience: ORDERS,
        scope: 'read:orders',
        ...extra,
      });

      async function atQuotaTime<T>(run: () => Promise<T>): Promise<T> {
        vi.useFakeTimers({ toFake: ['Date'] });
        vi.setSystemTime(AT);
        try {
          return await run();
        } finally {
          vi.useRealTimers();
          tenant.setClientQuota('quota-client', null);
          tenant.setOrganizationQuota('org_abc', null);
        }
      }

      it('§9: no quota configured, no quota header', async () => {
        const res = await postToken(quotaParams());
        expect(res.status).toBe(200);
        expect(res.headers.get('auth0-client-quota-limit')).toBeNull();
        expect(res.headers.get('auth0-organization-quota-limit')).toBeNull();
      });

      it('§9: Auth0-Client-Quota-Limit on successes; once spent, 429 "Client quota exceeded" with the quota header, the quota X-RateLimit-* and Retry-After', async () => {
        await atQuotaTime(async () => {
          tenant.setClientQuota('quota-client', { perHour: 2, perDay: 5 });
          const first = await postToken(quotaParams());
          expect(first.status).toBe(200);
          expect(first.headers.get('auth0-client-quota-limit')).toBe('b=per_hour;q=2;r=1;t=1200,b=per_day;q=5;r=4;t=58800');
          // Refusals of another kind do not spend the quota.
          const refusedScope = await postToken(quotaParams({ scope: 'admin:orders' }));
          expect(refusedScope.status).toBe(403);
          const second = await postToken(quotaParams());
          expect(second.headers.get('auth0-client-quota-limit')).toBe('b=per_hour;q=2;r=0;t=1200,b=per_day;q=5;r=3;t=58800');
          // The X-RateLimit-* of a success report the tenant, not the quota.
          expect(second.headers.get('x-ratelimit-limit')).not.toBe('2');

          const refused = await postToken(quotaParams());
          expect(refused.status).toBe(429);
          expect(refused.body).toEqual({ error: 'too_many_requests', error_description: 'Client quota exceeded' });
          expect(refused.headers.get('content-type')).toBe(JSON_TYPE);
          expect(refused.headers.get('auth0-client-quota-limit')).toBe('b=per_hour;q=2;r=0;t=1200,b=per_day;q=5;r=3;t=58800');
          expect(refused.headers.get('x-ratelimit-limit')).toBe('2');
          expect(refused.headers.get('x-ratelimit-remaining')).toBe('0');
          expect(refused.headers.get('x-ratelimit-reset')).toBe('1747900800');
          expect(refused.headers.get('retry-after')).toBe('1200');

          // The next UTC hour refills the hourly bucket; the daily one keeps counting.
          vi.setSystemTime(AT + 1_200_000);
          const nextHour = await postToken(quotaParams());
          expect(nextHour.status).toBe(200);
          expect(nextHour.headers.get('auth0-client-quota-limit')).toBe('b=per_hour;q=2;r=1;t=3600,b=per_day;q=5;r=2;t=57600');
        });
      });

      it('§9: Auth0-Organization-Quota-Limit for a request naming an organization; 429 "Organization quota exceeded" once spent', async () => {
        await atQuotaTime(async () => {
          tenant.setClientQuota('quota-client', { perHour: 10 });
          tenant.setOrganizationQuota('org_abc', { perHour: 1, perDay: 50 });
          const first = await postToken(quotaParams({ organization: 'org_abc' }));
          expect(first.status).toBe(200);
          expect(first.headers.get('auth0-client-quota-limit')).toBe('b=per_hour;q=10;r=9;t=1200');
          expect(first.headers.get('auth0-organization-quota-limit')).toBe('b=per_hour;q=1;r=0;t=1200,b=per_day;q=50;r=49;t=58800');
          expect(decodeJwt(first.body.access_token as string).org_id).toBe('org_abc');

          // Without the organization, only the client's quota applies.
          const plain = await postToken(quotaParams());
          expect(plain.headers.get('auth0-organization-quota-limit')).toBeNull();
          expect(decodeJwt(plain.body.access_token as string)).not.toHaveProperty('org_id');

          const refused = await postToken(quotaParams({ organization: 'org_abc' }));
          expect(refused.status).toBe(429);
          expect(refused.body).toEqual({ error: 'too_many_requests', error_description: 'Organization quota exceeded' });
          expect(refused.headers.get('auth0-organization-quota-limit')).toBe('b=per_hour;q=1;r=0;t=1200,b=per_day;q=50;r=49;t=58800');
          expect(refused.headers.get('x-ratelimit-limit')).toBe('1');
          expect(refused.headers.get('retry-after')).toBe('1200');
        });
      });

      it('§9: enforce: false never refuses and keeps sending the header', async () => {
        await atQuotaTime(async () => {
          tenant.setClientQuota('quota-client', { perHour: 1, enforce: false });
          for (const expected of ['b=per_hour;q=1;r=0;t=1200', 'b=per_hour;q=1;r=0;t=1200']) {
            const res = await postToken(quotaParams());
            expect(res.status).toBe(200);
            expect(res.headers.get('auth0-client-quota-limit')).toBe(expected);
          }
        });
      });

      it('§9: setClientQuota refuses an unknown client and a quota without buckets', () => {
        expect(() => tenant.setClientQuota('no-such-client', { perHour: 1 })).toThrow(/unknown client/);
        expect(() => tenant.setClientQuota('quota-client', {})).toThrow(/perHour/);
        expect(() => tenant.setClientQuota('quota-client', { perHour: 0 })).toThrow(/perHour/);
      });
    });

    it('§10: a missing or blank audience is 403 access_denied "No audience parameter was provided, …"', async () => {
      const expected = { error: 'access_denied', error_description: 'No audience parameter was provided, and no default audience has been configured' };
      const { audience: _omitted, ...withoutAudience } = postClient();
      for (const params of [withoutAudience, postClient({ audience: '' }), postClient({ audience: '  ' })]) {
        const res = await postToken(params);
        expect(res.status).toBe(403);
        expect(res.body).toEqual(expected);
      }
      // Checked after the credential: a wrong secret without audience is still §1's 401.
      expect((await postToken({ ...withoutAudience, client_secret: 'wrong' })).body).toEqual(UNAUTHORIZED);
    });

    it('§12: the success shape and key order, gzip only when Accept-Encoding allows it, errors not compressed', async () => {
      const plain = await rawPost(postClient({ scope: 'read:orders' }), { 'accept-encoding': 'identity' });
      expect(plain.status).toBe(200);
      expect(plain.headers['content-encoding']).toBeUndefined();
      expect(plain.headers['content-type']).toBe(JSON_TYPE);
      const body = JSON.parse(plain.body.toString('utf8')) as Record<string, unknown>;
      expect(Object.keys(body)).toEqual(['access_token', 'expires_in', 'scope', 'token_type']);
      expect(body).toMatchObject({ expires_in: 86400, scope: 'read:orders', token_type: 'Bearer' });

      const none = await rawPost(postClient({ scope: 'read:orders' }));
      expect(none.headers['content-encoding']).toBeUndefined();

      const gzipped = await rawPost(postClient({ scope: 'read:orders' }), { 'accept-encoding': 'gzip, deflate' });
      expect(gzipped.status).toBe(200);
      expect(gzipped.headers['content-encoding']).toBe('gzip');
      expect(Number(gzipped.headers['content-length'])).toBe(gzipped.body.length);
      expect(Object.keys(JSON.parse(gunzipSync(gzipped.body).toString('utf8')) as object)).toEqual(['access_token', 'expires_in', 'scope', 'token_type']);

      const refusedGzip = await rawPost(postClient({ scope: 'read:orders' }), { 'accept-encoding': 'gzip;q=0, identity' });
      expect(refusedGzip.headers['content-encoding']).toBeUndefined();

      const error = await rawPost(postClient({ client_secret: 'wrong' }), { 'accept-encoding': 'gzip' });
      expect(error.status).toBe(401);
      expect(error.headers['content-encoding']).toBeUndefined();
      expect(JSON.parse(error.body.toString('utf8'))).toEqual(UNAUTHORIZED);
    });

    it('§11: auth0ServerError builds the confirmed Action failure: 500 server_error', async () => {
      tenant.setFault(auth0ServerError('action-error'));
      try {
        const res = await postToken(postClient());
        expect(res.status).toBe(500);
        expect(res.body).toEqual({ error: 'server_error', error_description: 'Script generated an unhandled asynchronous exception.' });
        expect(res.headers.get('retry-after')).toBeNull();
      } finally {
        tenant.setFault(null);
      }
    });
  });

  describe('plausible answers', () => {
    it('§1, §2 unknown: setRefusedCredentialAnswer picks access_denied (default), invalid_client or a plain-text 401', async () => {
      const wrong = postClient({ client_secret: 'wrong' });
      const unknown = postClient({ client_id: 'no-such-client' });
      try {
        tenant.setRefusedCredentialAnswer('invalid_client');
        for (const params of [wrong, unknown]) {
          const res = await postToken(params);
          expect(res.status).toBe(401);
          expect(res.body).toEqual({ error: 'invalid_client', error_description: 'Client authentication failed' });
        }

        tenant.setRefusedCredentialAnswer('plain-text');
        for (const params of [wrong, unknown]) {
          const res = await rawPost(params);
          expect(res.status).toBe(401);
          expect(res.body.toString('utf8')).toBe('Unauthorized');
          expect(res.headers['content-type']).toBeUndefined();
          expect(res.headers['x-ratelimit-limit']).toBeDefined();
        }

        tenant.setRefusedCredentialAnswer('access_denied');
        expect((await postToken(wrong)).body).toEqual(UNAUTHORIZED);
      } finally {
        tenant.setRefusedCredentialAnswer('access_denied');
      }
    });

    it('§7 unknown: setAssertionFailureAnswer picks access_denied (default), 401 invalid_client or 400 invalid_request', async () => {
      const expectations = {
        access_denied: [401, UNAUTHORIZED],
        invalid_client: [401, { error: 'invalid_client', error_description: 'Client authentication failed' }],
        invalid_request: [400, { error: 'invalid_request', error_description: 'Invalid client_assertion' }],
      } as const;
      try {
        for (const [answer, [status, body]] of Object.entries(expectations)) {
          tenant.setAssertionFailureAnswer(answer as keyof typeof expectations);
          const res = await assertionRequest(await assertionWith((await rsaKeyPair()).privateKey));
          expect(res.status, answer).toBe(status);
          expect(res.body, answer).toEqual(body);
        }
        // A wrong secret keeps §1's answer whatever §7's switch says.
        tenant.setAssertionFailureAnswer('invalid_request');
        expect((await postToken(postClient({ client_secret: 'wrong' }))).body).toEqual(UNAUTHORIZED);
      } finally {
        tenant.setAssertionFailureAnswer('access_denied');
      }
    });

    it('§6 unknown: setGrantTypeCheck("before-authentication") refuses a disabled grant type even with a wrong secret', async () => {
      const params = { grant_type: 'client_credentials', client_id: 'no-cc-client', client_secret: 'wrong', audience: ORDERS };
      expect((await postToken(params)).status).toBe(401);
      tenant.setGrantTypeCheck('before-authentication');
      try {
        const res = await postToken(params);
        expect(res.status).toBe(403);
        expect(res.body).toEqual(GRANT_TYPE_NOT_ALLOWED);
        // Clients with the grant type are unaffected.
        expect((await postToken(postClient({ client_secret: 'wrong' }))).status).toBe(401);
        expect((await postToken(postClient())).status).toBe(200);
      } finally {
        tenant.setGrantTypeCheck('after-authentication');
      }
    });

    it('§8 unknown: setRateLimitAnswer picks the documented body, the OAS body, Retry-After, or the custom-policy answer', async () => {
      const expectations = {
        documented: { description: 'Too many requests. Check the X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset headers.', retryAfter: null, auth0RateLimit: null },
        oas: { description: 'Rate limit exceeded. Please retry after some time.', retryAfter: null, auth0RateLimit: null },
        'retry-after': { description: 'Too many requests. Check the X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset headers.', retryAfter: '1000', auth0RateLimit: null },
        'custom-policy': { description: 'Rate limit exceeded.', retryAfter: '1000', auth0RateLimit: 'client;q=1;t=1000;r=0' },
      } as const;
      try {
        for (const [answer, expected] of Object.entries(expectations)) {
          tenant.setRateLimitAnswer(answer as keyof typeof expectations);
          tenant.setRateLimit({ limit: 1, perSecond: 0.001 });
          expect((await postToken(postClient())).status).toBe(200);
          const res = await postToken(postClient());
          expect(res.status, answer).toBe(429);
          expect(res.body, answer).toEqual({ error: 'too_many_requests', error_description: expected.description });
          expect(res.headers.get('x-ratelimit-limit'), answer).toBe('1');
          expect(res.headers.get('x-ratelimit-remaining'), answer).toBe('0');
          expect(res.headers.get('retry-after'), answer).toBe(expected.retryAfter);
          expect(res.headers.get('auth0-ratelimit'), answer).toBe(expected.auth0RateLimit);
        }
      } finally {
        tenant.setRateLimitAnswer('documented');
        tenant.setRateLimit({ limit: 1000, perSecond: 1000 });
      }
    });

    it('§9 unknown: setUnenforcedQuotaRemaining("negative") reports r below 0 past an unenforced quota (default: clamped to 0)', async () => {
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(Date.parse('2025-05-22T07:40:00Z'));
      const params = { grant_type: 'client_credentials', client_id: 'quota-client', client_secret: quotaSecret, audience: ORDERS };
      try {
        tenant.setClientQuota('quota-client', { perHour: 1, enforce: false });
        tenant.setUnenforcedQuotaRemaining('negative');
        const headers: Array<string | null> = [];
        for (let i = 0; i < 3; i += 1) headers.push((await postToken(params)).headers.get('auth0-client-quota-limit'));
        expect(headers).toEqual(['b=per_hour;q=1;r=0;t=1200', 'b=per_hour;q=1;r=-1;t=1200', 'b=per_hour;q=1;r=-2;t=1200']);
        tenant.setUnenforcedQuotaRemaining('clamp');
        expect((await postToken(params)).headers.get('auth0-client-quota-limit')).toBe('b=per_hour;q=1;r=0;t=1200');
      } finally {
        vi.useRealTimers();
        tenant.setUnenforcedQuotaRemaining('clamp');
        tenant.setClientQuota('quota-client', null);
      }
    });

    it('§10 unknown: setMissingAudienceAnswer picks access_denied (default), an opaque token without scope, the APIv1 refusal, or a default audience', async () => {
      const { audience: _omitted, ...withoutAudience } = postClient();
      try {
        tenant.setMissingAudienceAnswer('opaque-token');
        const opaque = await postToken(withoutAudience);
        expect(opaque.status).toBe(200);
        expect(Object.keys(opaque.body)).toEqual(['access_token', 'expires_in', 'token_type']);
        expect(opaque.body).toMatchObject({ expires_in: 86400, token_type: 'Bearer' });
        expect(() => decodeJwt(opaque.body.access_token as string)).toThrow();
        expect(tenant.issued().at(-1)).toMatchObject({ audience: '', scope: '' });
        // Only a missing audience reaches the legacy token.
        expect((await postToken(postClient({ audience: 'urn:local-tenant:legacy-opaque' }))).status).toBe(403);

        tenant.setMissingAudienceAnswer('apiv1-refused');
        const apiv1 = await postToken(withoutAudience);
        expect(apiv1.status).toBe(403);
        expect(apiv1.body).toEqual({ error: 'access_denied', error_description: 'Non-global clients are not allowed access to APIv1' });

        tenant.setMissingAudienceAnswer({ defaultAudience: ORDERS });
        const defaulted = await postToken(withoutAudience);
        expect(defaulted.status).toBe(200);
        const { payload } = await verify(defaulted.body.access_token as string, ORDERS);
        expect(payload.scope).toBe('read:orders write:orders');
        // The default audience still needs a client grant (§3).
        tenant.setMissingAudienceAnswer({ defaultAudience: BILLING });
        expect((await postToken(withoutAudience)).status).toBe(403);

        tenant.setMissingAudienceAnswer('access_denied');
        expect((await postToken(withoutAudience)).body.error_description).toBe('No audience parameter was provided, and no default audience has been configured');
      } finally {
        tenant.setMissingAudienceAnswer('access_denied');
      }
    });

    it('§11 unknown: auth0ServerError builds each plausible edge 5xx (HTML, empty, JSON), with or without Retry-After', async () => {
      const post = () => fetch(tokenUrl(), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(postClient()) });
      try {
        tenant.setFault(auth0ServerError('edge-html'));
        const html = await post();
        expect(html.status).toBe(502);
        expect(html.headers.get('content-type')).toBe('text/html');
        expect(await html.text()).toMatch(/^<html>.*502 Bad Gateway/);

        tenant.setFault(auth0ServerError('edge-empty', { retryAfterSeconds: 30 }));
        const empty = await post();
        expect(empty.status).toBe(503);
        expect(empty.headers.get('retry-after')).toBe('30');
        expect(await empty.text()).toBe('');

        tenant.setFault(auth0ServerError('edge-json', { status: 504 }));
        const json = await post();
        expect(json.status).toBe(504);
        expect(await json.json()).toEqual({ error: 'server_error', error_description: 'Service Unavailable' });
      } finally {
        tenant.setFault(null);
      }
    });

    it('§12 unknown: setCompression("always") gzips a success even against Accept-Encoding: identity; "never" never does', async () => {
      try {
        tenant.setCompression('always');
        const forced = await rawPost(postClient(), { 'accept-encoding': 'identity' });
        expect(forced.status).toBe(200);
        expect(forced.headers['content-encoding']).toBe('gzip');
        expect(JSON.parse(gunzipSync(forced.body).toString('utf8'))).toMatchObject({ token_type: 'Bearer' });

        tenant.setCompression('never');
        expect((await rawPost(postClient(), { 'accept-encoding': 'gzip' })).headers['content-encoding']).toBeUndefined();
      } finally {
        tenant.setCompression('when-asked');
      }
    });
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
