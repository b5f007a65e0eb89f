/**
 * A fetch lease whose holder died is taken over well before the full lease (issue 9): the holder
 * takes the lease for LEASE_HOLD_MS at a time and renews it while it fetches, so a holder that
 * stops renewing (dead, frozen, cut off) lets the others in after about LEASE_HOLD_MS, inside
 * their LEASE_WAIT_MS, rather than after LEASE_TTL_MS, when every caller would already have had a
 * 503. Against moto and the local tenant, on the deployed settings at the suites' clock
 * (test/helpers/deployedSettings.ts): a hold of 0.6 s, a wait of 2.4 s, a whole-fetch bound of
 * 5 s. Assertions are counts: statuses, calls at the IdP, lease timeouts.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { APIGatewayProxyResult } from 'aws-lambda';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DynamoLeaseStore, classifyKey } from '../../functions/adapters/tokenTable.js';
import { loadConfig } from '../../functions/config.js';
import type { Observer } from '../../functions/core/ports.js';
import { localDynamoDb } from '../../local/seed.js';
import { countingObserver } from '../helpers/countingObserver.js';
import { scaled } from '../helpers/deployedSettings.js';
import { apiEvent } from '../helpers/events.js';
import { CHECKOUT_ROLE_SESSION, ORDERS, startTestStack, type TestStack } from '../helpers/testStack.js';

type Res = APIGatewayProxyResult;
const request = () => apiEvent({ body: JSON.stringify({ audience: ORDERS, scope: 'read:orders' }), userArn: CHECKOUT_ROLE_SESSION });
/** How many callers of the same token arrive while the holder is dead. */
const CALLERS = 5;

let stack: TestStack;
/** the settings every vendor of this file runs on */
let settings: { leaseHoldMs: number; leaseWaitMs: number; leaseTtlMs: number };

beforeAll(async () => {
  stack = await startTestStack({ tokenTtlSeconds: 3600 });
  settings = loadConfig(stack.env);
});
afterAll(async () => {
  await stack?.close();
});
beforeEach(() => {
  stack.tenant.resetCounters();
  stack.tenant.setFault(null);
});

/** An observer that counts, lease timeouts (503s for want of another's token) included. */
function counting(): { observer: Observer; counts: ReturnType<typeof countingObserver>['counts']; leaseTimeouts: () => number } {
  const { observer, counts } = countingObserver();
  let timeouts = 0;
  return { observer: { ...observer, leaseTimeout: () => void (timeouts += 1) }, counts, leaseTimeouts: () => timeouts };
}

/** A promise that never settles: a call into a dead or frozen instance. */
const never = <T>() => new Promise<T>(() => undefined);

/**
 * A DynamoDB client that works until the instance takes a token's fetch lease, then never answers
 * again (the instance died, was frozen or cut off right after): no renewal, no release.
 */
function dyingAfterLease(): { client: DynamoDBClient; leaseTaken: Promise<string> } {
  let dead = false;
  let taken!: (name: string) => void;
  const leaseTaken = new Promise<string>((resolve) => (taken = resolve));
  const client = localDynamoDb(stack.motoEndpoint);
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (dead) return never();
      const result = await next(args);
      const pk = (args.input as { Item?: { pk?: { S?: string } } }).Item?.pk?.S ?? '';
      const key = classifyKey(pk);
      if (context.commandName === 'PutItemCommand' && key.kind === 'lease' && key.name !== 'datakey') {
        dead = true;
        taken(key.name);
      }
      return result;
    },
    { step: 'initialize', name: 'dieAfterLease' },
  );
  return { client, leaseTaken };
}

/** The lease name of `request()`'s token: what a first fetch on a scratch table takes. */
async function leaseNameOfRequest(): Promise<string> {
  const { client, leaseTaken } = dyingAfterLease();
  const scout = stack.vendor({ env: { TOKEN_TABLE_NAME: await stack.newTable() }, deps: { dynamodb: client, fetch: () => never() } });
  void scout.handler(request());
  return leaseTaken;
}

