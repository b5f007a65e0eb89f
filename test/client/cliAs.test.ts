/**
 * `npm run token -- --local --as PRINCIPAL_ARN` (client/cli.ts, client/cliArgs.ts): the key of the
 * named principal signs, picked from the local stack's credentials.json; the gateway URL and the
 * STS and Lambda Invoke origins come from the stack's state file (stack.json, local/stackState.ts)
 * when no flag names them. Against the real vendor (test/client/vendorStack.ts), whose grants give
 * CHECKOUT read and write, and REPORTING read only.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTokenArgs } from '../../client/cliArgs.js';
import { ORDERS } from '../helpers/testStack.js';
import { REGION, SERVER_ID } from './fakes.js';
import { CHECKOUT, REPORTING, cleanEnv, startVendorStack, type VendorStack } from './vendorStack.js';
import { runCommand, type Run } from '../helpers/runCommand.js';

const REPO = resolve(import.meta.dirname, '../..');

let vs: VendorStack;
let dir: string;

beforeAll(async () => {
  vs = await startVendorStack();
  dir = mkdtempSync(join(tmpdir(), 'token-cli-as-'));
  writeFileSync(join(dir, 'credentials.json'), JSON.stringify([CHECKOUT, REPORTING]));
  // What local/localStack.ts writes while it runs (no invoke-local.env.json: stack.json suffices).
  writeFileSync(
    join(dir, 'stack.json'),
    JSON.stringify({
      pid: process.pid,
      port: vs.gateway.port,
      gatewayUrl: vs.gateway.url,
      stsOrigin: vs.sts.origin,
      lambdaOrigin: vs.lambda.origin,
      functionName: 'vend',
      serverId: SERVER_ID,
      region: REGION,
      grantsFile: 'grants.json',
      startedAt: new Date().toISOString(),
    }),
  );
});

afterAll(async () => {
  await vs?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});


/** `npm run token -- ...` as npm runs it (tsx client/cli.ts), with the test's state directory. */
function token(args: string[]): Promise<Run> {
  return runCommand(process.execPath, ['--import', 'tsx', join(REPO, 'client/cli.ts'), ...args], { cwd: REPO, env: cleanEnv({ TOKEN_VENDOR_LOCAL_DIR: dir }) });
}

/** The access token the tenant issued last for this scope (compared, never printed). */
function lastIssued(scope: string): string | undefined {
  return vs.stack.tenant.issued().filter((t) => t.audience === ORDERS && t.scope === scope).at(-1)?.accessToken;
}

describe('--as', () => {
  it('is parsed with --local only: elsewhere the default AWS chain signs', () => {
    expect(parseTokenArgs(['--local', '--as', REPORTING.principalArn, '--audience', ORDERS])).toMatchObject({ kind: 'run', local: true, as: REPORTING.principalArn });
    expect(parseTokenArgs(['--local', '--audience', ORDERS])).not.toHaveProperty('as');
    expect(parseTokenArgs(['--as', REPORTING.principalArn, '--audience', ORDERS, '--endpoint', 'https://x.example/prod', '--region', REGION, '--server-id', SERVER_ID])).toEqual({
      kind: 'error',
      message: '--as applies only with --local (it picks a key of the local stack)',
    });
  });

  it("signs with the named principal's key: its grants, not the first key's; the endpoint from stack.json", async () => {
    const asFirst = await token(['--local', '--audience', ORDERS, '--scope', 'write:orders']);
    const asReporting = await token(['--local', '--as', REPORTING.principalArn, '--audience', ORDERS, '--scope', 'write:orders']);
    const reportingRead = await token(['--local', '--as', REPORTING.principalArn, '--audience', ORDERS, '--scope', 'read:orders']);

    expect(asFirst.code).toBe(0);
    expect(asFirst.stdout === `${lastIssued('write:orders')}\n`).toBe(true);
    expect(asReporting).toMatchObject({ code: 1, stdout: '' });
    expect(asReporting.stderr).toMatch(/^token: access_denied 403: .*write:orders/);
    expect(reportingRead.code).toBe(0);
    expect(reportingRead.stdout === `${lastIssued('read:orders')}\n`).toBe(true);
  });

  it('--function without --lambda-endpoint: the Lambda Invoke origin from stack.json', async () => {
    const run = await token(['--local', '--as', REPORTING.principalArn, '--function', 'vend', '--audience', ORDERS, '--scope', 'read:orders']);

    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout === `${lastIssued('read:orders')}\n`).toBe(true);
  });

  it('a principal without a local key -> exit 1, naming it and the keys there are', async () => {
    const nobody = 'arn:aws:iam::111122223333:role/nobody';

    const run = await token(['--local', '--as', nobody, '--audience', ORDERS]);

    expect(run).toMatchObject({ code: 1, stdout: '' });
    expect(run.stderr).toContain(`holds no key for ${nobody}`);
    expect(run.stderr).toContain(CHECKOUT.principalArn);
  });
});
