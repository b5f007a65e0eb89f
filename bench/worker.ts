/**
 * One "Lambda instance" of the benchmark, in its own OS process. Modes:
 *   vendor        — this product: createVendor() over the shared DynamoDB table;
 *   per-instance  — an Auth0-SDK-style per-process cache (bench/baselines.ts);
 *   no-cache      — a token per request.
 * Its clock is the real one plus an offset the orchestrator moves (simulated time). It speaks
 * JSON lines: {"cmd":"time","offsetMs"}, {"cmd":"burst","n"}, {"cmd":"sequential","n"}, {"cmd":"exit"};
 * it answers each with one line `BENCH {...}`.
 */
import { createInterface } from 'node:readline';
import { GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { loadConfig } from '../functions/config.js';
import { createVendor } from '../functions/vendor.js';
import { localSecretsManager } from '../local/seed.js';
import { countingObserver } from '../test/helpers/countingObserver.js';
import { apiEvent } from '../test/helpers/events.js';
import { NoCache, PerInstanceCache, type TokenSource } from './baselines.js';

const mode = process.argv[2] ?? 'vendor';
const audience = process.env.BENCH_AUDIENCE ?? '';
const scope = process.env.BENCH_SCOPE ?? '';
const callerArn = process.env.BENCH_CALLER_ARN ?? '';
// The storm split between Auth0 organizations, request by request (empty: no organization).
const organizations = (process.env.BENCH_ORGANIZATIONS ?? '').split(',').filter((o) => o !== '');
let sent = 0;
let offset = 0;
const now = () => Date.now() + offset;

/** Counts what the vendor does, so a request that waited on the IdP can be told apart. */
const { observer, counts } = countingObserver();

async function sourceFor(): Promise<{ request: () => Promise<number>; idle: () => Promise<void> }> {
  if (mode === 'vendor') {
    const vendor = createVendor(loadConfig(process.env), { now, observer });
    const bodyFor = (organization: string | undefined) => JSON.stringify(organization === undefined ? { audience, scope } : { audience, scope, organization });
    return {
      request: async () => {
        const organization = organizations.length === 0 ? undefined : organizations[(sent += 1) % organizations.length];
        return ((await vendor.handler(apiEvent({ body: bodyFor(organization), userArn: callerArn }))) as { statusCode: number }).statusCode;
      },
      idle: () => vendor.service.idle(),
    };
  }
  // What a service holding the secret does today: read it once, then ask Auth0 itself.
  const secret = await localSecretsManager(process.env.AWS_ENDPOINT_URL ?? '').send(new GetSecretValueCommand({ SecretId: process.env.BENCH_SECRET_ID }));
  const { client_id: clientId, client_secret: clientSecret } = JSON.parse(secret.SecretString ?? '{}') as Record<string, string>;
  const client = { tokenUrl: process.env.BENCH_TOKEN_URL ?? '', clientId: clientId ?? '', clientSecret: clientSecret ?? '', audience, scope };
  const source: TokenSource = mode === 'per-instance' ? new PerInstanceCache(client, now) : new NoCache(client);
  return {
    request: () => source.getToken().then(() => 200, () => 502),
    idle: async () => {},
  };
}

const { request, idle } = await sourceFor();
const reply = (doc: unknown) => process.stdout.write(`BENCH ${JSON.stringify(doc)}\n`);
reply({ ready: true });

for await (const line of createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line) as { cmd: string; offsetMs?: number; n?: number };
  if (cmd.cmd === 'time') {
    offset = cmd.offsetMs ?? 0;
    reply({ ok: true });
  } else if (cmd.cmd === 'burst') {
    const statuses = await Promise.all(Array.from({ length: cmd.n ?? 1 }, request));
    await idle();
    reply({ statuses });
  } else if (cmd.cmd === 'sequential') {
    const statuses: number[] = [];
    let waited = 0;
    for (let i = 0; i < (cmd.n ?? 1); i += 1) {
      const before = counts.miss + counts.leaseWait;
      statuses.push(await request());
      // a miss fetched from the IdP, or waited for another instance that did: either way this
      // request waited on the IdP (background refreshes are counted separately, by cause)
      if (counts.miss + counts.leaseWait > before) waited += 1;
    }
    await idle();
    reply({ statuses, waited, fetches: counts.fetches });
  } else if (cmd.cmd === 'exit') {
    break;
  }
}
process.exit(0);
