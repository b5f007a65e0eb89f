/**
 * `npm start` with the user's grants (issue 11, items 1, 5 and 7): the local stack
 * (local/localStack.ts, run in a child process as `npm start` runs it, on a free port, with its
 * own state directory and bundles built here as scripts/build.mjs builds them) serves a custom
 * grants file, and every command it prints vends its grant when run exactly as printed. A second
 * start over it is refused before anything starts and changes none of its files; a bad grants file
 * is one line and exit 2.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { functionBundleOptions } from '../../scripts/esbuildOptions.mjs';
import { runCommand, type Run } from '../helpers/runCommand.js';

const REPO = resolve(import.meta.dirname, '../..');
const ORDERS = 'https://orders.example.com';
const BILLING = 'https://billing.example.com';
const LEDGER = 'https://ledger.example.com';
const CHECKOUT = 'arn:aws:iam::111122223333:role/checkout-service';
const REPORTING = 'arn:aws:iam::111122223333:role/reporting-*';
const ALICE = 'arn:aws:iam::444455556666:user/finance/alice';
const LEDGER_ROLE = 'arn:aws:iam::111122223333:role/ledger';

/**
 * Two audiences served by two clients of another tenant's domains, one of them client_secret_basic;
 * a wildcard principal in two grants; a private_key_jwt client whose secret is named by ARN and a
 * role pinned to its unique id; a client rotated by a management client without grants.
 */
const GRANTS = {
  clients: {
    'orders-m2m': { domain: 'example-tenant.eu.auth0.com', secretId: 'token-vendor/orders-m2m', authMethod: 'client_secret_post', rotation: { managementClient: 'auth0-rotator' } },
    'billing-m2m': { domain: 'billing-tenant.us.auth0.com', secretId: 'token-vendor/billing-m2m', authMethod: 'client_secret_basic' },
    'ledger-m2m': { domain: 'billing-tenant.us.auth0.com', secretId: 'arn:aws:secretsmanager:eu-west-1:111122223333:secret:token-vendor/ledger-m2m-AbCdEf', authMethod: 'private_key_jwt' },
    'auth0-rotator': { domain: 'example-tenant.eu.auth0.com', secretId: 'token-vendor/auth0-rotator' },
  },
  grants: [
    { principals: [CHECKOUT], client: 'orders-m2m', audience: ORDERS, scopes: ['read:orders', 'write:orders'] },
    { principals: [REPORTING], client: 'orders-m2m', audience: ORDERS, scopes: ['read:orders'] },
    { principals: [REPORTING, ALICE], client: 'billing-m2m', audience: BILLING, scopes: ['read:invoices', 'read:customers'] },
    { principals: [{ arn: LEDGER_ROLE, uniqueId: 'AROAEXAMPLELEDGER0001' }], client: 'ledger-m2m', audience: LEDGER, scopes: ['read:ledger'] },
  ],
};

/** A key the state directory already holds: kept as it is, and first. */
const EXISTING_KEY = { accessKeyId: 'AKIAEXISTINGKEY00001', secretAccessKey: 'existing-secret', principalArn: CHECKOUT, sessionName: 'local-caller' };


let root: string;
let stateDir: string;
let grantsFile: string;
let stack: ChildProcess | undefined;
let stackOut = '';
let stackErr = '';
let stalePid: number;

/** A child's environment: no AWS credentials of this machine, nothing of the test run's. */
function childEnv(extra: Record<string, string>): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    ...(process.env.HOME === undefined ? {} : { HOME: process.env.HOME }),
    AWS_CONFIG_FILE: '/nonexistent',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    ...extra,
  };
}

function run(command: string, args: string[], env: Record<string, string>): Promise<Run> {
  return runCommand(command, args, { cwd: REPO, env: childEnv(env) });
}

/** A printed command line, run by a shell exactly as printed. */
function shell(line: string): Promise<Run> {
  return run('sh', ['-c', line], {});
}

/** `npm start`'s own process (what dist/local/stack.mjs runs), from source. */
function startEntry(args: string[], env: Record<string, string>): Promise<Run> {
  return run(process.execPath, ['--import', 'tsx', join(REPO, 'local/stack.ts'), ...args], env);
}

/** Every file of a directory, by name, with its bytes. */
function snapshot(dir: string): Record<string, string> {
  return Object.fromEntries(readdirSync(dir).map((name) => [name, readFileSync(join(dir, name)).toString('base64')]));
}

