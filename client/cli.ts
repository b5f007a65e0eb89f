#!/usr/bin/env node
/**
 * `npm run token -- --audience AUD ...`: an access token for shell use, printed alone on stdout so
 * that `TOKEN=$(npm run -s token -- ...)` works. The usage is in client/cliArgs.ts.
 *
 * Nothing but the token is ever printed on stdout, and nothing secret on stderr: failures are one
 * line with the error code and the vendor's description, never a credential, a signature or the
 * proof (which carries a session token).
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseTokenArgs, USAGE, type TokenRun } from './cliArgs.js';
import { TokenVendorError } from './errors.js';
import { TokenVendorClient, type TokenVendorClientOptions, type TokenVendorCredentials } from './tokenVendorClient.js';

/** What `npm start` (local/stack.ts) serves, when its state does not say otherwise. */
const LOCAL_DEFAULTS = { endpoint: 'http://127.0.0.1:3000/local', region: 'eu-west-1', serverId: 'token-vendor-local' } as const;

/** The local stack's state cannot be read: it is not running here (exit 1, not a usage error). */
class LocalStateError extends Error {
  override name = 'LocalStateError';
}

// Callers' machines may run Node 20; the SDK's notice about 2027 releases is noise on stderr.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const parsed = parseTokenArgs(process.argv.slice(2), process.env);
if (parsed.kind === 'help') {
  await finish(0, `${parsed.text}\n`);
} else if (parsed.kind === 'error') {
  process.stderr.write(`token: ${oneLine(parsed.message)}\n\n${USAGE}\n`);
  await finish(2);
} else {
  await run(parsed);
}

async function run(args: TokenRun): Promise<void> {
  let client: TokenVendorClient;
  try {
    client = new TokenVendorClient(args.local ? localOptions(args) : clientOptions(args, {}));
  } catch (error) {
    // A value the client refuses (TypeError) or a missing flag is bad usage, exit 2; local state
    // that cannot be read means the stack is not there, exit 1.
    process.stderr.write(`token: ${oneLine(error instanceof Error ? error.message : String(error))}\n`);
    return finish(error instanceof LocalStateError ? 1 : 2);
  }
  try {
    const token = await client.getToken({
      audience: args.audience,
      ...(args.scope === undefined ? {} : { scope: args.scope }),
      ...(args.organization === undefined ? {} : { organization: args.organization }),
    });
    return finish(0, `${token.accessToken}\n`);
  } catch (error) {
    process.stderr.write(`token: ${oneLine(describe(error))}\n`);
    return finish(1);
  }
}

/** The options from the flags, over `base` (the local stack's values). */
function clientOptions(args: TokenRun, base: Partial<LocalState>): TokenVendorClientOptions {
  const region = args.region ?? base.region;
  const serverId = args.serverId ?? base.serverId;
  if (region === undefined || serverId === undefined) throw new Error('--region and --server-id are required');
  const stsEndpoint = args.stsEndpoint ?? base.stsEndpoint;
  const common = {
    region,
    serverId,
    ...(stsEndpoint === undefined ? {} : { stsEndpoint }),
    ...(base.credentials === undefined ? {} : { credentials: base.credentials }),
  };
  if (args.functionName !== undefined) {
    const lambdaEndpoint = args.lambdaEndpoint ?? base.lambdaEndpoint;
    return { ...common, functionName: args.functionName, ...(lambdaEndpoint === undefined ? {} : { lambdaEndpoint }) };
  }
  const endpoint = args.endpoint ?? base.endpoint;
  if (endpoint === undefined) throw new Error('--endpoint or --function is required');
  return { ...common, endpoint };
}

interface LocalState {
  endpoint: string;
  region: string;
  serverId: string;
  stsEndpoint?: string;
  lambdaEndpoint?: string;
  credentials: TokenVendorCredentials;
}

/**
 * `--local`: the stack `npm start` runs (local/localStack.ts). Its state directory holds the keys
 * its gateway and STS stand-in accept (`credentials.json`: `--as ARN` picks the principal's, the
 * first one signs otherwise) and, while it runs, `stack.json` (local/stackState.ts: the gateway
 * URL, the STS and Lambda Invoke origins, server id and region) and the function's environment
 * (`invoke-local.env.json`, whose STS_ENDPOINT, PROOF_SERVER_ID and AWS_REGION stand in for a stack
 * started before stack.json existed). That file's AWS_ACCESS_KEY_ID is the emulator's, the
 * function's own, and is never used to sign. Without either file the gateway is `npm start`'s
 * default URL. Flags override all of it.
 */
