/**
 * `npm start`: the whole product on this machine, with real components.
 *
 * - moto_server stands in for Secrets Manager and DynamoDB;
 * - an oidc-provider tenant stands in for Auth0 (`/oauth/token`, JSON bodies, `audience`, RS256 JWTs);
 * - the real vend bundle (dist/vend/index.js) serves POST /token behind a local gateway that
 *   verifies SigV4 as API Gateway's AWS_IAM does, with access keys mapped to role ARNs by
 *   .local/credentials.json (generated on first start, never committed);
 * - an STS stand-in (local/sts.ts) answers the presigned GetCallerIdentity of every identity
 *   proof (docs/identity-proof.md), verified against the same credentials file (moto's STS does
 *   not verify signatures); the function reaches it through STS_ENDPOINT;
 * - a Lambda Invoke stand-in (local/lambdaInvoke.ts) serves the same vend handler to direct
 *   invocations, as the caller client's direct mode (scheduled jobs) calls it.
 *
 * Once up, it vends a token to a signed caller with the caller client, prints the fingerprint,
 * expires_in and scope, and keeps serving until Ctrl-C, which stops everything it started.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { TokenVendorClient } from '../client/index.js';
import { fingerprint } from '../functions/core/tokenIdentity.js';
import { startLocalAuth0Tenant } from './auth0Tenant.js';
import { startLocalGateway, type LocalCredential } from './gateway.js';
import { startLocalLambdaInvoke } from './lambdaInvoke.js';
import { startMoto } from './moto.js';
import { startLocalSts } from './sts.js';
import { LOCAL_REGION, LOCAL_SEAL_KEY_ALIAS, createSealKey, createTokenTable, localDynamoDb, localFunctionEnv, localKms, localSecretsManager, putClientSecret } from './seed.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');
const stateDir = join(repo, '.local');
const AUDIENCE = 'https://orders.example.com';
const CALLER_ROLE = 'arn:aws:iam::111122223333:role/checkout-service';
const TABLE = 'token-vendor-local';
const SECRET_ID = 'token-vendor/local/orders-m2m';
const ROTATOR_SECRET_ID = 'token-vendor/local/auth0-rotator';
const STAGE = 'local';
/** docs/identity-proof.md: the local stack's proof server id */
const PROOF_SERVER_ID = 'token-vendor-local';
/** The vend function's name as `osls deploy --stage local` would name it (service-stage-function). */
const VEND_FUNCTION = `token-vendor-${STAGE}-vend`;

const stops: Array<() => Promise<void>> = [];
let stopping = false;

async function stopAll(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    for (const stop of stops.reverse()) await stop().catch((e: unknown) => console.error('stop failed:', e));
  }
  process.exit(code);
}
process.on('SIGINT', () => void stopAll(0));
process.on('SIGTERM', () => void stopAll(0));

/** The local credentials file: access keys that the gateway maps to IAM principals. */
function localCredentials(): LocalCredential[] {
  const file = join(stateDir, 'credentials.json');
  if (!existsSync(file)) {
    mkdirSync(stateDir, { recursive: true });
    const creds: LocalCredential[] = [
      {
        accessKeyId: `AKIALOCAL${randomBytes(6).toString('hex').toUpperCase()}`,
        secretAccessKey: randomBytes(30).toString('base64url'),
        principalArn: CALLER_ROLE,
        sessionName: 'local-caller',
      },
    ];
    writeFileSync(file, `${JSON.stringify(creds, null, 2)}\n`, { mode: 0o600 });
  }
  return JSON.parse(readFileSync(file, 'utf8')) as LocalCredential[];
}

