/**
 * `npm run bench`: the benchmark tables of BENCHMARKS.md, measured on this machine against the
 * real local components (moto_server, the oidc-provider Auth0 tenant), loopback only.
 *
 *   a. IdP calls for a storm (8 OS processes × 50 concurrent requests), cold and over a simulated
 *      hour of token lifetime: this vendor against a per-instance cache and no cache;
 *   b. warm latency in process: instance-cache hit and DynamoDB hit, p50 / p99; hit-path throughput;
 *   c. cold start: bundle sizes and module load time, against a bundle of just the two AWS clients;
 *   d. caller requests that waited on the IdP over 10 simulated token lifetimes with the refresher;
 *   e. KMS calls of sealing: per fetch, per cold instance, on the warm path, per refresh.
 *
 * Simulated time: the orchestrator moves Date.now() for the Auth0 tenant (in this process) and
 * the clock of every worker by the same offset, so a token hour passes in seconds.
 * `npm run bench -- --write` also rewrites BENCHMARKS.md.
 *
 * The tables go to stdout; a line per phase as it starts goes to stderr (the run takes minutes).
 * Every temp directory it makes is removed when it ends, however it ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpus, freemem, totalmem, tmpdir } from 'node:os';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { build } from 'esbuild';
import { loadConfig } from '../functions/config.js';
import type { KMSClient } from '@aws-sdk/client-kms';
import { createVendor } from '../functions/vendor.js';
import { startLocalAuth0Tenant } from '../local/auth0Tenant.js';
import { startMoto } from '../local/moto.js';
import { LOCAL_REGION, LOCAL_SEAL_KEY_ALIAS, createSealKey, createTokenTable, localDynamoDb, localFunctionEnv, localKms, localSecretsManager, putClientSecret } from '../local/seed.js';
import { functionBundleOptions } from '../scripts/esbuildOptions.mjs';
import { runPackage, zipListing } from '../scripts/packaging.js';
import { startLocalSts } from '../local/sts.js';
import { presignProof } from '../local/stsProof.js';
import { apiEvent, registerProofSigner } from '../test/helpers/events.js';

const AUDIENCE = 'https://orders.example.com';
const SCOPE = 'read:orders';
const CALLER = 'arn:aws:sts::111122223333:assumed-role/checkout-service/bench';
const TTL_SECONDS = 3600;

// Quiet, metric-free vendors: the numbers are about the token path, not log volume.
Object.assign(process.env, {
  POWERTOOLS_LOG_LEVEL: 'ERROR',
  POWERTOOLS_METRICS_DISABLED: 'true',
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
});

// Simulated time for the tenant (oidc-provider stamps iat/exp from Date.now()).
const realNow = Date.now.bind(Date);
let offsetMs = 0;
Date.now = () => realNow() + offsetMs;

const out: string[] = [];
const print = (line = '') => {
  console.log(line);
  out.push(line);
};
const pct = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
};
const fmt = (n: number, digits = 2) => n.toFixed(digits);
/** One line on stderr as a phase starts, with the time since the start: never in the tables. */
const benchStarted = performance.now();
const progress = (phase: string) => {
  const s = Math.round((performance.now() - benchStarted) / 1000);
  process.stderr.write(`[bench ${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}] ${phase}\n`);
};

// Temp directories, removed on the way out: at the end, on an error ('exit' follows an uncaught
// exception too) and on Ctrl-C (Node's default SIGINT handling would skip 'exit' handlers).
const scratch: string[] = [];
const tempDir = (prefix: string): string => {
  const made = mkdtempSync(join(tmpdir(), prefix));
  scratch.push(made);
  return made;
};
process.on('exit', () => {
  for (const made of scratch) rmSync(made, { recursive: true, force: true });
});
process.once('SIGINT', () => process.exit(130));