function printedCommands(): string[] {
  return stackOut
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => /^(TOKEN_VENDOR_LOCAL_DIR=\S+ )?npm run -s token -- /.test(line));
}

function stackState(): { pid: number; port: number; gatewayUrl: string } {
  return JSON.parse(readFileSync(join(stateDir, 'stack.json'), 'utf8')) as { pid: number; port: number; gatewayUrl: string };
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'local-stack-'));
  stateDir = join(root, 'state');
  grantsFile = join(root, 'my-grants.json');
  writeFileSync(grantsFile, JSON.stringify(GRANTS, null, 2));
  // The bundles npm start serves, built with the deployed options (scripts/build.mjs).
  const bundles = join(root, 'dist');
  for (const name of ['vend', 'refresh']) {
    await build(functionBundleOptions(join(REPO, 'functions', `${name}.ts`), join(bundles, name)));
    writeFileSync(join(bundles, name, 'package.json'), '{ "type": "module" }\n');
  }
  // What a stack killed with SIGKILL leaves: its state file, naming a process that is gone.
  const dead = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((done) => dead.once('exit', done));
  stalePid = dead.pid ?? 0;
  mkdirSync(stateDir);
  writeFileSync(join(stateDir, 'stack.json'), JSON.stringify({ pid: stalePid, port: 3000, gatewayUrl: 'http://127.0.0.1:3000/local', stsOrigin: 'x', lambdaOrigin: 'x', functionName: 'x', serverId: 'x', region: 'x', grantsFile: 'x', startedAt: 'x' }));
  writeFileSync(join(stateDir, 'credentials.json'), JSON.stringify([EXISTING_KEY]));

  const main = `const { runLocalStack } = await import(${JSON.stringify(join(REPO, 'local/localStack.ts'))}); await runLocalStack({ argv: ${JSON.stringify(['--grants', grantsFile])}, env: process.env, bundleDir: ${JSON.stringify(bundles)} });`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', main], {
    cwd: REPO,
    env: childEnv({ PORT: '0', TOKEN_VENDOR_LOCAL_DIR: stateDir }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  stack = child;
  await new Promise<void>((ready, fail) => {
    child.stdout?.on('data', (d: Buffer) => {
      stackOut += d.toString();
      if (stackOut.includes('Ctrl-C stops everything.')) ready();
    });
    child.stderr?.on('data', (d: Buffer) => (stackErr += d.toString()));
    child.once('exit', (code) => fail(new Error(`the stack exited (${code}): ${stackErr}`)));
  });
}, 90_000);

afterAll(async () => {
  if (stack !== undefined && stack.exitCode === null) {
    const exited = new Promise((done) => stack?.once('exit', done));
    stack.kill('SIGTERM');
    await exited;
  }
  if (root !== undefined) rmSync(root, { recursive: true, force: true });
});

