/**
 * A token lifetime lowered in Auth0 (the API's "Token Expiration" setting) is adopted, not
 * refetched on every run of the refresher: the newest fetch wins in the table. Against the local
 * tenant and moto_server, with the deployed settings, on a simulated clock that the tenant and the
 * vendor share (this file's process only: vitest runs each file in its own process).
 */
import type { APIGatewayProxyResult } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiEvent } from '../helpers/events.js';
import { CHECKOUT_ROLE_SESSION, ORDERS, startTestStack, type TestStack } from '../helpers/testStack.js';

// Simulated time: oidc-provider stamps iat/exp from Date.now(), and the vendor's clock defaults to it.
const realNow = Date.now.bind(Date);
let offsetMs = 0;

let stack: TestStack;
beforeAll(async () => {
  Date.now = () => realNow() + offsetMs;
  stack = await startTestStack({ tokenTtlSeconds: 3600 });
  // The callers sign their identity proofs, and STS judges them, on the same simulated clock.
  stack.sts.setNow(() => new Date(Date.now()));
});
afterAll(async () => {
  await stack?.close();
  Date.now = realNow;
});

describe('a lifetime lowered in Auth0', () => {
  it('costs one fetch per refresh point, never one per refresher run', async () => {
    const table = await stack.newTable();
    // Exactly the deployed settings (timeScale 1): the clock below is what moves.
    const vendor = stack.vendor({ env: { TOKEN_TABLE_NAME: table }, timeScale: 1 });
    const ask = async () =>
      ((await vendor.handler(apiEvent({ body: JSON.stringify({ audience: ORDERS, scope: 'read:orders' }), userArn: CHECKOUT_ROLE_SESSION, proofAt: Date.now() }))) as APIGatewayProxyResult).statusCode;

    expect(await ask()).toBe(200); // a 3600 s token
    stack.tenant.setTokenTtl(ORDERS, 600); // from now on Auth0 issues 600 s tokens
    stack.tenant.resetCounters();

    const fetchMinutes: number[] = [];
    const statuses: number[] = [];
    for (let minute = 1; minute <= 90; minute += 1) {
      offsetMs = minute * 60_000;
      const before = stack.tenant.tokenRequests();
      await vendor.refresher.run(); // the schedule: every minute
      statuses.push(await ask());
      await vendor.service.idle();
      if (stack.tenant.tokenRequests() > before) fetchMinutes.push(minute);
    }

    // The 3600 s token is refreshed once near its refresh point (45 min less the refresher's
    // 5 min look-ahead), which brings a 600 s token; from then on one fetch per 600 s token's
    // refresh point (150 s left, 300 s look-ahead: every 2 to 3 minutes). The old rule (the
    // later expiry wins) kept the 3600 s token in the table and fetched on every run until it
    // expired.
    const gaps = fetchMinutes.slice(1).map((m, i) => m - fetchMinutes[i]!);
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(fetchMinutes[0]).toBeGreaterThanOrEqual(39);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(2);
    expect(stack.tenant.tokenRequests()).toBeLessThanOrEqual(Math.ceil((90 - fetchMinutes[0]!) / 2) + 1);
  }, 120_000);
});