// --- the local stack ---------------------------------------------------------------------
progress('starting the local stack: moto_server, the Auth0 tenant, the STS stand-in');
const moto = await startMoto();
const clientSecret = randomBytes(24).toString('base64url');
// Two Auth0 organizations (docs/auth0-wire-behaviour.md §14) for the storm split between them.
const ORGANIZATIONS = [
  { id: 'org_benchAcme00000001', name: 'acme' },
  { id: 'org_benchGlobex000001', name: 'globex' },
];
const tenant = await startLocalAuth0Tenant({
  clients: [{ clientId: 'bench-client', clientSecret, authMethod: 'client_secret_post' }],
  apis: [{ audience: AUDIENCE, scopes: ['read:orders', 'write:orders'], tokenTtlSeconds: TTL_SECONDS }],
  clientGrants: { 'bench-client': { [AUDIENCE]: ['read:orders', 'write:orders'] } },
  organizations: ORGANIZATIONS,
  organizationGrants: { 'bench-client': { [AUDIENCE]: { organizationUsage: 'allow', organizations: ORGANIZATIONS.map((o) => o.id) } } },
});
// Callers prove who they are (docs/identity-proof.md) at an STS stand-in, on the real clock: the
// workers sign their proofs on it, whatever simulated time their token lifetimes run on.
const callerKey = { accessKeyId: 'AKIABENCHCALLER00001', secretAccessKey: randomBytes(30).toString('base64url') };
const sts = await startLocalSts({
  credentials: [{ ...callerKey, principalArn: 'arn:aws:iam::111122223333:role/checkout-service', sessionName: 'bench' }],
  region: LOCAL_REGION,
  now: () => new Date(realNow()),
});
const PROOF_SERVER_ID = 'token-vendor-bench';
registerProofSigner({ stsOrigin: sts.origin, region: LOCAL_REGION, serverId: PROOF_SERVER_ID, credentials: { [CALLER]: callerKey } });
const dynamodb = localDynamoDb(moto.endpoint);
const kms = localKms(moto.endpoint);
await createSealKey(kms, LOCAL_SEAL_KEY_ALIAS);
const secretId = 'bench/orders';
await putClientSecret(localSecretsManager(moto.endpoint), secretId, { client_id: 'bench-client', client_secret: clientSecret });
const dir = tempDir('bench-');
const grantsFile = join(dir, 'grants.json');
writeFileSync(
  grantsFile,
  JSON.stringify({
    clients: { orders: { domain: tenant.origin, secretId } },
    // Callers ask for read:orders: the prefetched token is exactly theirs.
    grants: [
      { principals: ['arn:aws:iam::111122223333:role/checkout-service'], prefetch: true, client: 'orders', audience: AUDIENCE, scopes: ['read:orders'] },
      { principals: ['arn:aws:iam::111122223333:role/checkout-service'], client: 'orders', audience: AUDIENCE, scopes: ['write:orders'] },
      // The same caller, for either organization (the storm split between them).
      { principals: ['arn:aws:iam::111122223333:role/checkout-service'], client: 'orders', audience: AUDIENCE, scopes: ['read:orders'], organizations: ORGANIZATIONS.map((o) => o.id), organizationUsage: 'allow' },
    ],
  }),
);
let tables = 0;
async function vendorEnv(extra: Record<string, string> = {}): Promise<Record<string, string>> {
  const table = `bench-${(tables += 1)}`;
  await createTokenTable(dynamodb, table);
  return { ...localFunctionEnv({ motoEndpoint: moto.endpoint, grantsFile, sealKeyId: LOCAL_SEAL_KEY_ALIAS }), TOKEN_TABLE_NAME: table, STS_ENDPOINT: sts.origin, PROOF_SERVER_ID, ...extra };
}

