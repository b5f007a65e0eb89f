/**
 * Issue 10, part 1, against the BUILT vend bundle (esbuild, the deployed options) with the real
 * local components: the STS stand-in that verifies each proof's signature (local/sts.ts), the
 * Auth0 tenant stand-in and moto. The vendor trusts no identity it did not verify itself
 * (docs/identity-proof.md): a direct invoker writing any event it likes gets its own grants, or
 * nothing.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startLocalSts, type LocalCredential, type LocalSts } from '../../local/sts.js';
import { presignProof, presignProofUrl, type PresignProofOptions } from '../../local/stsProof.js';
import { LOCAL_REGION } from '../../local/seed.js';
import { functionBundleOptions } from '../../scripts/esbuildOptions.mjs';
import { apiEvent } from '../helpers/events.js';
import { BILLING, ORDERS, startTestStack, type TestStack } from '../helpers/testStack.js';

const SERVER_ID = 'token-vendor-identity-test';
const ACCOUNT = '111122223333';
const key = (id: string, principalArn: string, sessionName: string | undefined, uniqueId: string): LocalCredential => ({
  accessKeyId: `AKIAIDENTITYTEST${id}`,
  secretAccessKey: `identity-test-secret-${id}-0123456789abcdef`,
  principalArn,
  ...(sessionName !== undefined ? { sessionName } : {}),
  uniqueId,
});
const CHECKOUT = key('0001', `arn:aws:iam::${ACCOUNT}:role/checkout-service`, 'i-0abc', 'AROACHECKOUTSERVICE01');
const REPORTING = key('0002', `arn:aws:iam::${ACCOUNT}:role/reporting-daily`, 'job-1', 'AROAREPORTINGDAILY001');
const BILLING_API = key('0003', `arn:aws:iam::${ACCOUNT}:role/billing-api`, 'task-9', 'AROABILLINGAPIROLE001');
// The same role name, deleted and recreated: a new unique id.
const BILLING_RECREATED = key('0004', `arn:aws:iam::${ACCOUNT}:role/billing-api`, 'task-9', 'AROABILLINGRECREATED1');
const ADMIN = key('0005', `arn:aws:iam::${ACCOUNT}:role/admin`, 'console', 'AROAADMINROLE00000001');
const sessionArn = (c: LocalCredential) => `arn:aws:sts::${ACCOUNT}:assumed-role/${c.principalArn.split('/').pop()}/${c.sessionName}`;

type Handler = (event: unknown) => Promise<APIGatewayProxyResult | Record<string, unknown>>;

let stack: TestStack;
let sts: LocalSts;
let handler: Handler;
let dir: string;

beforeAll(async () => {
  stack = await startTestStack();
  sts = await startLocalSts({ credentials: [CHECKOUT, REPORTING, BILLING_API, BILLING_RECREATED, ADMIN], region: LOCAL_REGION });
  dir = mkdtempSync(join(tmpdir(), 'identity-test-'));
  const grantsFile = join(dir, 'grants.json');
  const clients = JSON.parse(await import('node:fs').then((fs) => fs.readFileSync(stack.grantsFile, 'utf8'))).clients as unknown;
  writeFileSync(
    grantsFile,
    JSON.stringify({
      clients,
      grants: [
        { principals: [CHECKOUT.principalArn], client: 'orders', audience: ORDERS, scopes: ['read:orders', 'write:orders'] },
        { principals: [REPORTING.principalArn], client: 'orders', audience: ORDERS, scopes: ['read:orders'] },
        { principals: [{ arn: BILLING_API.principalArn, uniqueId: BILLING_API.uniqueId }], client: 'billing', audience: BILLING, scopes: ['read:billing'] },
      ],
    }),
  );
  // The bundle as the deployment builds it, configured from the environment at its cold start.
  const out = join(dir, 'vend');
  await build(functionBundleOptions(join(import.meta.dirname, '../../functions/vend.ts'), out));
  writeFileSync(join(out, 'package.json'), '{ "type": "module" }\n');
  Object.assign(process.env, stack.env, { GRANTS_FILE: grantsFile, STS_ENDPOINT: sts.origin, PROOF_SERVER_ID: SERVER_ID, POWERTOOLS_METRICS_DISABLED: 'true' });
  handler = ((await import(pathToFileURL(join(out, 'index.js')).href)) as { handler: Handler }).handler;
}, 60_000);

afterAll(async () => {
  vi.useRealTimers();
  await sts?.close();
  await stack?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

function proof(c: LocalCredential, audience: string, scope?: string, extra: Partial<PresignProofOptions> = {}): string {
  return presignProof({ credential: c, region: LOCAL_REGION, stsOrigin: sts.origin, serverId: SERVER_ID, audience, scope, ...extra });
}

/** A proof whose URL was edited after signing (the vendor must refuse it before calling STS). */
function edited(c: LocalCredential, edit: (url: URL) => void): string {
  const url = new URL(presignProofUrl({ credential: c, region: LOCAL_REGION, stsOrigin: sts.origin, serverId: SERVER_ID, audience: ORDERS, scope: 'read:orders' }));
  edit(url);
  return `tvp1.${Buffer.from(url.toString()).toString('base64url')}`;
}

