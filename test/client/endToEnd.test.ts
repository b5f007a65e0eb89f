/**
 * The caller client and `npm run token` against the real vendor (test/client/vendorStack.ts), on
 * both paths: the API through the local gateway, and direct invocation through the local Invoke
 * API. The vendor proves each caller at the STS stand-in and applies that principal's grants.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenVendorClient } from '../../client/index.js';
import { ORDERS } from '../helpers/testStack.js';
import { REGION, SERVER_ID, caught } from './fakes.js';
import { CHECKOUT, REPORTING, cleanEnv, envKeysOf, keysOf, startVendorStack, type VendorStack } from './vendorStack.js';
import { runCommand, type Run } from '../helpers/runCommand.js';

const REPO = resolve(import.meta.dirname, '../..');

let vs: VendorStack;

beforeAll(async () => {
  vs = await startVendorStack();
});

afterAll(async () => {
  await vs?.close();
});

/** The access token the tenant issued last for this audience and scope (compared, never printed). */
function lastIssued(scope: string): string | undefined {
  return vs.stack.tenant.issued().filter((t) => t.audience === ORDERS && t.scope === scope).at(-1)?.accessToken;
}

describe('TokenVendorClient against the real vendor', () => {
  it('API path: the proven caller gets its grant, once per token lifetime', async () => {
    const client = new TokenVendorClient({ endpoint: vs.gateway.url, region: REGION, serverId: SERVER_ID, stsEndpoint: vs.sts.origin, credentials: keysOf(CHECKOUT) });
    vs.sts.resetCounters();

    const token = await client.getToken({ audience: ORDERS, scope: 'write:orders read:orders' });
    const again = await client.getToken({ audience: ORDERS, scope: 'read:orders write:orders' });

    expect(token.accessToken === lastIssued('read:orders write:orders')).toBe(true);
    expect(token.scope).toBe('read:orders write:orders');
    expect(again).toBe(token);
    expect(vs.sts.calls()).toBe(1);
  });

  it("direct invocation: a scheduler's role gets its own grant, and not another principal's", async () => {
    const reporting = new TokenVendorClient({ functionName: 'vend', lambdaEndpoint: vs.lambda.origin, region: REGION, serverId: SERVER_ID, stsEndpoint: vs.sts.origin, credentials: keysOf(REPORTING) });
    const checkout = new TokenVendorClient({ functionName: 'vend', lambdaEndpoint: vs.lambda.origin, region: REGION, serverId: SERVER_ID, stsEndpoint: vs.sts.origin, credentials: keysOf(CHECKOUT) });

    const token = await reporting.getToken({ audience: ORDERS, scope: 'read:orders' });
    // write:orders is checkout-service's grant, not reporting-daily's
    const wider = await caught(reporting.getToken({ audience: ORDERS, scope: 'write:orders' }));
    const own = await checkout.getToken({ audience: ORDERS, scope: 'write:orders' });

    expect(token.accessToken === lastIssued('read:orders')).toBe(true);
    expect(wider).toMatchObject({ status: 403, code: 'access_denied' });
    expect(own.accessToken === lastIssued('write:orders')).toBe(true);
  });

  it('direct invocation: STS unreachable -> 503 temporarily_unavailable with the retry_after the vendor sent', async () => {
    const client = new TokenVendorClient({ functionName: 'vend', lambdaEndpoint: vs.lambda.origin, region: REGION, serverId: SERVER_ID, stsEndpoint: vs.sts.origin, credentials: keysOf(REPORTING) });
    vs.sts.setFault('outage');
    try {
      // No scope: a request no earlier test made, so its proof is new to the vendor (a proof it
      // already proved for the same request within its window is not sent to STS again).
      const error = await caught(client.getToken({ audience: ORDERS }));

      expect(error).toMatchObject({ status: 503, code: 'temporarily_unavailable' });
      expect(error.retryAfterSeconds).toEqual(expect.any(Number));
    } finally {
      vs.sts.setFault(null);
    }
  });
});


/** `npm run token -- ...` as npm runs it (tsx client/cli.ts), without npm's own output. */
function token(args: string[], env: Record<string, string>): Promise<Run> {
  return runCommand(process.execPath, ['--import', 'tsx', join(REPO, 'client/cli.ts'), ...args], { cwd: REPO, env: cleanEnv(env) });
}