// --- workers -------------------------------------------------------------------------------
interface Worker {
  send(cmd: object): Promise<Record<string, unknown>>;
  child: ChildProcess;
}
async function startWorkers(count: number, mode: string, env: Record<string, string>): Promise<Worker[]> {
  return Promise.all(
    Array.from({ length: count }, async () => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'bench/worker.ts', mode], {
        env: { ...process.env, ...env, BENCH_AUDIENCE: AUDIENCE, BENCH_SCOPE: SCOPE, BENCH_CALLER_ARN: CALLER, BENCH_SECRET_ID: secretId, BENCH_TOKEN_URL: `${tenant.origin}/oauth/token` },
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      const waiting: Array<(doc: Record<string, unknown>) => void> = [];
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (line.startsWith('BENCH ')) waiting.shift()?.(JSON.parse(line.slice(6)) as Record<string, unknown>);
      });
      const ready = new Promise<Record<string, unknown>>((resolve) => waiting.push(resolve));
      await ready;
      return {
        child,
        send: (cmd: object) =>
          new Promise<Record<string, unknown>>((resolve) => {
            waiting.push(resolve);
            child.stdin!.write(`${JSON.stringify(cmd)}\n`);
          }),
      };
    }),
  );
}
async function stopWorkers(workers: Worker[]): Promise<void> {
  await Promise.all(workers.map((w) => new Promise<void>((resolve) => {
    w.child.on('exit', () => resolve());
    w.child.stdin!.write('{"cmd":"exit"}\n');
  })));
}
async function setTime(workers: Worker[], ms: number): Promise<void> {
  offsetMs = ms;
  await Promise.all(workers.map((w) => w.send({ cmd: 'time', offsetMs: ms })));
}

// --- a. the storm ---------------------------------------------------------------------------
async function storm(mode: string, organizations: readonly string[] = []): Promise<{ cold: number; hour: number; requests: number; failed: number }> {
  const env = { ...(await vendorEnv()), BENCH_ORGANIZATIONS: organizations.join(',') };
  const workers = await startWorkers(8, mode, env);
  await setTime(workers, 0);
  tenant.resetCounters();
  let requests = 0;
  let failed = 0;
  const burst = async () => {
    const replies = await Promise.all(workers.map((w) => w.send({ cmd: 'burst', n: 50 })));
    for (const r of replies) {
      const statuses = r.statuses as number[];
      requests += statuses.length;
      failed += statuses.filter((s) => s !== 200).length;
    }
  };
  await burst();
  const cold = tenant.tokenRequests();
  // a simulated hour (one token lifetime): a storm every simulated minute
  for (let minute = 1; minute <= 60; minute += 1) {
    await setTime(workers, minute * 60_000);
    await burst();
  }
  const hour = tenant.tokenRequests();
  await stopWorkers(workers);
  await setTime([], 0);
  return { cold, hour, requests, failed };
}

// --- b. warm latency in process ------------------------------------------------------------
async function warmLatency(): Promise<void> {
  const body = (scope: string) => JSON.stringify({ audience: AUDIENCE, scope });
  const time = async (n: number, event: () => unknown, handler: (e: unknown) => Promise<unknown>) => {
    const samples: number[] = [];
    const started = performance.now();
    for (let i = 0; i < n; i += 1) {
      const e = event();
      const t0 = performance.now();
      const res = (await handler(e)) as { statusCode: number };
      samples.push(performance.now() - t0);
      if (res.statusCode !== 200) throw new Error(`bench request failed: ${res.statusCode}`);
    }
    return { samples, seconds: (performance.now() - started) / 1000 };
  };
  const clients = { dynamodb, kms, secretsManager: localSecretsManager(moto.endpoint) };
  const memoryVendor = createVendor(loadConfig(await vendorEnv()), clients);
  const memEvent = apiEvent({ body: body('read:orders'), userArn: CALLER });
  await memoryVendor.handler(memEvent);
  progress('b. instance-cache hits: 20,000 requests');
  const mem = await time(20_000, () => memEvent, memoryVendor.handler);
  // Each request with a proof the instance has not proved yet: one STS call (the stand-in, on
  // loopback) before the memory hit. Distinct proofs: signed up to 49 s ago, with X-Amz-Expires 60+.
  const fresh = (i: number) => {
    const proof = presignProof({ credential: callerKey, region: LOCAL_REGION, stsOrigin: sts.origin, serverId: PROOF_SERVER_ID, audience: AUDIENCE, scope: 'read:orders', now: new Date(realNow() - (i % 50) * 1000), expiresSeconds: 60 + Math.floor(i / 50) });
    return apiEvent({ body: body('read:orders'), userArn: CALLER, proof });
  };
  let n = 0;
  progress('b. instance-cache hits with a new identity proof each: 2,000 requests');
  const stsBefore = sts.calls();
  const proved = await time(2_000, () => fresh((n += 1)), memoryVendor.handler);
  const stsCalls = sts.calls() - stsBefore;

  // One entry in memory and two alternating scope sets: every request reads DynamoDB.
  const dynamoVendor = createVendor(loadConfig(await vendorEnv({ MEMORY_CACHE_ENTRIES: '1' })), clients);
  const events = [apiEvent({ body: body('read:orders'), userArn: CALLER }), apiEvent({ body: body('write:orders'), userArn: CALLER })];
  for (const e of events) await dynamoVendor.handler(e);
  let i = 0;
  progress('b. DynamoDB hits: 2,000 requests');
  const ddb = await time(2_000, () => events[(i += 1) % 2], dynamoVendor.handler);

  print('| path | requests | p50 (ms) | p99 (ms) | throughput (req/s, one instance, sequential) |');
  print('| --- | ---: | ---: | ---: | ---: |');
  print(`| instance-cache hit (memory) | ${mem.samples.length} | ${fmt(pct(mem.samples, 50), 3)} | ${fmt(pct(mem.samples, 99), 3)} | ${Math.round(mem.samples.length / mem.seconds)} |`);
  print(`| instance-cache hit, each request with a new identity proof (${stsCalls} STS calls to the loopback stand-in) | ${proved.samples.length} | ${fmt(pct(proved.samples, 50))} | ${fmt(pct(proved.samples, 99))} | ${Math.round(proved.samples.length / proved.seconds)} |`);
  print(`| DynamoDB hit (moto_server on loopback) | ${ddb.samples.length} | ${fmt(pct(ddb.samples, 50))} | ${fmt(pct(ddb.samples, 99))} | ${Math.round(ddb.samples.length / ddb.seconds)} |`);
}

