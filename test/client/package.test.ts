/**
 * The caller client as a service in another repository gets it: `npm pack ./client` (its
 * `prepack` builds client/dist), the tarball installed into an empty project, the package
 * imported by its name from an .mjs file and its `token-vendor` bin run through `npx`, both
 * against the real vendor (test/client/vendorStack.ts).
 *
 * Offline: `npm install --offline` never touches the network, so the dependencies must come from
 * npm's cache, which holds their tarballs by integrity (`npm ci` at the repository root put them
 * there) but not always their registry metadata (npm docs, "npm cache": the cache is
 * content-addressable). The empty project is therefore given a package-lock.json holding the
 * repository's own lock entries for the client's dependency closure: npm then installs those exact
 * versions (the ones the repository tests) from the cache by integrity, as `npm install` does for
 * any locked tree, and fetches no metadata. The closure is computed from client/package.json's
 * `dependencies`, so a dependency the client imports but does not declare is missing from the
 * project and its import fails here (unless a declared one depends on it too: npm hoists it, in a
 * service's install as here).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ORDERS } from '../helpers/testStack.js';
import { REGION, SERVER_ID } from './fakes.js';
import { CHECKOUT, cleanEnv, envKeysOf, startVendorStack, type VendorStack } from './vendorStack.js';
import { runCommand, type Run } from '../helpers/runCommand.js';

const REPO = resolve(import.meta.dirname, '../..');
const CLIENT = join(REPO, 'client');
const manifest = JSON.parse(readFileSync(join(CLIENT, 'package.json'), 'utf8')) as {
  name: string;
  dependencies: Record<string, string>;
  bin: Record<string, string>;
  types: string;
  exports: Record<string, Record<string, string> | string>;
};


interface PackResult {
  filename: string;
  files: Array<{ path: string }>;
}

let vs: VendorStack | undefined;
let work: string | undefined;
let project: string;
let packed: PackResult;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'client-package-'));
  const dir = work;
  // The stack and the pack-and-install are independent: both at once, and a stack that started
  // is closed by afterAll even when the install failed.
  const settled = await Promise.allSettled([startVendorStack().then((s) => (vs = s)), packAndInstall(dir).then((p) => (packed = p))]);
  for (const outcome of settled) if (outcome.status === 'rejected') throw outcome.reason;
});

afterAll(async () => {
  await vs?.close();
  if (work !== undefined) rmSync(work, { recursive: true, force: true });
});

/** `npm pack ./client` into `dir`, then an empty project in `dir/service` that installs the tarball. */
async function packAndInstall(dir: string): Promise<PackResult> {
  const pack = await npm(['pack', './client', '--pack-destination', dir, '--json'], REPO);
  const [result] = JSON.parse(pack) as PackResult[];
  if (result === undefined) throw new Error('npm pack --json reported no package');

  project = join(dir, 'service');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'some-service', version: '1.0.0', private: true, type: 'module' }));
  writeFileSync(join(project, 'package-lock.json'), JSON.stringify(lockFor(manifest.dependencies)));
  await npm(['install', '--offline', '--no-audit', '--no-fund', join(dir, result.filename)], project);
  return result;
}

/**
 * A lockfile (version 3) for an empty project holding the repository's lock entries for `deps`
 * and everything they depend on, at the same node_modules paths: npm's own layout of that
 * closure, found with Node's lookup (the entry's own node_modules, then each ancestor's).
 */
function lockFor(deps: Record<string, string>): object {
  const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const locate = (from: string, name: string): string | undefined => {
    for (let dir = from; ; ) {
      const path = `${dir === '' ? '' : `${dir}/`}node_modules/${name}`;
      if (lock.packages[path] !== undefined) return path;
      if (dir === '') return undefined;
      const parent = dir.lastIndexOf('/node_modules/');
      dir = parent < 0 ? '' : dir.slice(0, parent);
    }
  };
  const packages: Record<string, LockEntry> = {};
  const queue = Object.keys(deps).map((name) => ({ from: '', name, optional: false }));
  for (let next = queue.pop(); next !== undefined; next = queue.pop()) {
    const path = locate(next.from, next.name);
    if (path === undefined) {
      // An optional dependency npm did not install on this platform is simply absent.
      if (next.optional) continue;
      throw new Error(`package-lock.json has no ${next.name} for ${next.from || 'the root'}: run npm install at the repository root`);
    }
    const entry = lock.packages[path];
    if (entry === undefined || packages[path] !== undefined) continue;
    packages[path] = entry;
    for (const name of Object.keys(entry.dependencies ?? {})) queue.push({ from: path, name, optional: false });
    for (const name of Object.keys(entry.optionalDependencies ?? {})) queue.push({ from: path, name, optional: true });
  }
  return { name: 'some-service', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name: 'some-service', version: '1.0.0' }, ...packages } };
}