function localOptions(args: TokenRun): TokenVendorClientOptions {
  // TOKEN_VENDOR_LOCAL_DIR: another stack's state directory (the tests use their own). npm runs
  // scripts in the package root; a relative directory means one under where the user typed it
  // (INIT_CWD, as npm start reads it too).
  const chosenDir = process.env.TOKEN_VENDOR_LOCAL_DIR;
  const stateDir = chosenDir ? resolve(process.env.INIT_CWD ?? process.cwd(), chosenDir) : join(resolve(dirname(fileURLToPath(import.meta.url)), '..'), '.local');
  const keysFile = join(stateDir, 'credentials.json');
  const keys = readState(keysFile, true);
  const entries: unknown[] = Array.isArray(keys) ? keys : [];
  const field = (entry: unknown, name: string): unknown => (typeof entry === 'object' && entry !== null ? (entry as Record<string, unknown>)[name] : undefined);
  const chosen = args.as === undefined ? entries[0] : entries.find((entry) => field(entry, 'principalArn') === args.as);
  if (chosen === undefined && args.as !== undefined) {
    const known = entries.map((entry) => field(entry, 'principalArn')).filter((arn): arn is string => typeof arn === 'string');
    throw new LocalStateError(`--as: ${keysFile} holds no key for ${args.as} (npm start adds one for each principal its grants name; it has: ${known.join(', ') || 'none'})`);
  }
  const [accessKeyId, secretAccessKey, sessionToken] = ['accessKeyId', 'secretAccessKey', 'sessionToken'].map((name) => field(chosen, name));
  if (typeof accessKeyId !== 'string' || typeof secretAccessKey !== 'string') throw new LocalStateError(`--local: ${keysFile} holds no credentials`);
  const credentials = { accessKeyId, secretAccessKey, ...(typeof sessionToken === 'string' ? { sessionToken } : {}) };

  // Both absent once the stack stops; flags can stand in for them.
  const text = (value: unknown): string | undefined => (typeof value === 'string' && value !== '' ? value : undefined);
  const stack = asRecord(readState(join(stateDir, 'stack.json'), false));
  const flagsSuffice = args.stsEndpoint !== undefined && args.serverId !== undefined;
  const env = asRecord(readState(join(stateDir, 'invoke-local.env.json'), Object.keys(stack).length === 0 && !flagsSuffice));
  const stsEndpoint = text(stack.stsOrigin) ?? text(env.STS_ENDPOINT);
  const lambdaEndpoint = text(stack.lambdaOrigin);
  return clientOptions(args, {
    endpoint: text(stack.gatewayUrl) ?? LOCAL_DEFAULTS.endpoint,
    region: text(stack.region) ?? text(env.AWS_REGION) ?? LOCAL_DEFAULTS.region,
    serverId: text(stack.serverId) ?? text(env.PROOF_SERVER_ID) ?? LOCAL_DEFAULTS.serverId,
    ...(stsEndpoint === undefined ? {} : { stsEndpoint }),
    ...(lambdaEndpoint === undefined ? {} : { lambdaEndpoint }),
    credentials,
  });
}

function asRecord(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

/** A state file's JSON; `undefined` for a missing file that is not `required`. */
function readState(file: string, required: boolean): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && !required) return undefined;
    throw new LocalStateError(`--local: ${file} cannot be read: is the local stack running (npm start)?`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new LocalStateError(`--local: ${file} is not JSON`);
  }
}

/** One line for stderr: the code and status a script can act on, and the message. */
function describe(error: unknown): string {
  if (error instanceof TokenVendorError) {
    const retry = error.retryAfterSeconds === undefined ? '' : ` (retry after ${error.retryAfterSeconds} s)`;
    return `${error.code}${error.status === 0 ? '' : ` ${error.status}`}: ${error.message}${retry}`;
  }
  // Name and message only, never the object: a cause can carry the signed request.
  return error instanceof Error ? `${error.name}: ${error.message}` : 'unexpected failure';
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ');
}

/** Write, then exit: the credential chain's and fetch's kept-alive sockets would hold the process open. */
async function finish(code: number, stdout = ''): Promise<never> {
  if (stdout !== '') await new Promise<void>((done) => process.stdout.write(stdout, () => done()));
  process.exit(code);
}
