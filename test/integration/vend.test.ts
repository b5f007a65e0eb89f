/**
 * The vend path against the real local components: moto_server (Secrets Manager, DynamoDB) and
 * an oidc-provider tenant behaving like Auth0. IdP calls are counted at the IdP.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import type { APIGatewayProxyResult } from 'aws-lambda';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DynamoTokenStore } from '../../functions/adapters/dynamoTokenStore.js';
import { KmsTokenSealer } from '../../functions/adapters/kmsTokenSealer.js';
import { cacheKey } from '../../functions/core/tokenIdentity.js';
import { putClientSecret } from '../../local/seed.js';
import { freePort } from '../../local/moto.js';
import { apiEvent, directEvent } from '../helpers/events.js';
import { BILLING, BILLING_ROLE_SESSION, CHECKOUT_ROLE_SESSION, ORDERS, REPORTING_ROLE_SESSION, startTestStack, type TestStack } from '../helpers/testStack.js';

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(async () => {
  await stack?.close();
});
beforeEach(() => {
  stack.tenant.resetCounters();
  stack.tenant.setTamper(null);
  stack.tenant.setFault(null);
});

type Res = APIGatewayProxyResult;
const request = (body: unknown, userArn = CHECKOUT_ROLE_SESSION) => apiEvent({ body: JSON.stringify(body), userArn });
const json = (res: Res) => JSON.parse(res.body) as Record<string, unknown>;

async function tokenItems(tableName: string): Promise<number> {
  const out = await stack.dynamodb.send(new ScanCommand({ TableName: tableName, ConsistentRead: true }));
  return (out.Items ?? []).filter((i) => i.sealedToken !== undefined).length;
}

describe('caching across the fleet', () => {
  it('fetches once; 100 more requests over two separate vendor instances cost 0 IdP calls', async () => {
    const table = await stack.newTable();
    const a = stack.vendor({ env: { TOKEN_TABLE_NAME: table } });
    const b = stack.vendor({ env: { TOKEN_TABLE_NAME: table } });

    const first = (await a.handler(request({ audience: ORDERS }))) as Res;
    expect(first.statusCode).toBe(200);
    expect(stack.tenant.tokenRequests()).toBe(1);

    const rest = (await Promise.all(
      Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? a : b).handler(request({ audience: ORDERS, scope: 'write:orders read:orders' }))),
    )) as Res[];

    expect(rest.map((r) => r.statusCode)).toEqual(Array(100).fill(200));
    expect(new Set(rest.map((r) => json(r).access_token))).toEqual(new Set([json(first).access_token]));
    expect(stack.tenant.tokenRequests()).toBe(1);
  });

  it('200 concurrent requests over 4 OS processes sharing one table cost exactly 1 IdP call', async () => {
    const table = await stack.newTable();
    const children = Array.from({ length: 4 }, () =>
      spawn(process.execPath, ['--import', 'tsx', 'test/helpers/vendorProcess.ts', '50', ORDERS, 'read:orders'], {
        env: { ...process.env, ...stack.env, TOKEN_TABLE_NAME: table },
        stdio: ['pipe', 'pipe', 'inherit'],
      }),
    );
    const results = children.map(
      (child) =>
        new Promise<{ ready: Promise<void>; result: Promise<Array<{ status: number; fingerprint: string | null }>> }>((resolveOuter) => {
          let markReady!: () => void;
          const ready = new Promise<void>((r) => (markReady = r));
          const result = new Promise<Array<{ status: number; fingerprint: string | null }>>((resolve, reject) => {
            child.on('exit', (code) => reject(new Error(`vendor process exited with ${code} before reporting`)));
            createInterface({ input: child.stdout! }).on('line', (line) => {
              if (line === 'READY') markReady();
              else if (line.startsWith('RESULT ')) resolve(JSON.parse(line.slice(7)));
              else process.stdout.write(`${line}\n`); // the vendor's logs, for the log scan
            });
          });
          resolveOuter({ ready, result });
        }),
    );
    const handles = await Promise.all(results);
    await Promise.all(handles.map((h) => h.ready));
    for (const child of children) child.stdin!.write('GO\n');
    const all = (await Promise.all(handles.map((h) => h.result))).flat();

    expect(all).toHaveLength(200);
    expect(all.filter((r) => r.status === 200)).toHaveLength(200);
    expect(new Set(all.map((r) => r.fingerprint)).size).toBe(1);
    expect(stack.tenant.tokenRequests()).toBe(1);
  });
});

describe('expiry', () => {
  it('never serves an item past its expiry, even when DynamoDB has not deleted it', async () => {
    const table = await stack.newTable();
    const now = Math.floor(Date.now() / 1000);
    const key = cacheKey(stack.tenant.issuer, stack.ordersSecretId, ORDERS, ['read:orders']);
    // What TTL deletion may leave behind for days: an expired item, TTL attribute and all,
    // written (sealed) exactly as the vendor writes its items.
    const sealer = new KmsTokenSealer({ kms: stack.kms, tableName: table, keyId: stack.env.TOKEN_SEAL_KEY_ID! });
    await new DynamoTokenStore({ client: stack.dynamodb, tableName: table, sealer }).put({
      key,
      accessToken: 'expired-token-that-must-never-be-served',
      scope: 'read:orders',
      expiresAt: now - 10,
      fetchedAt: (now - 86_410) * 1000,
      fingerprint: 'expired',
      client: 'orders',
      audience: ORDERS,
      scopes: ['read:orders'],
    });
    const res = (await stack.vendor({ env: { TOKEN_TABLE_NAME: table } }).handler(request({ audience: ORDERS, scope: 'read:orders' }))) as Res;

    expect(res.statusCode).toBe(200);
    expect(json(res).access_token).not.toBe('expired-token-that-must-never-be-served');
    expect(stack.tenant.tokenRequests()).toBe(1);
    // and the fresh token replaced the expired one
    const out = await stack.dynamodb.send(new ScanCommand({ TableName: table, ConsistentRead: true }));
    const item = out.Items?.find((i) => i.pk?.S === key);
    expect(Number(item?.expiresAt?.N)).toBeGreaterThan(now + 86_000);
    expect(item?.ttl?.N).toBe(item?.expiresAt?.N);
  });

  it('serves expires_in as what is left now, counted from the IdP response', async () => {
    const res = (await stack.vendor().handler(request({ audience: ORDERS, scope: 'write:orders' }))) as Res;
    const body = json(res);
    const claims = decodeJwt(body.access_token as string);
    const left = (claims.exp as number) - Math.floor(Date.now() / 1000);
    expect(body.expires_in).toBeGreaterThan(0);
    expect(body.expires_in).toBeLessThanOrEqual(left);
    expect(body.expires_in).toBeGreaterThanOrEqual(left - 2);
  });
});

describe('tokens sealed at rest', () => {
  it('the raw DynamoDB items hold no usable token', async () => {
    const table = await stack.newTable();
    const vendor = stack.vendor({ env: { TOKEN_TABLE_NAME: table } });
    const served = JSON.parse(((await vendor.handler(request({ audience: ORDERS, scope: 'read:orders' }))) as Res).body) as { access_token: string };

    const raw = JSON.stringify((await stack.dynamodb.send(new ScanCommand({ TableName: table, ConsistentRead: true }))).Items);
    // not the token, not any part of it that a bearer could present, not any JWT at all
    expect(raw.includes(served.access_token)).toBe(false);
    for (const part of served.access_token.split('.')) expect(raw.includes(part)).toBe(false);
    expect(raw).not.toMatch(/eyJ[\w-]{10,}/);
    expect(raw).toContain('"sealedToken"');
    // and the vendor itself still opens it: a second instance is served from DynamoDB
    const again = JSON.parse(((await stack.vendor({ env: { TOKEN_TABLE_NAME: table } }).handler(request({ audience: ORDERS, scope: 'read:orders' }))) as Res).body) as { access_token: string };
    expect(again.access_token === served.access_token).toBe(true);
  });
});

describe('scopes and grants', () => {
  it('grants a scope subset, and Auth0 is asked for exactly that', async () => {
    const res = (await stack.vendor().handler(request({ audience: ORDERS, scope: 'read:orders' }))) as Res;
    expect(res.statusCode).toBe(200);
    expect(json(res).scope).toBe('read:orders');
    expect(decodeJwt(json(res).access_token as string)).toMatchObject({ scope: 'read:orders', aud: ORDERS, iss: stack.tenant.issuer });
  });

  it('no scope means every granted scope, never the wider Auth0 client grant', async () => {
    const res = (await stack.vendor().handler(request({ audience: ORDERS }))) as Res;
    expect(json(res).scope).toBe('read:orders write:orders');
    expect(decodeJwt(json(res).access_token as string).scope).toBe('read:orders write:orders');
  });

  it('denies a scope outside the grant without asking the IdP', async () => {
    const res = (await stack.vendor().handler(request({ audience: ORDERS, scope: 'read:orders admin:orders' }))) as Res;
    expect(res.statusCode).toBe(403);
    expect(json(res)).toEqual({ error: 'access_denied', error_description: 'The caller is not granted scope "admin:orders" for audience "https://orders.example.com".' });
    expect(stack.tenant.tokenRequests()).toBe(0);
  });

  it('denies a caller with no grant for the audience', async () => {
    const res = (await stack.vendor().handler(request({ audience: BILLING }, CHECKOUT_ROLE_SESSION))) as Res;
    expect(res.statusCode).toBe(403);
    expect(stack.tenant.tokenRequests()).toBe(0);
  });

  it('vends an opaque token through client_secret_basic', async () => {
    const res = (await stack.vendor().handler(request({ audience: BILLING }, BILLING_ROLE_SESSION))) as Res;
    expect(res.statusCode).toBe(200);
    expect(json(res)).toMatchObject({ token_type: 'Bearer', scope: 'read:billing' });
    expect(stack.tenant.tokenRequests()).toBe(1);
  });

  it('serves a direct invocation only through a grant that allows it', async () => {
    const vendor = stack.vendor();
    expect(await vendor.handler(directEvent({ audience: ORDERS, scope: 'read:orders', as: REPORTING_ROLE_SESSION }))).toMatchObject({ token_type: 'Bearer', scope: 'read:orders' });
    expect(await vendor.handler(directEvent({ audience: ORDERS, scope: 'write:orders', as: REPORTING_ROLE_SESSION }))).toMatchObject({ error: 'access_denied' });
    expect(await vendor.handler(directEvent({ audience: BILLING, as: REPORTING_ROLE_SESSION }))).toMatchObject({ error: 'access_denied' });
    // the reporting role, via the API, gets the same grant
    expect(((await vendor.handler(request({ audience: ORDERS }, REPORTING_ROLE_SESSION))) as Res).statusCode).toBe(200);
  });
});

describe('IdP failures', () => {
  it('a wrong secret gives 502 access_denied (Auth0\'s answer, docs/auth0-wire-behaviour.md §1) and caches nothing', async () => {
    const table = await stack.newTable();
    const wrong = 'wrong-secret-value-0123456789';
    stack.recordSensitive('client_secret', wrong);
    const secretId = `vendor/wrong-${table}`;
    await putClientSecret(stack.secretsManager, secretId, { client_id: 'orders-client', client_secret: wrong });
    const grantsFile = `${stack.grantsFile}.wrong.json`;
    writeFileSync(
      grantsFile,
      JSON.stringify({
        clients: { orders: { domain: stack.tenant.origin, secretId } },
        grants: [{ principals: ['arn:aws:iam::111122223333:role/checkout-service'], client: 'orders', audience: ORDERS, scopes: ['read:orders'] }],
      }),
    );
    const vendor = stack.vendor({ env: { TOKEN_TABLE_NAME: table, GRANTS_FILE: grantsFile } });

    const res = (await vendor.handler(request({ audience: ORDERS }))) as Res;

    expect(res.statusCode).toBe(502);
    expect(json(res).error).toBe('access_denied');
    expect(res.body).not.toContain(wrong);
    expect(await tokenItems(table)).toBe(0);
    // not cached as a failure either: the next request asks again
    await vendor.handler(request({ audience: ORDERS }));
    expect(stack.tenant.tokenRequests()).toBe(2);
  });

  it('an unreachable IdP gives 503 with Retry-After', async () => {
    const deadPort = await freePort();
    const grantsFile = `${stack.grantsFile}.dead.json`;
    writeFileSync(
      grantsFile,
      JSON.stringify({
        clients: { orders: { domain: `http://127.0.0.1:${deadPort}`, secretId: stack.ordersSecretId } },
        grants: [{ principals: ['arn:aws:iam::111122223333:role/checkout-service'], client: 'orders', audience: ORDERS, scopes: ['read:orders'] }],
      }),
    );
    // A table of its own: the fleet back-off this failure records stays in it.
    const res = (await stack.vendor({ env: { GRANTS_FILE: grantsFile, TOKEN_TABLE_NAME: await stack.newTable() } }).handler(request({ audience: ORDERS }))) as Res;
    expect(res.statusCode).toBe(503);
    expect(json(res).error).toBe('temporarily_unavailable');
    expect(Number(res.headers?.['Retry-After'])).toBeGreaterThan(0);
  });

  it('an IdP that hangs past the timeout gives 503 with Retry-After', async () => {
    stack.tenant.setFault('hang');
    const res = (await stack.vendor({ env: { TOKEN_TABLE_NAME: await stack.newTable() } }).handler(request({ audience: ORDERS }))) as Res;
    expect(res.statusCode).toBe(503);
    expect(res.headers?.['Retry-After']).toBeDefined();
  });

  it.each(['wrong-key', 'wrong-aud'] as const)('a forged token (%s) is refused and not cached', async (mode) => {
    const table = await stack.newTable();
    const vendor = stack.vendor({ env: { TOKEN_TABLE_NAME: table } });
    stack.tenant.setTamper(mode);

    const forged = (await vendor.handler(request({ audience: ORDERS }))) as Res;

    expect(forged.statusCode).toBe(502);
    expect(json(forged)).toEqual({ error: 'server_error', error_description: 'The identity provider returned an invalid token response.' });
    expect(await tokenItems(table)).toBe(0);

    stack.tenant.setTamper(null);
    const genuine = (await vendor.handler(request({ audience: ORDERS }))) as Res;
    expect(genuine.statusCode).toBe(200);
    expect(stack.tenant.tokenRequests()).toBe(2);
    expect(await tokenItems(table)).toBe(1);
  });
});