// --- c. cold start --------------------------------------------------------------------------
async function coldStart(): Promise<void> {
  progress('c. building the baseline bundles');
  const baselineDir = tempDir('bench-baseline-');
  const baselineEntry = join(baselineDir, 'entry.ts');
  writeFileSync(join(baselineDir, 'package.json'), '{ "type": "module" }\n');
  writeFileSync(
    baselineEntry,
    "import { DynamoDBClient } from '@aws-sdk/client-dynamodb'; import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager'; export const clients = [new DynamoDBClient({}), new SecretsManagerClient({})];",
  );
  // The same esbuild options as the functions (scripts/esbuildOptions.mjs), source maps and code
  // splitting included, over an entry that only builds the two clients: like with like.
  await build({ ...functionBundleOptions(baselineEntry, baselineDir), nodePaths: [join(process.cwd(), 'node_modules')] });
  const baseline = join(baselineDir, 'index.js');
  // And as earlier runs of this table built it (one file, no source map), to compare with them.
  const plainDir = tempDir('bench-baseline-plain-');
  writeFileSync(join(plainDir, 'package.json'), '{ "type": "module" }\n');
  await build({ ...functionBundleOptions(baselineEntry, plainDir), splitting: false, sourcemap: false, nodePaths: [join(process.cwd(), 'node_modules')] });
  progress('c. packaging the service (osls package)');
  // Into a directory of ours (not packageService's), so that it goes even when osls fails.
  const packaged = { dir: tempDir('bench-package-') };
  const packagedRun = runPackage('bench', packaged.dir);
  if (packagedRun.status !== 0) throw new Error(`osls package failed (${packagedRun.status}):\n${packagedRun.output}`);
  const env = await vendorEnv();
  const bundles = [
    ...['vend', 'refresh', 'rotate'].map((name) => ({
      name,
      file: join(process.cwd(), 'dist', name, 'index.js'),
      env: { ...env, GRANTS_FILE: join(process.cwd(), 'dist', name, 'grants.json') },
      zip: join(packaged.dir, `${name}.zip`) as string | undefined,
    })),
    { name: 'baseline: the two AWS SDK clients only', file: baseline, env, zip: undefined },
    { name: 'the same baseline as one file without source maps (as earlier runs built it)', file: join(plainDir, 'index.js'), env, zip: undefined },
  ];
  // Interleaved, one process per load, so that whatever else the machine does falls on every
  // bundle alike.
  const times = new Map<string, number[]>(bundles.map((b) => [b.name, []]));
  progress(`c. loading each of ${bundles.length} bundles 21 times, one process per load`);
  for (let run = 0; run < 21; run += 1) {
    for (const bundle of bundles) times.get(bundle.name)!.push(await loadTime(bundle.file, bundle.env));
  }
  const base = pct(times.get(bundles[3]!.name)!, 50);
  print('| bundle | zipped | code in the zip | code loaded at start | module load p50 (ms) | p90 (ms) | × baseline (p50) |');
  print('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const bundle of bundles) {
    const t = times.get(bundle.name)!;
    const zipped = bundle.zip === undefined ? '—' : `${fmt(statSync(bundle.zip).size / 1024, 1)} KiB`;
    const code = bundle.zip === undefined ? allCode(dirname(bundle.file)) : zipListing(bundle.zip).filter((e) => e.name.endsWith('.js')).reduce((sum, e) => sum + e.size, 0);
    print(`| ${bundle.name} | ${zipped} | ${fmt(code / 1024, 1)} KiB | ${fmt(startupCode(bundle.file) / 1024, 1)} KiB | ${fmt(pct(t, 50), 1)} | ${fmt(pct(t, 90), 1)} | ${fmt(pct(t, 50) / base, 2)} |`);
  }
}

