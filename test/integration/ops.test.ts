/**
 * `npm run ops -- …` against the local stack (moto_server and the Auth0 tenant), run as the
 * operator runs it: a separate process, with an environment file.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import type { APIGatewayProxyResult } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiEvent } from '../helpers/events.js';
import { ORDERS, startTestStack, type TestStack } from '../helpers/testStack.js';

const execFileAsync = promisify(execFile);
let stack: TestStack;
let envFile: string;
beforeAll(async () => {
  stack = await startTestStack();
  envFile = `${stack.grantsFile}.ops-env.json`;
  writeFileSync(envFile, JSON.stringify({ ...stack.env, TOKEN_TABLE_NAME: stack.tableName }));
});
afterAll(async () => {
  await stack?.close();
});

/** Asynchronous: the Auth0 tenant answers from this process. */
async function ops(...args: string[]): Promise<{ stdout: string; json: Record<string, unknown> }> {
  const { stdout } = await execFileAsync(process.execPath, ['--import', 'tsx', 'ops/cli.ts', ...args, '--env-file', envFile, '--json'], {
    env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    encoding: 'utf8',
  });
  return { stdout, json: JSON.parse(stdout) as Record<string, unknown> };
}

/** As an operator reads it: text on stdout, no --json. */
async function opsText(...args: string[]): Promise<string[]> {
  const { stdout } = await execFileAsync(process.execPath, ['--import', 'tsx', 'ops/cli.ts', ...args, '--env-file', envFile], {
    env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    encoding: 'utf8',
  });
  return stdout.trimEnd().split('\n');
}

const request = (scope: string) => apiEvent({ body: JSON.stringify({ audience: ORDERS, scope }) });
const token = (res: unknown) => (JSON.parse((res as APIGatewayProxyResult).body) as { access_token: string }).access_token;

describe('npm run ops', () => {
  it('status shows the cache by fingerprint, never a token', async () => {
    const issued = token(await stack.vendor().handler(request('read:orders')));
    const { stdout, json } = await ops('status');
    const tokens = json.tokens as Array<Record<string, unknown>>;
    expect(tokens).toEqual([expect.objectContaining({ client: 'orders', audience: ORDERS, scopes: 'read:orders', fingerprint: expect.any(String), expiresIn: expect.any(Number) })]);
    expect(stdout.includes(issued)).toBe(false);
  });

  it('refresh replaces a client’s tokens with new ones from the IdP now', async () => {
    const before = (await ops('status')).json.tokens as Array<{ fingerprint: string }>;
    stack.tenant.resetCounters();
    const { json } = await ops('refresh', '--client', 'orders');
    expect(json.refreshed).toEqual([{ audience: ORDERS, scopes: ['read:orders'], outcome: 'refreshed' }]);
    expect(stack.tenant.tokenRequests()).toBe(1);
    const after = (await ops('status')).json.tokens as Array<{ fingerprint: string }>;
    expect(after[0]?.fingerprint).not.toBe(before[0]?.fingerprint);
  });

  it('flush removes a client’s tokens; running instances drop theirs at their next revalidation', async () => {
    // A clock the test moves past the deployed revalidation interval (on the suite's clock).
    const clock = { t: Date.now() };
    const vendor = stack.vendor({ deps: { now: () => clock.t } });
    const served = token(await vendor.handler(request('read:orders')));
    stack.tenant.resetCounters();

    const { json } = await ops('flush', '--client', 'orders', '--audience', ORDERS);
    expect(json.flushed).toBe(1);
    expect(((await ops('status')).json.tokens as unknown[]).length).toBe(0);

    clock.t += Number(stack.env.MEMORY_REVALIDATE_SECONDS) * 1000 + 100;
    const next = token(await vendor.handler(request('read:orders')));
    expect(next === served).toBe(false);
    expect(stack.tenant.tokenRequests()).toBe(1);
  });

  it('says so when a flush matched nothing, and removes nothing', async () => {
    await stack.vendor().handler(request('read:orders'));
    const before = ((await ops('status')).json.tokens as unknown[]).length;
    expect(before).toBeGreaterThan(0);
    expect(await opsText('flush', '--client', 'orders', '--audience', 'https://nothing.example.com')).toEqual([
      `flush matched nothing: no cached token of orders for https://nothing.example.com in table ${stack.tableName}; nothing removed`,
    ]);
    expect(((await ops('status')).json.tokens as unknown[]).length).toBe(before);
  });

  it('prints each table with a header row naming its columns', async () => {
    await stack.vendor().handler(request('read:orders'));
    const status = await opsText('status');
    expect(status[0]).toMatch(new RegExp(`^table ${stack.tableName}: 1 token\\(s\\), `));
    expect(status[1]).toMatch(/^ {2}fingerprint +client +audience +scopes +organization +expires in +expires at +fetched at +last used at$/);
    expect(status[2]).toMatch(new RegExp(`^  \\S{12} +orders +${ORDERS.replace(/[.]/g, '\\.')} +read:orders +- +\\d+ s +`));
    const refreshed = await opsText('refresh', '--client', 'orders');
    expect(refreshed).toEqual([expect.stringMatching(/^outcome +audience +scopes +organization$/), expect.stringMatching(new RegExp(`^refreshed +${ORDERS.replace(/[.]/g, '\\.')}  +read:orders +-$`))]);
  });

  it('refuses an unknown client, naming the known ones', async () => {
    await expect(ops('flush', '--client', 'nope')).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('known: orders, billing') });
  });
});
