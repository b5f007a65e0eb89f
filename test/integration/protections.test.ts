/**
 * Protections that cannot be turned against the fleet (issue 9), against the Auth0-shaped local
 * tenant and the deployed settings, counting requests at the IdP:
 * - one caller cycling through scope subsets, or asking again and again for a scope Auth0
 *   refuses, costs that caller, never another caller of the same client, nor the refresher;
 * - an instance frozen in the middle of an attempt records no fleet back-off against a healthy IdP.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { APIGatewayProxyResult } from 'aws-lambda';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DynamoTokenStore } from '../../functions/adapters/dynamoTokenStore.js';
import { KmsTokenSealer } from '../../functions/adapters/kmsTokenSealer.js';
import { apiEvent } from '../helpers/events.js';
import { CHECKOUT_ROLE_SESSION, ORDERS, REPORTING_ROLE_SESSION, startTestStack, type TestStack } from '../helpers/testStack.js';

type Res = APIGatewayProxyResult;
const json = (res: Res) => JSON.parse(res.body) as Record<string, unknown>;

/** A clock the test moves; starts at the real time so the IdP's tokens are valid against it. */
function fakeClock() {
  const clock = { t: Date.now(), now: () => clock.t, advance: (ms: number) => void (clock.t += ms) };
  return clock;
}

let stack: TestStack;
let dir: string;
beforeAll(async () => {
  stack = await startTestStack({ tokenTtlSeconds: 3600 });
  dir = mkdtempSync(join(tmpdir(), 'protections-'));
});
afterAll(async () => {
  await stack?.close();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  stack.tenant.resetCounters();
  stack.tenant.setFault(null);
});

const ask = (vendor: ReturnType<TestStack['vendor']>, userArn: string, scope: string) =>
  vendor.handler(apiEvent({ body: JSON.stringify({ audience: ORDERS, scope }), userArn })) as Promise<Res>;

async function fleetBackoffs(table: string): Promise<number> {
  const sealer = new KmsTokenSealer({ kms: stack.kms, tableName: table, keyId: stack.env.TOKEN_SEAL_KEY_ID! });
  const { backoffs } = await new DynamoTokenStore({ client: stack.dynamodb, tableName: table, sealer }).inspect();
  return backoffs.length;
}

describe('one caller cannot spend another caller\'s share of the quota', () => {
  it('a caller cycling through scope subsets is refused past its own budget; another caller of the client is served, and the refresher refreshes', async () => {
    const clock = fakeClock();
    const table = await stack.newTable();
    // A feature setting, not a timing: a per-caller budget of 2 new tokens an hour, so that three
    // subsets of a two-scope grant exceed it. Everything else is as deployed.
    const vendor = stack.vendor({ env: { TOKEN_TABLE_NAME: table, QUOTA_PER_CALLER_PER_HOUR: '2' }, deps: { now: clock.now } });

    const greedy = [
      await ask(vendor, CHECKOUT_ROLE_SESSION, 'read:orders'),
      await ask(vendor, CHECKOUT_ROLE_SESSION, 'write:orders'),
      await ask(vendor, CHECKOUT_ROLE_SESSION, 'read:orders write:orders'),
      await ask(vendor, CHECKOUT_ROLE_SESSION, 'write:orders read:orders'),
    ];

    expect(greedy.map((r) => r.statusCode)).toEqual([200, 200, 429, 429]);
    expect(json(greedy[2]!)).toMatchObject({ error: 'too_many_requests' });
    expect(Number(greedy[2]!.headers?.['Retry-After'])).toBeGreaterThan(0);
    expect(stack.tenant.tokenRequests()).toBe(2);

    // Another caller of the same Auth0 client: its miss is its own (the tokens are flushed, so it
    // really costs a fetch), and it is served.
    await vendor.service.flush('orders');
    const other = await ask(vendor, REPORTING_ROLE_SESSION, 'read:orders');
    expect(other.statusCode).toBe(200);
    expect(stack.tenant.tokenRequests()).toBe(3);

    // The refresher keeps refreshing the tokens in use: its fetches are not any caller's.
    clock.advance(2_700_000); // 75 % of the 3600 s lifetime: past the refresh point
    const report = await vendor.refresher.run();
    expect(report.refreshed).toBeGreaterThanOrEqual(1);
    expect(report.failed).toBe(0);
    expect(stack.tenant.tokenRequests()).toBeGreaterThanOrEqual(4);
  });

  it('a scope Auth0 refuses (403) is remembered: asking again costs no IdP call and no quota; another caller is served', async () => {
    // The grants file allows `admin:orders` to the checkout role, but Auth0's client grant for
    // the orders client is changed not to include it: the two disagree.
    const table = await stack.newTable();
    const grantsFile = join(dir, 'grants-mismatch.json');
    writeFileSync(
      grantsFile,
      JSON.stringify({
        clients: { orders: { domain: stack.tenant.origin, secretId: stack.ordersSecretId, authMethod: 'client_secret_post' } },
        grants: [
          { principals: ['arn:aws:iam::111122223333:role/checkout-service'], client: 'orders', audience: ORDERS, scopes: ['read:orders', 'delete:orders'] },
          { principals: ['arn:aws:iam::111122223333:role/reporting-*'], client: 'orders', audience: ORDERS, scopes: ['read:orders'] },
        ],
      }),
    );
    const vendor = stack.vendor({ env: { TOKEN_TABLE_NAME: table, GRANTS_FILE: grantsFile } });

    const refused = [];
    for (let i = 0; i < 5; i += 1) refused.push(await ask(vendor, CHECKOUT_ROLE_SESSION, 'delete:orders'));

    expect(refused.map((r) => r.statusCode)).toEqual([502, 502, 502, 502, 502]);
    expect(json(refused[0]!)).toMatchObject({ error: 'access_denied' });
    expect(String(json(refused[0]!).error_description)).toContain('disagree');
    expect(stack.tenant.tokenRequests()).toBe(1); // remembered: four asks cost nothing
    const other = await ask(vendor, REPORTING_ROLE_SESSION, 'read:orders');
    expect(other.statusCode).toBe(200);
    expect(stack.tenant.tokenRequests()).toBe(2);
  });
});