/** One module load in a fresh Node process, as Lambda's init does it (`--enable-source-maps`). */
function loadTime(file: string, env: Record<string, string>): Promise<number> {
  const script = `const t0 = performance.now(); await import(${JSON.stringify(`file://${file}`)}); process.stdout.write(String(performance.now() - t0));`;
  return new Promise<number>((resolve, reject) => {
    const child = spawn(process.execPath, ['--enable-source-maps', '--input-type=module', '-e', script], { env: { ...process.env, ...env } });
    let text = '';
    child.stdout.on('data', (d) => (text += d));
    child.on('exit', (code) => (code === 0 ? resolve(Number(text)) : reject(new Error(`load of ${file} failed (${code})`))));
  });
}

/** Bytes of JavaScript a cold start loads: the entry and the chunks it imports statically (not `import()`). */
function startupCode(entry: string): number {
  const seen = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const match of readFileSync(file, 'utf8').matchAll(/(?:from|import)\s*"(\.{1,2}\/[^"]+\.js)"/g)) visit(join(dirname(file), match[1]!));
  };
  visit(entry);
  return [...seen].reduce((sum, file) => sum + statSync(file).size, 0);
}

/** Bytes of JavaScript below `dir`, chunks included. */
function allCode(dir: string): number {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.js'))
    .reduce((sum, f) => sum + statSync(join(dir, f)).size, 0);
}

// --- d. steady state with the refresher -----------------------------------------------------
async function steadyState(): Promise<void> {
  const env = await vendorEnv();
  const refresher = createVendor(loadConfig(env), { dynamodb, kms, secretsManager: localSecretsManager(moto.endpoint) });
  const workers = await startWorkers(4, 'vendor', env);
  await setTime(workers, 0);
  tenant.resetCounters();
  let requests = 0;
  let waited = 0;
  let failed = 0;
  const lifetimes = 10;
  const fetches: Record<string, number> = {};
  for (let minute = 0; minute <= lifetimes * (TTL_SECONDS / 60); minute += 1) {
    await setTime(workers, minute * 60_000);
    await refresher.refresher.run(); // the schedule: every (simulated) minute
    const replies = await Promise.all(workers.map((w) => w.send({ cmd: 'sequential', n: 3 })));
    for (const r of replies) {
      const statuses = r.statuses as number[];
      requests += statuses.length;
      failed += statuses.filter((s) => s !== 200).length;
      waited += r.waited as number;
      if (minute === lifetimes * (TTL_SECONDS / 60)) for (const [cause, n] of Object.entries(r.fetches as Record<string, number>)) fetches[cause] = (fetches[cause] ?? 0) + n;
    }
  }
  const idpCalls = tenant.tokenRequests();
  await stopWorkers(workers);
  await setTime([], 0);
  print('| simulated time | caller requests | failed | waited on the IdP | IdP calls (all) | by callers: miss / refresh-ahead |');
  print('| --- | ---: | ---: | ---: | ---: | --- |');
  print(`| ${lifetimes} token lifetimes (${lifetimes} h), refresher every minute | ${requests} | ${failed} | **${waited}** | ${idpCalls} | ${fetches.miss ?? 0} / ${fetches['refresh-ahead'] ?? 0} |`);
}