async function main(): Promise<void> {
  // Local machines may run Node 20; the deployed runtime is nodejs22.x. Keep the console readable.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const port = Number(process.env.PORT ?? '3000');
  console.log('starting moto_server (Secrets Manager, DynamoDB) ...');
  const moto = await startMoto();
  stops.push(() => moto.stop());

  // The Auth0 stand-in. Its client secret exists here and in Secrets Manager, nowhere else.
  const clientSecret = randomBytes(24).toString('base64url');
  // A second client holds the Management API grant that rotation uses (npm run ops -- rotate --local).
  const rotatorSecret = randomBytes(24).toString('base64url');
  const tenant = await startLocalAuth0Tenant({
    managementApi: true,
    clients: [
      { clientId: 'local-orders-m2m', clientSecret, authMethod: 'client_secret_post' },
      { clientId: 'local-auth0-rotator', clientSecret: rotatorSecret, authMethod: 'client_secret_post' },
    ],
    apis: [{ audience: AUDIENCE, scopes: ['read:orders', 'write:orders'] }],
    clientGrants: {
      'local-orders-m2m': { [AUDIENCE]: ['read:orders', 'write:orders'] },
      'local-auth0-rotator': { management: ['update:client_keys'] },
    },
  });
  stops.push(() => tenant.close());
  console.log(`Auth0 tenant (oidc-provider) at ${tenant.issuer}`);

  const dynamodb = localDynamoDb(moto.endpoint);
  const secrets = localSecretsManager(moto.endpoint);
  await createTokenTable(dynamodb, TABLE);
  await createSealKey(localKms(moto.endpoint), LOCAL_SEAL_KEY_ALIAS);
  await putClientSecret(secrets, SECRET_ID, { client_id: 'local-orders-m2m', client_secret: clientSecret });
  await putClientSecret(secrets, ROTATOR_SECRET_ID, { client_id: 'local-auth0-rotator', client_secret: rotatorSecret });

  const grantsFile = join(stateDir, 'grants.local.json');
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(
    grantsFile,
    `${JSON.stringify(
      {
        clients: {
          'orders-m2m': { domain: tenant.origin, secretId: SECRET_ID, authMethod: 'client_secret_post', rotation: { managementClient: 'auth0-rotator' } },
          'auth0-rotator': { domain: tenant.origin, secretId: ROTATOR_SECRET_ID },
        },
        grants: [{ principals: [CALLER_ROLE], directInvoke: true, client: 'orders-m2m', audience: AUDIENCE, scopes: ['read:orders', 'write:orders'] }],
      },
      null,
      2,
    )}\n`,
  );

  // The STS stand-in knows the same keys as the gateway: a proof is signed with the caller's own key.
  const credentials = localCredentials();
  const sts = await startLocalSts({ credentials, region: LOCAL_REGION });
  stops.push(() => sts.close());

  // What points the function at this stack: the SDK reaches moto via AWS_ENDPOINT_URL, proofs are
  // checked against the STS stand-in. It is also what `npm run invoke:local` passes to
  // `osls invoke local` (and signs its proofs for), and what `npm run ops -- --local` reads.
  const invokeEnv = {
    ...localFunctionEnv({ motoEndpoint: moto.endpoint, grantsFile, sealKeyId: LOCAL_SEAL_KEY_ALIAS }),
    STS_ENDPOINT: sts.origin,
    PROOF_SERVER_ID,
  };
  // The function's environment, as Lambda would set it.
  Object.assign(process.env, invokeEnv, {
    TOKEN_TABLE_NAME: TABLE,
    POWERTOOLS_SERVICE_NAME: 'token-vendor',
    POWERTOOLS_METRICS_DISABLED: process.env.POWERTOOLS_METRICS_DISABLED ?? 'true',
  });
  writeFileSync(join(stateDir, 'invoke-local.env.json'), `${JSON.stringify(invokeEnv, null, 2)}\n`);
  stops.push(async () => rmSync(join(stateDir, 'invoke-local.env.json'), { force: true }));

  const bundle = join(repo, 'dist', 'vend', 'index.js');
  if (!existsSync(bundle)) throw new Error(`${bundle} is missing: run npm run build (npm start does)`);
  const { handler } = (await import(pathToFileURL(bundle).href)) as {
    handler: (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>;
  };

  // The scheduled refresher, as EventBridge would run it: the real refresh bundle, every minute.
  const refreshBundle = join(repo, 'dist', 'refresh', 'index.js');
  const { handler: refresh } = (await import(pathToFileURL(refreshBundle).href)) as { handler: (event: unknown) => Promise<unknown> };
  const schedule = setInterval(() => {
    refresh({ source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {} }).catch((error: unknown) =>
      console.error(`scheduled refresh failed: ${error instanceof Error ? error.message : String(error)}`),
    );
  }, 60_000);
  stops.push(async () => clearInterval(schedule));

  const gateway = await startLocalGateway({ port, region: LOCAL_REGION, stage: STAGE, credentials, handler });
  stops.push(() => gateway.close());
  // Direct invocation (Lambda Invoke) of the same handler, for the client's functionName mode.
  const lambda = await startLocalLambdaInvoke({
    region: LOCAL_REGION,
    credentials,
    functions: { [VEND_FUNCTION]: handler as (event: unknown, context: Context) => Promise<unknown> },
  });
  stops.push(() => lambda.close());

  // The signed caller, with the client internal services import.
  const caller = credentials[0];
  if (caller === undefined) throw new Error(`${join(stateDir, 'credentials.json')} holds no credentials`);
  const callerCredentials = { accessKeyId: caller.accessKeyId, secretAccessKey: caller.secretAccessKey };
  const client = new TokenVendorClient({ endpoint: gateway.url, region: LOCAL_REGION, credentials: callerCredentials, serverId: PROOF_SERVER_ID, stsEndpoint: sts.origin });
  const token = await client.getToken({ audience: AUDIENCE, scope: 'read:orders' });
  const expiresIn = Math.floor((token.expiresAt - Date.now()) / 1000);

  console.log('');
  console.log(`token vendor listening at ${gateway.url}/token (SigV4, region ${LOCAL_REGION}, service execute-api)`);
  console.log(`STS stand-in (GetCallerIdentity, identity proofs) at ${sts.origin}, proof server id ${PROOF_SERVER_ID}`);
  console.log(`Lambda Invoke stand-in at ${lambda.origin} (function ${VEND_FUNCTION})`);
  console.log(`vended to ${caller.principalArn}: fingerprint=${fingerprint(token.accessToken)} expires_in=${expiresIn} scope="${token.scope}"`);

  // The same, by direct invocation (a scheduled job's path). Not fatal: the API path above is the demo.
  try {
    const direct = new TokenVendorClient({
      functionName: VEND_FUNCTION,
      lambdaEndpoint: lambda.origin,
      region: LOCAL_REGION,
      credentials: callerCredentials,
      serverId: PROOF_SERVER_ID,
      stsEndpoint: sts.origin,
    });
    const invoked = await direct.getToken({ audience: AUDIENCE, scope: 'read:orders' });
    console.log(`vended by direct invocation: fingerprint=${fingerprint(invoked.accessToken)} scope="${invoked.scope}"`);
  } catch (error) {
    console.error(`direct invocation failed: ${error instanceof Error ? error.message : String(error)}`);
  }
  console.log('');
  console.log('try it: a token on stdout, signed with the local credentials in .local/credentials.json, with a fresh');
  console.log('identity proof (docs/identity-proof.md) that the command adds:');
  console.log(`  npm run -s token -- --local --endpoint ${gateway.url} --audience ${AUDIENCE} --scope read:orders`);
  console.log(`  npm run -s token -- --local --function ${VEND_FUNCTION} --lambda-endpoint ${lambda.origin} --audience ${AUDIENCE} --scope read:orders`);
  console.log('or run the function as Lambda would, through osls, against this stack (the script adds a fresh');
  console.log('identity proof signed with the first key of .local/credentials.json to an event that has none):');
  console.log('  npm run invoke:local -- events/direct-invoke.json');
  console.log('and the incident tools against it:');
  console.log('  npm run ops -- status --local        npm run ops -- rotate --client orders-m2m --local');
  console.log('Ctrl-C stops everything.');
}

main().catch(async (error: unknown) => {
  console.error(`local stack failed: ${error instanceof Error ? error.message : String(error)}`);
  await stopAll(1);
});
