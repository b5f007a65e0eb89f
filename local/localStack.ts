/**
 * `npm start` (entry point local/stack.ts): the whole product on this machine, with real
 * components, serving the user's grants file.
 *
 * - moto_server stands in for Secrets Manager, DynamoDB and KMS;
 * - an oidc-provider tenant stands in for Auth0 (`/oauth/token`, JSON bodies, `audience`, RS256
 *   JWTs), seeded from the grants file (local/grantsSeed.ts): an application per client with its
 *   authentication method, an API per audience with the granted scopes, the client grants, and the
 *   Management API grant a client's `rotation.managementClient` needs;
 * - the real vend bundle (dist/vend/index.js) serves POST /token behind a local gateway that
 *   verifies SigV4 as API Gateway's AWS_IAM does, with access keys mapped to principals by
 *   `<state dir>/credentials.json`: one key for each granted principal (a wildcard's example);
 * - an STS stand-in (local/sts.ts) answers the presigned GetCallerIdentity of every identity proof
 *   (docs/identity-proof.md), verified against the same keys (moto's STS does not verify signatures);
 * - a Lambda Invoke stand-in (local/lambdaInvoke.ts) serves the same handler to direct invocations.
 *
 * One stack per state directory (`.local/`, or TOKEN_VENDOR_LOCAL_DIR): before starting anything it
 * checks `stack.json` (local/stackState.ts) and the port, and refuses, naming what runs, rather
 * than overwrite a running stack's files. The gateway binds its port first, so two starts racing
 * each other cannot both get past that point.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { TokenVendorClient } from '../client/index.js';
import { loadGrants } from '../functions/config.js';
import { fingerprint } from '../functions/core/tokenIdentity.js';
import type { GrantBook } from '../functions/core/grants.js';
import { startLocalAuth0Tenant } from './auth0Tenant.js';
import { startLocalGateway } from './gateway.js';
import { grantPrincipals, localGrantsDocument, mergeCredentials, parseCredentialsFile, planLocalTenant, secretNameOfArn, tokenCommand } from './grantsSeed.js';
import { startLocalLambdaInvoke } from './lambdaInvoke.js';
import { startMoto } from './moto.js';
import { LOCAL_REGION, LOCAL_SEAL_KEY_ALIAS, createSealKey, createTokenTable, localDynamoDb, localFunctionEnv, localKms, localSecretsManager, putClientSecret, type ClientSecretValue } from './seed.js';
import { checkRunningStack, localStateDir, portAvailability, removeStackState, STACK_STATE_FILE, STATE_DIR_VARIABLE, writeFileAtomic, writeStackState, type StackState } from './stackState.js';
import { startLocalSts } from './sts.js';

const TABLE = 'token-vendor-local';
const STAGE = 'local';
/** docs/identity-proof.md: the local stack's proof server id */
const PROOF_SERVER_ID = 'token-vendor-local';
/** The vend function's name as `osls deploy --stage local` would name it (service-stage-function). */
const VEND_FUNCTION = `token-vendor-${STAGE}-vend`;
const DEFAULT_PORT = 3000;

export const START_USAGE = `usage: npm start [-- --grants FILE]

Runs the token vendor on this machine with the grants of FILE (default grants.json), at
http://127.0.0.1:$PORT/local (PORT default ${DEFAULT_PORT}; PORT=0 picks a free port). State, keys and
the served grants live in .local/ (${STATE_DIR_VARIABLE} to choose another directory).`;

export interface LocalStackOptions {
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string | undefined>>;
  /** where the vend and refresh bundles are (`<dir>/vend/index.js`); default `<repo>/dist` */
  readonly bundleDir?: string;
}

/** A start that cannot go on: the message (already one or more readable lines) and the exit code. */
class StartRefused extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/** The checkout: the nearest directory up from this file whose package.json is this project's (dist/local/ or local/). */
function findRepo(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === 'auth0-token-vendor') return dir;
      } catch {
        // another package.json (a bundle's {"type":"module"}): keep looking
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the auth0-token-vendor checkout above local/stack');
    dir = parent;
  }
}

/** A path as the user can read it: relative to the working directory when inside it. */
function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel === '' ? '.' : rel.startsWith('..') ? path : rel;
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ');
}