// --- e. KMS calls of sealing ---------------------------------------------------------------
async function kmsCalls(): Promise<void> {
  // Counted at the client (a middleware on the KMS client every instance is given), in process,
  // each instance its own vendor (its own memory and key cache) over one table.
  const calls = { GenerateDataKey: 0, Decrypt: 0, other: 0 };
  const countingKms: KMSClient = localKms(moto.endpoint);
  countingKms.middlewareStack.add(
    (next, context) => (args) => {
      const name = (context.commandName ?? '').replace(/Command$/, '');
      if (name === 'GenerateDataKey' || name === 'Decrypt') calls[name] += 1;
      else calls.other += 1;
      return next(args);
    },
    { step: 'initialize', name: 'benchCountKmsCalls' },
  );
  const env = await vendorEnv();
  const config = loadConfig(env);
  const clock = { skew: 0 };
  const instance = () => createVendor(config, { dynamodb, kms: countingKms, secretsManager: localSecretsManager(moto.endpoint), now: () => Date.now() + clock.skew });
  const read = config.grants.requestFor('orders', AUDIENCE, ['read:orders'])!;
  const write = config.grants.requestFor('orders', AUDIENCE, ['write:orders'])!;
  const rows: string[] = [];
  const measure = async (label: string, work: () => Promise<unknown>) => {
    Object.assign(calls, { GenerateDataKey: 0, Decrypt: 0, other: 0 });
    tenant.resetCounters();
    await work();
    rows.push(`| ${label} | ${calls.GenerateDataKey} | ${calls.Decrypt} | ${calls.other} | ${tenant.tokenRequests()} |`);
  };
  const serve = async (vendor: ReturnType<typeof instance>, n: number) => {
    for (let i = 0; i < n; i += 1) await vendor.service.tokenFor(i % 2 === 0 ? read : write, CALLER);
  };
  const revalidations = async (vendor: ReturnType<typeof instance>, n: number) => {
    for (let i = 0; i < n; i += 1) {
      clock.skew += config.memoryRevalidateMs + 1;
      await serve(vendor, 2);
    }
  };

  const fetcher = instance();
  await measure('two fetches (a miss on each of two scope sets): IdP, seal, write', async () => {
    await fetcher.service.tokenFor(read, CALLER);
    await fetcher.service.tokenFor(write, CALLER);
  });
  await measure('the fetching instance: 1,000 serves from memory', () => serve(fetcher, 1_000));
  await measure('the fetching instance: 5 revalidations of both tokens against the table', () => revalidations(fetcher, 5));
  const cold = instance();
  await measure('a cold instance: first serve of each of the two tokens (from the table)', () => serve(cold, 2));
  await measure('that instance warm: 1,000 serves and 5 revalidations of both', async () => {
    await serve(cold, 1_000);
    await revalidations(cold, 5);
  });
  await measure('a scheduled refresh of one token (ops/refresher path)', () => fetcher.service.refresh(read, Number.MAX_SAFE_INTEGER));
  await measure('another instance picking the refreshed token up at its next revalidation', () => revalidations(cold, 1));
  await fetcher.service.idle();
  await cold.service.idle();

  print('| step | GenerateDataKey | Decrypt | other KMS calls | IdP calls |');
  print('| --- | ---: | ---: | ---: | ---: |');
  for (const row of rows) print(row);
  print();
  print('Per fetch: one GenerateDataKey (the token\'s own data key, bound to its item), no Decrypt (the fetching instance keeps the key). Per cold instance: one Decrypt per distinct token it reads. Warm path and revalidations: none.');
}

