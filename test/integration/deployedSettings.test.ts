/**
 * The promises of the resilience table, kept with exactly the settings serverless.yml deploys (no
 * faster clock, no override): a transient Auth0 failure is retried inside the deadline and the
 * caller gets its token, and one failed attempt never pauses the fleet. IdP requests are counted
 * at the IdP; back-offs are read from the table.
 */
import type { APIGatewayProxyResult } from 'aws-lambda';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../functions/config.js';
import type { TokenFault } from '../../local/auth0Tenant.js';
import { deployedSettings } from '../helpers/deployedSettings.js';
import { apiEvent } from '../helpers/events.js';
import { CHECKOUT_ROLE_SESSION, ORDERS, startTestStack, type TestStack } from '../helpers/testStack.js';

type Res = APIGatewayProxyResult;
const request = (scope: string) => apiEvent({ body: JSON.stringify({ audience: ORDERS, scope }), userArn: CHECKOUT_ROLE_SESSION });

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack({ timeScale: 1 });
});
afterAll(async () => {
  await stack?.close();
});
beforeEach(() => {
  stack.tenant.resetCounters();
  stack.tenant.setFault(null);
});

/**
 * The IdP answers `fault` to the next token request, and normally after it: the fault is cleared
 * once that request has been answered (or given up on), as a blip at Auth0 would pass.
 */
function faultOnce(fault: TokenFault): typeof fetch {
  stack.tenant.setFault(fault);
  return async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    try {
      return await fetch(input, init);
    } finally {
      if (url.pathname === '/oauth/token') stack.tenant.setFault(null);
    }
  };
}

/** A vendor on the deployed settings, on a table of its own (its back-offs stay in it). */
async function deployedVendor(fetchImpl?: typeof fetch) {
  const table = await stack.newTable();
  return { table, vendor: stack.vendor({ env: { TOKEN_TABLE_NAME: table }, ...(fetchImpl ? { deps: { fetch: fetchImpl } } : {}) }) };
}

describe('the deployed settings', () => {
  it('are what the stack runs on, and leave room for one whole retry after one whole failed attempt', () => {
    const deployed = deployedSettings();
    for (const [name, value] of Object.entries(deployed)) expect([name, stack.env[name]]).toEqual([name, value]);
    const config = loadConfig(stack.env);
    expect(config.idpDeadlineMs).toBeGreaterThanOrEqual(2 * config.idpAttemptMs + config.retryBaseMs);
  });

  it('one Auth0 500, then success: the caller gets 200, Auth0 saw 2 token requests, no fleet back-off', async () => {
    const { table, vendor } = await deployedVendor(faultOnce({ status: 500, body: { error: 'server_error', error_description: 'blip' } }));

    const res = (await vendor.handler(request('read:orders'))) as Res;

    expect(res.statusCode).toBe(200);
    expect(stack.tenant.tokenRequests()).toBe(2);
    expect((await vendor.store.inspect()).backoffs).toEqual([]);
    // and the fleet is not paused: another instance on the same table fetches another token at once
    const other = stack.vendor({ env: { TOKEN_TABLE_NAME: table } });
    expect(((await other.handler(request('write:orders'))) as Res).statusCode).toBe(200);
    expect(stack.tenant.tokenRequests()).toBe(3);
  });

  it('one Auth0 timeout, then success: the caller gets 200, Auth0 saw 2 token requests, no fleet back-off', async () => {
    const { vendor } = await deployedVendor(faultOnce('hang'));

    const res = (await vendor.handler(request('read:orders'))) as Res;

    expect(res.statusCode).toBe(200);
    expect(stack.tenant.tokenRequests()).toBe(2);
    expect((await vendor.store.inspect()).backoffs).toEqual([]);
  });

  it('Auth0 failing on every attempt: 5 attempts inside the deadline, then 503 and a fleet back-off', async () => {
    stack.tenant.setFault({ status: 500, body: { error: 'server_error', error_description: 'down' } });
    const { vendor } = await deployedVendor();
    const started = Date.now();

    const res = (await vendor.handler(request('read:orders'))) as Res;

    expect(res.statusCode).toBe(503);
    expect(Date.now() - started).toBeLessThan(Number(deployedSettings().IDP_DEADLINE_MS));
    expect(stack.tenant.tokenRequests()).toBe(5);
    const { backoffs } = await vendor.store.inspect();
    expect(backoffs.map((b) => b.reason)).toEqual(['unavailable']);
    expect(Number(res.headers?.['Retry-After'])).toBeGreaterThanOrEqual(Number(deployedSettings().FAILURE_BACKOFF_SECONDS));
  });
});