/** Runs the stack until SIGINT/SIGTERM; exits the process on a refused or failed start. */
export async function runLocalStack(opts: LocalStackOptions): Promise<void> {
  const stops: Array<() => Promise<void>> = [];
  let stopping = false;
  const stopAll = async (code: number): Promise<never> => {
    if (!stopping) {
      stopping = true;
      for (const stop of stops.reverse()) await stop().catch((e: unknown) => console.error(`stop failed: ${e instanceof Error ? e.message : String(e)}`));
    }
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));
  try {
    await start(opts, stops);
  } catch (error) {
    if (error instanceof StartRefused) {
      process.stderr.write(`npm start: ${error.message}\n`);
      return stopAll(error.exitCode);
    }
    console.error(`local stack failed: ${oneLine(error instanceof Error ? error.message : String(error))}`);
    return stopAll(1);
  }
}

async function start(opts: LocalStackOptions, stops: Array<() => Promise<void>>): Promise<void> {
  const { env } = opts;
  // Local machines may run Node 20; the deployed runtime is nodejs22.x. Keep the console readable.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

  // 1. Everything that can be wrong with the command, before anything starts or is written.
  let grantsArg: string | undefined;
  try {
    const { values } = parseArgs({ args: [...opts.argv], strict: true, allowPositionals: false, options: { grants: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
    if (values.help === true) {
      console.log(START_USAGE);
      process.exit(0);
    }
    grantsArg = values.grants;
  } catch (error) {
    throw new StartRefused(`${oneLine(error instanceof Error ? error.message : String(error))}\n\n${START_USAGE}`, 2);
  }
  const repo = findRepo();
  // npm runs scripts in the package root; INIT_CWD is where the user typed the command
  // (docs.npmjs.com, "npm run-script": INIT_CWD), which is what a relative path means to them.
  const base = env.INIT_CWD ?? process.cwd();
  const grantsFile = grantsArg === undefined ? join(repo, 'grants.json') : resolve(base, grantsArg);
  let book: GrantBook;
  try {
    book = loadGrants(grantsFile);
  } catch (error) {
    // The vendor's own validation (functions/config.ts loadGrants): the message names the file and
    // the field. Its `GRANTS_FILE: ` prefix names the function's variable, which npm start does not read.
    const message = (error instanceof Error ? error.message : String(error)).replace(/^GRANTS_FILE: /, '');
    // A file that cannot be read: the system's reason (ENOENT, EACCES), not a stack trace.
    const cause = error instanceof Error ? (error.cause as NodeJS.ErrnoException | undefined) : undefined;
    const code = cause?.syscall === undefined ? undefined : cause.code;
    throw new StartRefused(`invalid grants: ${oneLine(message)}${code === undefined ? '' : ` (${code})`}`, 2);
  }
  const portText = env.PORT?.trim() || String(DEFAULT_PORT);
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65_535) throw new StartRefused(`PORT must be a port number 0-65535 (0 picks a free one), got "${portText.slice(0, 20)}"`, 2);
  const stateDir = localStateDir(env, repo, base);
  const shownDir = shown(stateDir);

  // 2. One stack per state directory, and the port free, before moto or the tenant start.
  const running = await checkRunningStack(stateDir);
  if (running.kind === 'running') throw new StartRefused(alreadyRunning(running.state, shownDir, port), 1);
  if (port !== 0) {
    const availability = await portAvailability(port);
    if (availability !== 'free') throw new StartRefused(await portTaken(port, availability, shownDir), 1);
  }

  // 3. The keys: the file's entries kept, one added for each granted principal without one.
  const credentialsFile = join(stateDir, 'credentials.json');
  const existing = existsSync(credentialsFile) ? parseCredentialsFile(parseJson(credentialsFile), credentialsFile) : [];
  const principals = grantPrincipals(book);
  const { credentials, added } = mergeCredentials(existing, principals.flat());

  // 4. The front doors first: binding the gateway's port is what makes this stack the only one.
  // The handler exists once the bundle is imported (step 6); until then both doors answer 503.
  type VendHandler = (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>;
  const live: { handler?: VendHandler } = {};
  const starting = { statusCode: 503, headers: { 'Content-Type': 'application/json', 'Retry-After': '1' }, body: JSON.stringify({ error: 'temporarily_unavailable', error_description: 'The local stack is starting.' }) };
  const startingDirect = { error: 'temporarily_unavailable', error_description: 'The local stack is starting.', status: 503, retry_after: 1 };
  const gateway = await startLocalGateway({
    port,
    region: LOCAL_REGION,
    stage: STAGE,
    credentials,
    handler: (event, context) => (live.handler === undefined ? Promise.resolve(starting) : live.handler(event, context)),
  }).catch(async (error: unknown) => {
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new StartRefused(await portTaken(port, 'in-use', shownDir), 1);
    throw error;
  });
  stops.push(() => gateway.close());
  const sts = await startLocalSts({ credentials, region: LOCAL_REGION });
  stops.push(() => sts.close());
  const lambda = await startLocalLambdaInvoke({
    region: LOCAL_REGION,
    credentials,
    // A direct invoker gets errors as the vend function returns them: {error, error_description, status}.
    functions: { [VEND_FUNCTION]: (event, context) => (live.handler === undefined ? Promise.resolve(startingDirect) : (live.handler as (e: unknown, c: Context) => Promise<unknown>)(event, context)) },
  });
  stops.push(() => lambda.close());

  // Another start may have claimed the state directory since the check (with another PORT, its
  // port did not stop this one): look again now that ours is bound, before writing anything.
  const again = await checkRunningStack(stateDir);
  if (again.kind === 'running') throw new StartRefused(alreadyRunning(again.state, shownDir, port), 1);
  mkdirSync(stateDir, { recursive: true });
  // Rewritten only when something changed: a file that already holds every key is left as it is.
  if (!existsSync(credentialsFile) || JSON.stringify(existing) !== JSON.stringify(credentials)) {
    writeFileAtomic(credentialsFile, `${JSON.stringify(credentials, null, 2)}\n`);
  }
  const state: StackState = {
    pid: process.pid,
    port: gateway.port,
    gatewayUrl: gateway.url,
    stsOrigin: sts.origin,
    lambdaOrigin: lambda.origin,
    functionName: VEND_FUNCTION,
    serverId: PROOF_SERVER_ID,
    region: LOCAL_REGION,
    grantsFile,
    startedAt: new Date().toISOString(),
  };
  writeStackState(stateDir, state);
  // Pushed first, so it runs last: a start that comes while this one stops still finds it running.
  stops.unshift(async () => removeStackState(stateDir, process.pid));
  process.on('exit', () => removeStackState(stateDir, process.pid));
  if (running.kind === 'stale') console.log(`replaced the state of a stack that no longer runs (${running.reason})`);

  // 5. The AWS stand-ins and the tenant, seeded from the grants.
  console.log('starting moto_server (Secrets Manager, DynamoDB, KMS) ...');
  const moto = await startMoto();
  stops.push(() => moto.stop());
  const plan = planLocalTenant(book);
  const tenant = await startLocalAuth0Tenant({
    managementApi: plan.managementApi,
    clients: plan.clients.map((c) => c.tenantClient),
    apis: [...plan.apis],
    clientGrants: plan.clientGrants,
  });
  stops.push(() => tenant.close());

  const dynamodb = localDynamoDb(moto.endpoint);
  const secrets = localSecretsManager(moto.endpoint);
  await createTokenTable(dynamodb, TABLE);
  await createSealKey(localKms(moto.endpoint), LOCAL_SEAL_KEY_ALIAS);
  const secretArns = new Map<string, string>();
  for (const client of plan.clients) {
    let value: ClientSecretValue;
    if (client.privateKeyPem !== undefined) {
      // The kid the tenant registered (an RFC 7638 thumbprint), which the vendor's assertion names.
      const kid = tenant.clientCredentials(client.clientId)[0]?.kid;
      value = { client_id: client.clientId, private_key: client.privateKeyPem, ...(kid === undefined ? {} : { key_id: kid }) };
    } else {
      value = { client_id: client.clientId, client_secret: client.clientSecret ?? '' };
    }
    // A secret named by ARN is created under its name; the served grants name the ARN moto gave it.
    const arnName = secretNameOfArn(client.secretId);
    const arn = await putClientSecret(secrets, arnName ?? client.secretId, value);
    if (arnName !== undefined) secretArns.set(client.secretId, arn);
  }

  const servedFile = join(stateDir, 'grants.local.json');
  writeFileAtomic(servedFile, `${JSON.stringify(localGrantsDocument(parseJson(grantsFile), tenant.origin, secretArns), null, 2)}\n`, 0o644);
  // The counts of the file the vendor actually reads, validated as its cold start will.
  const served = loadGrants(servedFile);

  // What points the function at this stack: the SDK reaches moto via AWS_ENDPOINT_URL, proofs are
  // checked against the STS stand-in. It is also what `npm run invoke:local` passes to
  // `osls invoke local` (and signs its proofs for), and what `npm run ops -- --local` reads.
  const invokeEnv = {
    ...localFunctionEnv({ motoEndpoint: moto.endpoint, grantsFile: servedFile, sealKeyId: LOCAL_SEAL_KEY_ALIAS }),
    STS_ENDPOINT: sts.origin,
    PROOF_SERVER_ID,
  };
  Object.assign(process.env, invokeEnv, {
    TOKEN_TABLE_NAME: TABLE,
    POWERTOOLS_SERVICE_NAME: 'token-vendor',
    POWERTOOLS_METRICS_DISABLED: process.env.POWERTOOLS_METRICS_DISABLED ?? 'true',
    // Powertools' development mode: readable, indented log lines on a terminal instead of one JSON
    // document per line (https://docs.powertools.aws.dev/lambda/typescript/latest/core/logger/#pretty-printing-logs).
    POWERTOOLS_DEV: process.env.POWERTOOLS_DEV ?? 'true',
  });
  const invokeEnvFile = join(stateDir, 'invoke-local.env.json');
  writeFileAtomic(invokeEnvFile, `${JSON.stringify(invokeEnv, null, 2)}\n`, 0o644);
  stops.push(async () => rmSync(invokeEnvFile, { force: true }));

  // 6. The real bundles, configured from that environment at their cold start.
  const bundleDir = opts.bundleDir ?? join(repo, 'dist');
  const bundle = join(bundleDir, 'vend', 'index.js');
  if (!existsSync(bundle)) throw new Error(`${bundle} is missing: run npm run build (npm start does)`);
  live.handler = ((await import(pathToFileURL(bundle).href)) as { handler: VendHandler }).handler;
  // The scheduled refresher, as EventBridge would run it: the real refresh bundle, every minute.
  const { handler: refresh } = (await import(pathToFileURL(join(bundleDir, 'refresh', 'index.js')).href)) as { handler: (event: unknown) => Promise<unknown> };
  const schedule = setInterval(() => {
    refresh({ source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {} }).catch((error: unknown) =>
      console.error(`scheduled refresh failed: ${error instanceof Error ? error.message : String(error)}`),
    );
  }, 60_000);
  stops.push(async () => clearInterval(schedule));

  // 7. Vend the first grant, with the client internal services import, as its first principal.
  const [firstGrant] = served.grants;
  const firstPrincipal = principals[0]?.[0];
  const caller = credentials.find((c) => c.principalArn === firstPrincipal?.arn);
  if (firstGrant === undefined || caller === undefined) throw new Error('no grant to vend');
  const keys = { accessKeyId: caller.accessKeyId, secretAccessKey: caller.secretAccessKey, ...(caller.sessionToken === undefined ? {} : { sessionToken: caller.sessionToken }) };
  const scope = [...new Set(firstGrant.scopes)].join(' ');
  const client = new TokenVendorClient({ endpoint: gateway.url, region: LOCAL_REGION, credentials: keys, serverId: PROOF_SERVER_ID, stsEndpoint: sts.origin });
  const token = await client.getToken({ audience: firstGrant.audience, scope });
  const expiresIn = Math.floor((token.expiresAt - Date.now()) / 1000);

  const audiences = new Set(served.grants.map((g) => g.audience));
  const stateNote = env[STATE_DIR_VARIABLE]?.trim() ? stateDir : undefined;
  console.log('');
  console.log(`grants: ${shown(grantsFile)} served from ${shown(servedFile)} (domains set to ${tenant.origin}): ${served.clients.size} client(s), ${served.grants.length} grant(s), ${audiences.size} audience(s)`);
  console.log(`Auth0 tenant (oidc-provider) at ${tenant.issuer}: ${plan.clients.map((c) => `${c.name} (${c.authMethod})`).join(', ')}`);
  console.log(`token vendor listening at ${gateway.url}/token (SigV4, region ${LOCAL_REGION}, service execute-api)`);
  console.log(`STS stand-in (GetCallerIdentity, identity proofs) at ${sts.origin}, proof server id ${PROOF_SERVER_ID}`);
  console.log(`Lambda Invoke stand-in at ${lambda.origin} (function ${VEND_FUNCTION})`);
  console.log(`local keys: ${shown(credentialsFile)}, ${credentials.length} principal(s)${added.length === 0 ? '' : `, added ${added.join(', ')}`}`);
  console.log(`vended to ${caller.principalArn}: fingerprint=${fingerprint(token.accessToken)} expires_in=${expiresIn} scope="${token.scope}"`);
  console.log('');
  console.log('each grant, vended with its principal\'s local key and a fresh identity proof (docs/identity-proof.md);');
  console.log('the token alone on stdout:');
  served.grants.forEach((grant, i) => {
    const principal = principals[i]?.[0];
    if (principal === undefined) return;
    const example = principal.arn === principal.pattern ? '' : ` (${principal.pattern})`;
    console.log(`  # grants[${i}]: ${principal.arn}${example} -> ${grant.audience}`);
    console.log(`  ${tokenCommand({ target: { endpoint: gateway.url }, principalArn: principal.arn, audience: grant.audience, scopes: [...new Set(grant.scopes)], ...(stateNote === undefined ? {} : { stateDir: stateNote }) })}`);
  });
  const firstArn = firstPrincipal?.arn ?? caller.principalArn;
  console.log('the same by direct invocation, as a scheduled job calls the function:');
  console.log(`  ${tokenCommand({ target: { functionName: VEND_FUNCTION, lambdaEndpoint: lambda.origin }, principalArn: firstArn, audience: firstGrant.audience, scopes: [...new Set(firstGrant.scopes)], ...(stateNote === undefined ? {} : { stateDir: stateNote }) })}`);
  console.log('or run the function as Lambda would, through osls, against this stack (the script adds a fresh');
  console.log('identity proof signed with the first key of .local/credentials.json to an event that has none):');
  console.log('  npm run invoke:local -- events/direct-invoke.json');
  console.log('and the incident tools against it:');
  console.log('  npm run ops -- status --local        npm run ops -- rotate --client <client> --local');
  console.log(`state: ${join(shownDir, STACK_STATE_FILE)} (pid ${process.pid}). Ctrl-C stops everything.`);
}

function parseJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as unknown;
  } catch (error) {
    throw new StartRefused(`${file} cannot be read as JSON: ${oneLine(error instanceof Error ? error.message : String(error))}`, 1);
  }
}

/** What runs already, and the two ways on: use or stop it, or run another with its own PORT and state. */
function alreadyRunning(state: StackState, shownDir: string, port: number): string {
  const other = state.port === port || port === 0 ? state.port + 1 : port;
  return [
    `a local stack is already running from ${shownDir}: pid ${state.pid}, ${state.gatewayUrl} (PORT=${state.port}, started ${state.startedAt}, grants ${state.grantsFile}).`,
    `  Use it (npm run -s token -- --local ...), or stop it first (Ctrl-C where it runs, or kill ${state.pid}) and start again.`,
    `  To run another stack beside it, give it a free PORT and its own state directory (${STATE_DIR_VARIABLE}):`,
    `    PORT=${other} ${STATE_DIR_VARIABLE}=${shownDir === '.local' ? '.local-' + String(other) : `${shownDir}-${other}`} npm start`,
  ].join('\n');
}

/** The port is someone else's: name it, and a free one to choose. */
async function portTaken(port: number, availability: string, shownDir: string): Promise<string> {
  let suggestion: number | undefined;
  for (let candidate = port + 1; candidate <= Math.min(port + 50, 65_535) && suggestion === undefined; candidate++) {
    if ((await portAvailability(candidate)) === 'free') suggestion = candidate;
  }
  const why = availability === 'in-use' ? `is in use by another program (no running stack is recorded in ${join(shownDir, STACK_STATE_FILE)})` : `cannot be used (${availability})`;
  return [
    `PORT=${port}: 127.0.0.1:${port} ${why}.`,
    `  Choose another port: PORT=${suggestion ?? '<port>'} npm start   (PORT=0 picks a free one)`,
  ].join('\n');
}