describe('a dead lease holder is taken over well before the full lease', () => {
  it('the settings: the hold ends well inside the wait, and the whole-fetch bound outlasts the wait', () => {
    expect(settings.leaseHoldMs).toBeLessThan(settings.leaseWaitMs / 2);
    expect(settings.leaseTtlMs).toBeGreaterThan(settings.leaseWaitMs);
  });

  it('a lease an owner took and never renewed: the callers of that token are served, with one IdP call', async () => {
    const name = await leaseNameOfRequest();
    const table = await stack.newTable();
    // An owner that took the lease for one hold, as every holder does, and died at once.
    const dead = new DynamoLeaseStore({ client: stack.dynamodb, tableName: table });
    expect(await dead.acquireLease(name, 'a-dead-instance', Date.now() + settings.leaseHoldMs)).toBe(true);
    stack.tenant.resetCounters();
    const { observer, counts, leaseTimeouts } = counting();
    const vendor = stack.vendor({ env: { TOKEN_TABLE_NAME: table }, deps: { observer } });

    const statuses = (await Promise.all(Array.from({ length: CALLERS }, () => vendor.handler(request())))).map((r) => (r as Res).statusCode);

    expect(statuses).toEqual(Array.from({ length: CALLERS }, () => 200));
    expect(stack.tenant.tokenRequests()).toBe(1);
    expect(leaseTimeouts()).toBe(0);
    expect(counts.leaseWait).toBeGreaterThan(0); // they did find it held, and waited
    await vendor.service.idle();
  });

  it('a vendor instance that dies holding the lease: another instance serves the callers of that token, with one IdP call', async () => {
    const table = await stack.newTable();
    // Instance A takes the lease for its fetch, then dies: its DynamoDB calls and its IdP call never return.
    const { client, leaseTaken } = dyingAfterLease();
    const holder = stack.vendor({ env: { TOKEN_TABLE_NAME: table }, deps: { dynamodb: client, fetch: () => never() } });
    void holder.handler(request());
    await leaseTaken;
    // Instance B's callers arrive while A's lease is still held.
    const { observer, counts, leaseTimeouts } = counting();
    const vendor = stack.vendor({ env: { TOKEN_TABLE_NAME: table }, deps: { observer } });

    const statuses = (await Promise.all(Array.from({ length: CALLERS }, () => vendor.handler(request())))).map((r) => (r as Res).statusCode);

    // With the lease held for the whole LEASE_TTL_MS, every one of them would have had a 503 after LEASE_WAIT_MS.
    expect(statuses).toEqual(Array.from({ length: CALLERS }, () => 200));
    expect(stack.tenant.tokenRequests()).toBe(1); // A never reached the IdP; B fetched once for all
    expect(leaseTimeouts()).toBe(0);
    expect(counts.leaseWait).toBeGreaterThan(0);
    await vendor.service.idle();
  });

  it('a live holder whose work outlasts its hold keeps its lease by renewing it: the others wait for its token, one IdP call in all', async () => {
    const table = await stack.newTable();
    // A clock half as fast as the other tests': a renewal (a DynamoDB write, every third of a
    // hold) then has 0.5 s to land on a loaded machine, as it has 1 s against DynamoDB in production.
    const timeScale = 0.5;
    const leaseHoldMs = Number(scaled(timeScale).LEASE_HOLD_MS);
    // A's write of the token it fetched takes two holds (a slow DynamoDB): without renewal its
    // lease would lapse meanwhile, and B would take it over and fetch too.
    const slowMs = 2 * leaseHoldMs;
    expect(slowMs).toBeLessThan(Number(scaled(timeScale).LEASE_WAIT_MS)); // B's callers, arriving as A writes, wait it out
    let fetched!: () => void;
    const holderFetched = new Promise<void>((resolve) => (fetched = resolve));
    const slowWrites = localDynamoDb(stack.motoEndpoint);
    slowWrites.middlewareStack.add(
      (next, context) => async (args) => {
        const pk = (args.input as { Item?: { pk?: { S?: string } } }).Item?.pk?.S ?? '';
        if (context.commandName === 'PutItemCommand' && classifyKey(pk).kind === 'token') {
          fetched();
          await new Promise((resolve) => setTimeout(resolve, slowMs));
        }
        return next(args);
      },
      { step: 'initialize', name: 'slowTokenWrites' },
    );
    const holder = stack.vendor({ env: { TOKEN_TABLE_NAME: table }, deps: { dynamodb: slowWrites }, timeScale });
    const holderCall = holder.handler(request());
    await holderFetched;
    const { observer, leaseTimeouts } = counting();
    const vendor = stack.vendor({ env: { TOKEN_TABLE_NAME: table }, deps: { observer }, timeScale });

    const statuses = (await Promise.all([holderCall, ...Array.from({ length: CALLERS }, () => vendor.handler(request()))])).map((r) => (r as Res).statusCode);

    expect(statuses).toEqual(Array.from({ length: CALLERS + 1 }, () => 200));
    expect(stack.tenant.tokenRequests()).toBe(1);
    expect(leaseTimeouts()).toBe(0);
    await Promise.all([holder.service.idle(), vendor.service.idle()]);
  });
});
