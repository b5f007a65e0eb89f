/**
 * `npm run ops -- <command>`: incident response for the token vendor (README, "Runbook").
 *
 *   status                              the cache: per token its fingerprint, client, audience, scopes,
 *                                       expiry, fetch time and last use (never a token); leases; back-offs
 *   flush   --client C [--audience A]   remove a client's cached tokens (every instance drops its copy
 *                                       within MEMORY_REVALIDATE_SECONDS; the next request fetches anew)
 *   refresh --client C [--audience A]   fetch new tokens now, replacing the cached ones
 *   rotate  --client C                  start a credential rotation now (Secrets Manager RotateSecret;
 *                                       with --local, the four steps run here against the local stack)
 *
 * Where: `--stage S` (the deployed stack: table token-vendor-S, your AWS credentials and region,
 * grants.json or --grants FILE), or `--local` (the stack `npm start` runs), or `--env-file F`
 * (an environment file like .local/invoke-local.env.json). `--json` prints machine-readable output;
 * `--verbose` adds the function's own structured logs.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ScanCommand, DynamoDBClient, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { RotateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { loadConfig } from '../functions/config.js';
import type { TokenRecord } from '../functions/core/ports.js';
import { describe } from '../functions/core/errors.js';
import { createVendor } from '../functions/vendor.js';

// Operators' machines may run Node 20; the SDK's notice about 2027 releases is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const USAGE = `usage: npm run ops -- <status|flush|refresh|rotate> [--client C] [--audience A] (--stage S | --local | --env-file F) [--grants FILE] [--json] [--verbose]`;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    client: { type: 'string' },
    audience: { type: 'string' },
    stage: { type: 'string' },
    local: { type: 'boolean', default: false },
    'env-file': { type: 'string' },
    grants: { type: 'string' },
    json: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
  },
});
const command = positionals[0];
if (command === undefined || !['status', 'flush', 'refresh', 'rotate'].includes(command)) fail(USAGE);

// --- where --------------------------------------------------------------------------------
const envFile = values['env-file'] ?? (values.local ? '.local/invoke-local.env.json' : undefined);
const fileEnv = envFile === undefined ? {} : readEnvFile(envFile);
const stage = values.stage ?? (envFile !== undefined ? 'local' : undefined);
if (stage === undefined) fail(`say where: --stage <stage>, --local or --env-file <file>\n${USAGE}`);
// The SDK reads AWS_ENDPOINT_URL, AWS_REGION and credentials from the environment.
// The function's structured logs would mix with this tool's output: off unless --verbose.
Object.assign(process.env, fileEnv, { POWERTOOLS_LOG_LEVEL: values.verbose ? 'INFO' : 'SILENT', POWERTOOLS_METRICS_DISABLED: 'true' });
const env = {
  ...process.env,
  TOKEN_TABLE_NAME: fileEnv.TOKEN_TABLE_NAME ?? `token-vendor-${stage}`,
  TOKEN_SEAL_KEY_ID: fileEnv.TOKEN_SEAL_KEY_ID ?? `alias/token-vendor-${stage}`,
  GRANTS_FILE: resolve(values.grants ?? fileEnv.GRANTS_FILE ?? 'grants.json'),
};
const config = loadConfig(env);
const vendor = createVendor(config);

// --- what ---------------------------------------------------------------------------------
const client = values.client;
if (command !== 'status') {
  if (client === undefined) fail(`${command} needs --client <name from grants.json>`);
  if (!config.grants.clients.has(client)) fail(`no client "${client}" in ${env.GRANTS_FILE}; known: ${[...config.grants.clients.keys()].join(', ')}`);
}

try {
  const output = await run();
  if (values.json) console.log(JSON.stringify(output, null, 2));
  process.exit(0);
} catch (error) {
  // Name and message only, never the error object: causes can carry requests.
  const { name, message } = describe(error);
  console.error(`${command} failed: ${name}: ${message}`);
  process.exit(1);
}

async function run(): Promise<unknown> {
  switch (command) {
    case 'status':
      return status();
    case 'flush': {
      const removed = await vendor.service.flush(client!, values.audience);
      say(`flushed ${removed} cached token(s) of ${client}${values.audience ? ` for ${values.audience}` : ''}; instances drop their copies within ${config.memoryRevalidateMs / 1000} s`);
      return { flushed: removed };
    }
    case 'refresh': {
      const tokens = (await vendor.refresher.list()).filter((t) => t.client === client && (values.audience === undefined || t.audience === values.audience));
      const results = [];
      for (const token of tokens) {
        const request = config.grants.requestFor(token.client, token.audience, token.scopes);
        if (request === undefined) {
          results.push({ audience: token.audience, scopes: token.scopes, outcome: 'ungranted' });
          continue;
        }
        // No look-ahead limit: due or not, replace it now.
        const outcome = await vendor.service.refresh(request, Number.MAX_SAFE_INTEGER);
        results.push({ audience: token.audience, scopes: token.scopes, outcome });
      }
      for (const r of results) say(`${r.outcome.padEnd(9)} ${r.audience} [${r.scopes.join(' ')}]`);
      if (results.length === 0) say(`no cached token of ${client} to refresh`);
      return { refreshed: results };
    }
    case 'rotate':
      return rotate(client!);
    default:
      return fail(USAGE);
  }
}

async function status(): Promise<unknown> {
  const now = Date.now();
  const tokens = (await vendor.refresher.list()).map((t: TokenRecord) => ({
    fingerprint: t.fingerprint,
    client: t.client,
    audience: t.audience,
    scopes: t.scopes.join(' '),
    expiresAt: new Date(t.expiresAt * 1000).toISOString(),
    expiresIn: Math.floor(t.expiresAt - now / 1000),
    fetchedAt: new Date(t.fetchedAt).toISOString(),
    lastUsedAt: t.lastUsedAt === undefined ? null : new Date(t.lastUsedAt).toISOString(),
  }));
  // Leases and back-offs, straight from the table: their keys are hashes, never secrets.
  const items: Array<Record<string, AttributeValue>> = [];
  const dynamodb = new DynamoDBClient({});
  let startKey: Record<string, AttributeValue> | undefined;
  do {
    const page = await dynamodb.send(new ScanCommand({ TableName: config.tableName, ConsistentRead: true, ...(startKey ? { ExclusiveStartKey: startKey } : {}) }));
    items.push(...(page.Items ?? []));
    startKey = page.LastEvaluatedKey;
  } while (startKey !== undefined);
  const other = items.map((i) => ({ pk: i.pk?.S ?? '', until: Number(i.leaseUntil?.N ?? i.until?.N ?? NaN), reason: i.reason?.S }));
  const leases = other.filter((i) => i.pk.startsWith('lease#') && i.until > now).map((i) => ({ key: i.pk.slice(6), until: new Date(i.until).toISOString() }));
  const backoffs = other.filter((i) => i.pk.startsWith('backoff#') && i.until > now).map((i) => ({ clientKey: i.pk.slice(8), reason: i.reason, until: new Date(i.until).toISOString() }));
  if (!values.json) {
    say(`table ${config.tableName}: ${tokens.length} token(s), ${leases.length} active lease(s), ${backoffs.length} active back-off(s)`);
    for (const t of tokens) say(`  ${t.fingerprint}  ${t.client}  ${t.audience}  [${t.scopes}]  expires in ${t.expiresIn} s (${t.expiresAt})  fetched ${t.fetchedAt}  last used ${t.lastUsedAt ?? '-'}`);
    for (const b of backoffs) say(`  back-off ${b.clientKey} (${b.reason}) until ${b.until}`);
  }
  return { table: config.tableName, tokens, leases, backoffs };
}

async function rotate(name: string): Promise<unknown> {
  const secretId = config.grants.clients.get(name)!.secretId;
  if (envFile === undefined) {
    // Deployed: Secrets Manager runs the rotate function's four steps.
    const out = await new SecretsManagerClient({}).send(new RotateSecretCommand({ SecretId: secretId, RotateImmediately: true }));
    say(`rotation of ${name} started: secret ${out.Name}, version ${out.VersionId}; follow it in the rotate function's log`);
    return { started: true, versionId: out.VersionId };
  }
  // Local: no Lambda service to call back, so play Secrets Manager here.
  const token = randomUUID();
  for (const step of ['createSecret', 'setSecret', 'testSecret', 'finishSecret'] as const) {
    await vendor.rotationHandler({ SecretId: secretId, ClientRequestToken: token, Step: step });
    say(`${step} done`);
  }
  say(`rotated ${name}: version ${token} is AWSCURRENT`);
  return { rotated: true, versionId: token };
}

function readEnvFile(path: string): Record<string, string> {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, string>;
  } catch {
    return fail(`${path} cannot be read: is the local stack running (npm start)?`);
  }
}

function say(line: string): void {
  if (!values.json) console.log(line);
}

function fail(message: string): never {
  console.error(message);
  process.exit(2);
}