describe('npm start serves the grants file it is given', () => {
  it('replaces the stale state file, keeps the existing key first and adds one per granted principal (a wildcard as an example)', () => {
    const state = stackState();
    const keys = JSON.parse(readFileSync(join(stateDir, 'credentials.json'), 'utf8')) as Array<{ principalArn: string; uniqueId?: string }>;

    expect(state.pid).toBe(stack?.pid);
    expect(state.pid).not.toBe(stalePid);
    expect(stackOut).toContain(`replaced the state of a stack that no longer runs (its process ${stalePid} is gone)`);
    expect(keys[0]).toEqual(EXISTING_KEY);
    expect(keys.map((k) => k.principalArn)).toEqual([CHECKOUT, 'arn:aws:iam::111122223333:role/reporting-example', ALICE, LEDGER_ROLE]);
    expect(keys.find((k) => k.principalArn === LEDGER_ROLE)?.uniqueId).toBe('AROAEXAMPLELEDGER0001');
  });

  it("prints the served file's counts, and the vendor's grants file differs from the user's only in its domains (and the ARN-named secret)", () => {
    const served = JSON.parse(readFileSync(join(stateDir, 'grants.local.json'), 'utf8')) as typeof GRANTS;
    const origin = /domains set to (http:\/\/127\.0\.0\.1:\d+)/.exec(stackOut)?.[1];

    expect(stackOut).toMatch(/: 4 client\(s\), 4 grant\(s\), 3 audience\(s\)\n/);
    expect(served.grants).toEqual(GRANTS.grants);
    expect(Object.keys(served.clients)).toEqual(Object.keys(GRANTS.clients));
    for (const [name, client] of Object.entries(served.clients)) {
      const own = GRANTS.clients[name as keyof typeof GRANTS.clients];
      const { domain, secretId, ...rest } = client as Record<string, unknown>;
      const { domain: _d, secretId: ownSecretId, ...ownRest } = own as Record<string, unknown>;
      expect(domain).toBe(origin);
      expect(rest).toEqual(ownRest);
      if (name === 'ledger-m2m') expect(secretId).toMatch(/^arn:aws:secretsmanager:eu-west-1:\d{12}:secret:token-vendor\/ledger-m2m-\w{6}$/);
      else expect(secretId).toBe(ownSecretId);
    }
  });

  it('every printed command vends its grant, run exactly as printed', async () => {
    const commands = printedCommands();
    // One per grant, and one by direct invocation.
    expect(commands).toHaveLength(GRANTS.grants.length + 1);

    for (const line of commands) {
      const audience = /--audience (\S+)/.exec(line)?.[1] ?? '';
      const scope = /--scope "([^"]*)"/.exec(line)?.[1] ?? '';
      const result = await shell(line);

      expect({ line, code: result.code }).toEqual({ line, code: 0 });
      const claims = decodeJwt(result.stdout.trim());
      expect(claims.aud).toContain(audience);
      expect(String(claims.scope).split(' ').sort()).toEqual(scope.split(' ').sort());
    }
  });

  it("the grants are the user's: a principal gets no audience its grants do not give it", async () => {
    const billing = printedCommands().find((line) => line.includes(`--audience ${BILLING}`)) ?? '';

    const refused = await shell(billing.replace(/--as \S+/, `--as ${CHECKOUT}`));

    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(/token: access_denied 403: .*billing\.example\.com/);
  });
});

describe('one stack at a time', () => {
  it("a second start on the same port and state directory is refused before anything starts, naming the running stack and PORT; the first one's files are unchanged and it still answers", async () => {
    const { port, pid, gatewayUrl } = stackState();
    const before = snapshot(stateDir);

    const second = await startEntry(['--grants', grantsFile], { PORT: String(port), TOKEN_VENDOR_LOCAL_DIR: stateDir });

    expect(second.code).toBe(1);
    expect(second.stdout).toBe('');
    expect(second.stderr).toContain(`a local stack is already running from ${stateDir}: pid ${pid}, ${gatewayUrl}`);
    expect(second.stderr).toMatch(/PORT=\d+ TOKEN_VENDOR_LOCAL_DIR=\S+ npm start/);
    expect(snapshot(stateDir)).toEqual(before);
    const first = printedCommands()[0] ?? '';
    expect((await shell(first)).code).toBe(0);
  });

  it('a second start with another PORT but the same state directory is refused too: the files are shared', async () => {
    const before = snapshot(stateDir);

    const second = await startEntry(['--grants', grantsFile], { PORT: '0', TOKEN_VENDOR_LOCAL_DIR: stateDir });

    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`pid ${stackState().pid}`);
    expect(snapshot(stateDir)).toEqual(before);
  });

  it('a start on a port another program holds names the port and how to choose another PORT, and writes nothing', async () => {
    const { port } = stackState();
    const otherDir = join(root, 'other-state');

    const second = await startEntry(['--grants', grantsFile], { PORT: String(port), TOKEN_VENDOR_LOCAL_DIR: otherDir });

    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(new RegExp(`^npm start: PORT=${port}: 127\\.0\\.0\\.1:${port} is in use by another program .*\\n  Choose another port: PORT=\\d+ npm start`));
    expect(existsSync(otherDir)).toBe(false);
  });
});

describe('a bad grants file', () => {
  it('one line naming the field, exit 2, nothing started or written', async () => {
    const bad = join(root, 'bad-grants.json');
    writeFileSync(bad, JSON.stringify({ ...GRANTS, grants: [{ ...GRANTS.grants[0], scopes: [] }] }));
    const otherDir = join(root, 'bad-state');

    const result = await startEntry(['--grants', bad], { PORT: '0', TOKEN_VENDOR_LOCAL_DIR: otherDir });

    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(`npm start: invalid grants: ${bad}: grants[0].scopes: must be a non-empty array of scope strings\n`);
    expect(existsSync(otherDir)).toBe(false);
  });
});