interface LockEntry {
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

/**
 * npm with this process's environment, less what an enclosing `npm test` adds for its own script
 * (npm_lifecycle_*, npm_package_*: they describe the repository's package, not the one at hand).
 */
async function npm(args: string[], cwd: string): Promise<string> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_(lifecycle|package)_/i.test(key)));
  try {
    const { stdout } = await promisify(execFile)('npm', [...args, `--logs-dir=${logsDir()}`], { cwd, env, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    const hint = stderr?.includes('ENOTCACHED') === true ? '\n(npm\'s cache lacks a locked dependency: `npm ci` at the repository root puts them there)' : '';
    throw new Error(`npm ${args.join(' ')} failed in ${cwd}:\n${stderr ?? String(error)}${hint}`);
  }
}

/**
 * npm's debug log files go to the test's directory, removed with it, instead of the shared
 * `_logs` in npm's cache directory (npm docs, "logs-dir").
 */
function logsDir(): string {
  return join(work!, 'npm-logs');
}

/** A command in the service's project with only the given environment (no AWS profile). */
function run(command: string, args: string[], env: Record<string, string>): Promise<Run> {
  return runCommand(command, args, { cwd: project, env: cleanEnv(env) });
}

/** Tokens the tenant issued for this audience and scope (compared, never printed). */
function issued(scope: string): string[] {
  return vs!.stack.tenant.issued().filter((t) => t.audience === ORDERS && t.scope === scope).map((t) => t.accessToken);
}

describe(`${manifest.name}, packed and installed into another project`, () => {
  it('the tarball holds the built code, its declarations, package.json and README.md only', () => {
    const paths = packed.files.map((f) => f.path).sort();

    // Every file package.json points at is in the tarball: the entry points, their types, the bin.
    const targets = [manifest.types, ...Object.values(manifest.bin), ...Object.values(manifest.exports).flatMap((t) => (typeof t === 'string' ? [t] : Object.values(t)))];
    for (const target of targets) expect(paths).toContain(target.replace(/^\.\//, ''));
    expect(targets).toContain('./dist/index.d.ts');
    expect(paths.filter((p) => !/^dist\/[\w.]+\.(js|d\.ts)$/.test(p))).toEqual(['README.md', 'package.json']);
  });

  it('imported by its name from an .mjs file: vends a token, and refusals are its TokenVendorError', async () => {
    writeFileSync(
      join(project, 'vend.mjs'),
      `import { TokenVendorClient, TokenVendorError } from '${manifest.name}';
const env = process.env;
// Credentials from the default AWS chain (the environment here), as a service would have them.
const vendor = new TokenVendorClient({ endpoint: env.ENDPOINT, region: env.AWS_REGION, serverId: env.SERVER_ID, stsEndpoint: env.STS_ENDPOINT });
const token = await vendor.getToken({ audience: env.AUDIENCE, scope: 'read:orders' });
const refused = await vendor.getToken({ audience: env.AUDIENCE, scope: 'admin:orders' }).catch((e) => e);
process.stdout.write(JSON.stringify({ token, refused: { isTokenVendorError: refused instanceof TokenVendorError, status: refused.status, code: refused.code } }));
`,
    );
    const env = { ...envKeysOf(CHECKOUT), AWS_REGION: REGION, ENDPOINT: vs!.gateway.url, SERVER_ID, STS_ENDPOINT: vs!.sts.origin, AUDIENCE: ORDERS };

    const result = await run(process.execPath, ['vend.mjs'], env);

    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const { token, refused } = JSON.parse(result.stdout) as { token: { accessToken: string; scope: string; tokenType: string }; refused: unknown };
    expect(issued('read:orders').includes(token.accessToken)).toBe(true);
    expect(token).toMatchObject({ scope: 'read:orders', tokenType: 'Bearer' });
    expect(refused).toEqual({ isTokenVendorError: true, status: 403, code: 'access_denied' });
  });

  it(`\`npx ${manifest.name} --audience …\` runs the installed bin: only the token on stdout`, async () => {
    // --offline: the package is installed, so npx runs it from node_modules/.bin and must not
    // need the registry (npm docs, "npm exec"); HOME for npm's own config and cache directory.
    const args = ['--offline', `--logs-dir=${logsDir()}`, manifest.name, '--audience', ORDERS, '--scope', 'read:orders', '--endpoint', vs!.gateway.url, '--region', REGION, '--server-id', SERVER_ID, '--sts-endpoint', vs!.sts.origin];

    const result = await run('npx', args, { ...envKeysOf(CHECKOUT), HOME: process.env.HOME ?? tmpdir() });

    expect(result.code).toBe(0);
    expect(result.stdout.endsWith('\n')).toBe(true);
    expect(issued('read:orders').includes(result.stdout.slice(0, -1))).toBe(true);
  });
});