describe('a frozen instance', () => {
  it('records no fleet back-off when an attempt outlasted its own timeouts, and the next request is served', async () => {
    const clock = fakeClock();
    const table = await stack.newTable();
    let calls = 0;
    // Auth0 answers the first attempt 500 (a real failure), and the instance is frozen during the
    // retry (Lambda froze it after a response) and thawed a minute later in another invocation:
    // the retry then fails on its timeout. Two failed attempts, but only one is evidence.
    const fetchThatFreezes: typeof fetch = async (input, init) => {
      if (String(input).endsWith('/oauth/token')) {
        calls += 1;
        if (calls === 1) return Response.json({ error: 'server_error', error_description: 'boom' }, { status: 500 });
        if (calls === 2) {
          clock.advance(60_000);
          throw new DOMException('The operation was aborted due to timeout', 'TimeoutError');
        }
      }
      return fetch(input, init);
    };
    const vendor = stack.vendor({ env: { TOKEN_TABLE_NAME: table }, deps: { now: clock.now, fetch: fetchThatFreezes, sleep: async (ms) => clock.advance(ms) } });

    const first = await ask(vendor, CHECKOUT_ROLE_SESSION, 'read:orders');
    expect(first.statusCode).toBe(503);
    expect(calls).toBe(2);
    expect(await fleetBackoffs(table)).toBe(0);

    const second = await ask(vendor, CHECKOUT_ROLE_SESSION, 'read:orders');
    expect(second.statusCode).toBe(200);
    expect(stack.tenant.tokenRequests()).toBe(1);
  });

  it('but a healthy instance whose attempts all fail does pause the fleet (the protection still works)', async () => {
    const clock = fakeClock();
    const table = await stack.newTable();
    stack.tenant.setFault({ status: 500, body: { error: 'server_error', error_description: 'boom' } });
    const vendor = stack.vendor({ env: { TOKEN_TABLE_NAME: table }, deps: { now: clock.now, sleep: async (ms) => clock.advance(ms) } });

    const res = await ask(vendor, CHECKOUT_ROLE_SESSION, 'read:orders');

    expect(res.statusCode).toBe(503);
    expect(stack.tenant.tokenRequests()).toBeGreaterThanOrEqual(2);
    expect(await fleetBackoffs(table)).toBe(1);
  });
});

describe("Auth0's quota, seen before its 429", () => {
  it('the quota headers on successful answers are followed: new tokens stop at the reserve, the refresher may spend it, and Auth0 is never asked past it', async () => {
    const table = await stack.newTable();
    // Auth0's M2M quota for the orders client: 4 tokens an hour (docs/auth0-wire-behaviour.md §9).
    stack.tenant.setClientQuota('orders-client', { perHour: 4 });
    try {
      const vendor = stack.vendor({ env: { TOKEN_TABLE_NAME: table } });

      const first = [
        await ask(vendor, CHECKOUT_ROLE_SESSION, 'read:orders'), // Auth0: 3 left
        await ask(vendor, CHECKOUT_ROLE_SESSION, 'write:orders'), // 2 left
        await ask(vendor, CHECKOUT_ROLE_SESSION, 'read:orders write:orders'), // 1 left: the reserve (25 % of 4)
      ];
      await vendor.service.flush('orders');
      const pastReserve = await ask(vendor, REPORTING_ROLE_SESSION, 'read:orders');

      expect(first.map((r) => r.statusCode)).toEqual([200, 200, 200]);
      expect(pastReserve.statusCode).toBe(503);
      expect(Number(pastReserve.headers?.['Retry-After'])).toBeGreaterThan(0);
      expect(stack.tenant.tokenRequests()).toBe(3); // refused on Auth0's own count, without asking

      // The refresher (here: the prefetch of the reporting grant) may still spend the reserve.
      const report = await vendor.refresher.run();
      expect(report.refreshed).toBe(1);
      expect(stack.tenant.tokenRequests()).toBe(4);
      expect((await ask(vendor, REPORTING_ROLE_SESSION, 'read:orders')).statusCode).toBe(200);
      expect(stack.tenant.tokenRequests()).toBe(4);
    } finally {
      stack.tenant.setClientQuota('orders-client', null);
    }
  });
});