describe('npm run token', () => {
  it('--endpoint: prints only the token, credentials from the default AWS chain', async () => {
    const run = await token(['--audience', ORDERS, '--scope', 'read:orders', '--endpoint', vs.gateway.url, '--region', REGION, '--server-id', SERVER_ID, '--sts-endpoint', vs.sts.origin], envKeysOf(CHECKOUT));

    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout === `${lastIssued('read:orders')}\n`).toBe(true);
  });

  it('--function with the environment for the rest: direct invocation', async () => {
    const env = { ...envKeysOf(REPORTING), AWS_REGION: REGION, TOKEN_VENDOR_SERVER_ID: SERVER_ID, TOKEN_VENDOR_STS_ENDPOINT: vs.sts.origin };

    const run = await token(['--audience', ORDERS, '--function', 'vend', '--lambda-endpoint', vs.lambda.origin], env);

    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout === `${lastIssued('read:orders')}\n`).toBe(true);
  });

  it('--local: the caller key, STS stand-in, server id and region from the running stack\'s state', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'token-cli-'));
    try {
      writeFileSync(join(dir, 'credentials.json'), JSON.stringify([CHECKOUT, REPORTING]));
      // What local/stack.ts writes while it runs; its AWS keys are the emulator's and must not sign.
      const stackEnv = { STS_ENDPOINT: vs.sts.origin, PROOF_SERVER_ID: SERVER_ID, AWS_REGION: REGION, AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing' };
      writeFileSync(join(dir, 'invoke-local.env.json'), JSON.stringify(stackEnv));

      const run = await token(['--local', '--audience', ORDERS, '--scope', 'read:orders', '--endpoint', vs.gateway.url], { TOKEN_VENDOR_LOCAL_DIR: dir });

      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expect(run.stdout === `${lastIssued('read:orders')}\n`).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--local with no stack running -> exit 1, saying so', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'token-cli-'));
    try {
      writeFileSync(join(dir, 'credentials.json'), JSON.stringify([CHECKOUT]));

      const stopped = await token(['--local', '--audience', ORDERS], { TOKEN_VENDOR_LOCAL_DIR: dir });
      const never = await token(['--local', '--audience', ORDERS], { TOKEN_VENDOR_LOCAL_DIR: join(dir, 'missing') });

      for (const run of [stopped, never]) {
        expect(run).toMatchObject({ code: 1, stdout: '' });
        expect(run.stderr).toContain('is the local stack running (npm start)?');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a refusal -> exit 1, one line on stderr with the code, nothing on stdout', async () => {
    const run = await token(['--audience', ORDERS, '--scope', 'admin:orders', '--endpoint', vs.gateway.url, '--region', REGION, '--server-id', SERVER_ID, '--sts-endpoint', vs.sts.origin], envKeysOf(CHECKOUT));

    expect(run).toMatchObject({ code: 1, stdout: '' });
    expect(run.stderr).toMatch(/^token: access_denied 403: The token vendor answered 403 access_denied: .*admin:orders.*\n$/);
  });

  it('no credentials anywhere -> exit 1, credentials_unavailable', async () => {
    const run = await token(['--audience', ORDERS, '--endpoint', vs.gateway.url, '--region', REGION, '--server-id', SERVER_ID], {});

    expect(run).toMatchObject({ code: 1, stdout: '' });
    expect(run.stderr).toMatch(/^token: credentials_unavailable: /);
  });

  it.each([
    [['--help'], 0],
    [['--audience', ORDERS], 2],
    [['--audience', ORDERS, '--endpoint', 'https://x.example/prod', '--function', 'vend', '--region', REGION, '--server-id', SERVER_ID], 2],
    [['--audience', ORDERS, '--endpoint', 'https://x.example/prod', '--region', REGION], 2],
    [['--audience', ORDERS, '--endpoint', 'https://x.example/prod', '--region', 'not a region', '--server-id', SERVER_ID], 2],
    [['--audience', ORDERS, '--unknown'], 2],
  ])('%j -> exit %i, nothing on stdout but the usage for --help', async (args, code) => {
    const run = await token(args, {});

    expect(run.code).toBe(code);
    if (code === 0) expect(run.stdout).toContain('usage: npm run -s token');
    else expect(run.stdout).toBe('');
  });
});