function direct(body: Record<string, unknown>): Promise<Record<string, unknown>> {
  return handler(body) as Promise<Record<string, unknown>>;
}

async function api(c: LocalCredential | null, body: { audience: string; scope?: string }, proofValue?: string): Promise<APIGatewayProxyResult> {
  const headers: Record<string, string> = {};
  const value = proofValue ?? (c === null ? undefined : proof(c, body.audience, body.scope));
  if (value !== undefined) headers['X-Token-Vendor-Proof'] = value;
  const event: APIGatewayProxyEvent = apiEvent({ body: JSON.stringify(body), userArn: c === null ? null : sessionArn(c), headers, proof: null });
  return (await handler(event)) as APIGatewayProxyResult;
}

/** IdP calls and STS calls a step cost. */
async function counting<T>(step: () => Promise<T>): Promise<{ result: T; idp: number; sts: number }> {
  const idp = stack.tenant.tokenRequests();
  const calls = sts.calls();
  const result = await step();
  return { result, idp: stack.tenant.tokenRequests() - idp, sts: sts.calls() - calls };
}

describe('identity, proven by STS on every path (built bundle)', () => {
  it('a forged API-shaped direct invocation naming another role gets 403, and no IdP or STS call', async () => {
    const forged = apiEvent({ body: JSON.stringify({ audience: ORDERS, scope: 'write:orders' }), userArn: sessionArn(CHECKOUT), proof: null });
    const { result, idp, sts: stsCalls } = await counting(() => handler(forged) as Promise<APIGatewayProxyResult>);
    expect(result.statusCode).toBe(403);
    expect(JSON.parse(result.body)).toMatchObject({ error: 'access_denied' });
    expect([idp, stsCalls]).toEqual([0, 0]);
  });

  it("an API-shaped direct invocation with the invoker's own proof but another role's userArn gets 403", async () => {
    const res = await api(CHECKOUT, { audience: ORDERS, scope: 'read:orders' }, proof(ADMIN, ORDERS, 'read:orders'));
    expect(res.statusCode).toBe(403);
    expect(JSON.parse(res.body).error_description).toContain('another principal');
  });

  it('a direct invocation with a valid proof gets exactly its principal\'s grants', async () => {
    const granted = await direct({ audience: ORDERS, scope: 'read:orders', proof: proof(REPORTING, ORDERS, 'read:orders') });
    expect(granted).toMatchObject({ token_type: 'Bearer', scope: 'read:orders' });
    // beyond the grant
    expect(await direct({ audience: ORDERS, scope: 'write:orders', proof: proof(REPORTING, ORDERS, 'write:orders') })).toMatchObject({ error: 'access_denied', status: 403 });
    // checkout-service's own grant, which reporting-daily above does not have
    expect(await direct({ audience: ORDERS, scope: 'write:orders', proof: proof(CHECKOUT, ORDERS, 'write:orders') })).toMatchObject({ token_type: 'Bearer', scope: 'write:orders' });
    // an admin allowed to invoke the function has no grant at all
    expect(await direct({ audience: ORDERS, proof: proof(ADMIN, ORDERS) })).toMatchObject({ error: 'access_denied', status: 403 });
    // and no proof at all
    const { result, sts: stsCalls, idp } = await counting(() => direct({ audience: ORDERS, scope: 'read:orders' }));
    expect(result).toMatchObject({ error: 'access_denied', status: 403 });
    expect([stsCalls, idp]).toEqual([0, 0]);
  });

  it('an API-shaped event with no caller at all but the invoker\'s own proof gets the invoker\'s grants, nothing more', async () => {
    const shaped = (c: LocalCredential, scope: string) => ({
      httpMethod: 'POST',
      path: '/token',
      requestContext: {},
      headers: { 'x-token-vendor-proof': proof(c, ORDERS, scope) },
      body: JSON.stringify({ audience: ORDERS, scope }),
    });
    expect(((await handler(shaped(REPORTING, 'read:orders'))) as APIGatewayProxyResult).statusCode).toBe(200);
    expect(((await handler(shaped(REPORTING, 'write:orders'))) as APIGatewayProxyResult).statusCode).toBe(403);
  });

  it('the API path serves the proven caller its grants', async () => {
    const res = await api(CHECKOUT, { audience: ORDERS, scope: 'write:orders' });
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ scope: 'write:orders' });
  });

  it.each([
    ['expired', () => proof(CHECKOUT, ORDERS, 'read:orders', { now: new Date(Date.now() - 61_000) }), 0],
    ['for another STS action', () => edited(CHECKOUT, (u) => u.searchParams.set('Action', 'AssumeRole')), 0],
    ['for another host', () => edited(CHECKOUT, (u) => (u.host = 'sts.eu-west-1.amazonaws.com')), 0],
    ['without the binding headers signed', () => edited(CHECKOUT, (u) => u.searchParams.set('X-Amz-SignedHeaders', 'host')), 0],
    ['with a parameter STS would act on', () => edited(CHECKOUT, (u) => u.searchParams.set('RoleArn', ADMIN.principalArn)), 0],
    // The URL alone cannot show these: STS checks the signature over the values the vendor sends.
    ['made for another server id', () => proof(CHECKOUT, ORDERS, 'read:orders', { serverId: 'token-vendor-other-stage' }), 1],
    ['made for another audience', () => proof(CHECKOUT, BILLING, 'read:orders'), 1],
    ['made for another scope', () => proof(CHECKOUT, ORDERS, 'write:orders'), 1],
  ])('a proof %s gets 403 and no token', async (_what, make, expectedStsCalls) => {
    const value = make();
    const { result, idp, sts: stsCalls } = await counting(() => api(CHECKOUT, { audience: ORDERS, scope: 'read:orders' }, value));
    expect(result.statusCode).toBe(403);
    expect(JSON.parse(result.body)).toMatchObject({ error: 'access_denied' });
    expect([idp, stsCalls]).toEqual([0, expectedStsCalls]);
  });

  it('a pinned grant does not follow a role deleted and recreated under the same name', async () => {
    expect(await direct({ audience: BILLING, proof: proof(BILLING_API, BILLING) })).toMatchObject({ token_type: 'Bearer' });
    expect(await direct({ audience: BILLING, proof: proof(BILLING_RECREATED, BILLING) })).toMatchObject({ error: 'access_denied', status: 403 });
  });

  it('STS unreachable, throttling or hanging gives 503 with Retry-After, and no token', async () => {
    for (const [i, fault] of (['outage', 'throttle', 'hang'] as const).entries()) {
      sts.setFault(fault);
      try {
        // A proof signed at a time no other test used: one already proved would not reach STS again.
        const signedAt = new Date(Date.now() - 10_000 - i * 1000);
        const res = await api(CHECKOUT, { audience: ORDERS }, proof(CHECKOUT, ORDERS, undefined, { now: signedAt }));
        expect([fault, res.statusCode, JSON.parse(res.body).error]).toEqual([fault, 503, 'temporarily_unavailable']);
        expect(Number(res.headers?.['Retry-After'])).toBeGreaterThan(0);
        const viaDirect = await direct({ audience: ORDERS, scope: 'read:orders', proof: proof(REPORTING, ORDERS, 'read:orders', { now: signedAt }) });
        expect(viaDirect).toMatchObject({ error: 'temporarily_unavailable', status: 503, retry_after: expect.any(Number) });
      } finally {
        sts.setFault(null);
      }
    }
  });

  it('a replayed proof serves the same request inside its window, and is refused once the window closes', async () => {
    const value = proof(REPORTING, ORDERS, 'read:orders');
    expect(await direct({ audience: ORDERS, scope: 'read:orders', proof: value })).toMatchObject({ token_type: 'Bearer' });
    expect(await direct({ audience: ORDERS, scope: 'read:orders', proof: value })).toMatchObject({ token_type: 'Bearer' });
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 61_000);
    try {
      // STS would still accept it (15 minutes); the vendor does not.
      const { result, sts: stsCalls } = await counting(() => direct({ audience: ORDERS, scope: 'read:orders', proof: value }));
      expect(result).toMatchObject({ error: 'access_denied', status: 403 });
      expect(stsCalls).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