// --- run ----------------------------------------------------------------------------------
// `--only bc` runs tables b and c alone (a quicker look at one change); the default is all five.
const onlyArg = process.argv.indexOf('--only');
const selected = onlyArg > 0 ? (process.argv[onlyArg + 1] ?? '') : 'abcde';
const started = new Date();
print(`Machine: ${cpus()[0]?.model ?? 'unknown CPU'} × ${cpus().length} cores, ${fmt(totalmem() / 2 ** 30, 1)} GiB RAM (${fmt(freemem() / 2 ** 30, 1)} GiB free), Node ${process.version}, ${process.platform}/${process.arch}`);
print(`Run: ${started.toISOString()} — command: \`npm run bench\``);
print();
if (selected.includes('a')) {
print('### a. IdP calls for a storm: 8 OS processes × 50 concurrent requests');
print();
print(`Token lifetime ${TTL_SECONDS} s. Cold: one storm (400 requests) at t = 0. Hour: a storm every simulated minute for one token lifetime (61 storms, ${61 * 400} requests).`);
print();
print('| strategy | IdP calls, cold storm | IdP calls over the hour | caller requests | failed | IdP calls per token lifetime |');
print('| --- | ---: | ---: | ---: | ---: | ---: |');
for (const [mode, label, organizations] of (process.argv.includes('--skip-storm') ? [] : [
  ['vendor', 'this vendor (memory + DynamoDB, fleet lease, refresh-ahead)', []],
  ['vendor', 'this vendor, the requests split between two Auth0 organizations', ORGANIZATIONS.map((o) => o.id)],
  ['per-instance', 'per-instance cache (Auth0 SDK TokenProvider style)', []],
  ['no-cache', 'no cache', []],
] as const)) {
  progress(`a. storm: ${label}: 61 storms of 8 processes × 50 requests`);
  const r = await storm(mode, organizations);
  print(`| ${label} | ${r.cold} | ${r.hour} | ${r.requests} | ${r.failed} | ${r.hour} |`);
}
print();
print('With two organizations the limit is 1 IdP call per organization per token lifetime: each organization\'s token is fetched, cached and refreshed apart (its own cache key and lease).');
print('The limit is 1 IdP call per token lifetime. Refresh-ahead replaces a token when 25% of its life is left, so in steady state the vendor spends 1 / 0.75 ≈ 1.33 calls per lifetime, and a cold start adds the first one.');
print();
}
if (selected.includes('b')) {
  print('### b. Warm latency in process (the `vend` handler, API Gateway event in, response out)');
  print();
  await warmLatency();
  print();
}
if (selected.includes('c')) {
  print('### c. Cold start: bundle size and module load time (fresh `node` process, `--enable-source-maps`, 21 interleaved runs)');
  print();
  print('Every bundle, the baseline included, is built with the same esbuild options (scripts/esbuildOptions.mjs: minified, source maps, code splitting). "Code loaded at start" is the entry and the chunks it imports statically; the KMS client, jose and the SDK\'s other credential providers are chunks loaded with `import()` on first use.');
  print();
  await coldStart();
  print();
}
if (selected.includes('d')) {
  print('### d. Steady state: caller requests that waited on the IdP (goal: 0)');
  print();
  progress('d. steady state: 10 simulated token lifetimes, 4 processes and the refresher');
  await steadyState();
  print();
}
if (selected.includes('e')) {
  print('### e. KMS calls of sealing (counted at the KMS client)');
  print();
  progress('e. KMS calls of sealing');
  await kmsCalls();
  print();
}

progress('stopping the local stack');
await tenant.close();
await sts.close();
await moto.stop();

if (process.argv.includes('--write')) {
  const doc = readFileSync('BENCHMARKS.md', 'utf8');
  const marker = '<!-- bench:results -->';
  const head = doc.includes(marker) ? doc.slice(0, doc.indexOf(marker) + marker.length) : `${doc.trimEnd()}\n\n${marker}`;
  writeFileSync('BENCHMARKS.md', `${head}\n\n${out.join('\n')}\n`);
  console.log('BENCHMARKS.md updated');
}
process.exit(0);
