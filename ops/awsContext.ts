/**
 * What an operator needs when an AWS call of an ops command fails: which service and resource
 * (table, key or secret), the region, the endpoint and where the credentials came from, and the
 * first cause — instead of `DynamoDB Scan failed (Error)` alone.
 *
 * The service is read off the messages the adapters give their errors (functions/adapters/
 * tokenTable.ts storeUnavailable: "DynamoDB <op> failed", kmsTokenSealer.ts kmsCall: "KMS <op>
 * failed", secretsManagerCredentials.ts: "Secrets Manager failed reading <id>" and "secret <id> …
 * cannot be read"). The endpoint and region follow the SDK's own order (AWS SDKs and Tools
 * Reference Guide, "Service-specific endpoints": AWS_ENDPOINT_URL_<SERVICE>, then
 * AWS_ENDPOINT_URL; region: AWS_REGION, then the profile's `region`). The credential source is
 * the provider of @aws-sdk/credential-provider-node's default chain that answered, as it marks
 * the credentials it returns (`$source`, the SDK's credential feature ids).
 */
import type { VendorConfig } from '../functions/config.js';

export type AwsService = 'DynamoDB' | 'KMS' | 'Secrets Manager';

type Env = Readonly<Record<string, string | undefined>>;

/** The SDK's service id for endpoint variables, and the host prefix of its default endpoint. */
const SERVICES: Readonly<Record<AwsService, { readonly envId: string; readonly host: string }>> = {
  DynamoDB: { envId: 'DYNAMODB', host: 'dynamodb' },
  KMS: { envId: 'KMS', host: 'kms' },
  'Secrets Manager': { envId: 'SECRETS_MANAGER', host: 'secretsmanager' },
};

/** An ops command's own AWS call that failed (RotateSecret): names its service and resource itself. */
export class OpsAwsCallError extends Error {
  constructor(
    readonly service: AwsService,
    readonly resource: string,
    message: string,
    options: { cause: unknown },
  ) {
    super(message, options);
    this.name = 'OpsAwsCallError';
  }
}

/** The errors of a cause chain, outermost first (bounded: a cycle must not hang the CLI). */
export function causeChain(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e: unknown = error; e !== undefined && e !== null && chain.length < 10 && !chain.includes(e); e = (e as { cause?: unknown }).cause) chain.push(e);
  return chain;
}

/** Which AWS service (and resource) a failure came from, if it came from one. */
export function failedService(error: unknown, config: Pick<VendorConfig, 'tableName' | 'sealKeyId'>): { service: AwsService; resource: string } | undefined {
  for (const e of causeChain(error)) {
    if (e instanceof OpsAwsCallError) return { service: e.service, resource: e.resource };
    const message = e instanceof Error ? e.message : '';
    if (/^DynamoDB \w+ failed/.test(message)) return { service: 'DynamoDB', resource: `table ${config.tableName}` };
    if (/^KMS \w+ (failed|refused|returned)/.test(message)) return { service: 'KMS', resource: `key ${config.sealKeyId}` };
    const secret = /^Secrets Manager failed reading (\S+)/.exec(message) ?? /^secret (\S+) \(\w+\) cannot be read/.exec(message);
    if (secret) return { service: 'Secrets Manager', resource: `secret ${secret[1]}` };
  }
  return undefined;
}

/** The innermost error's name and message (its code when the message is empty, as an AggregateError of refused connections has). */
export function rootCause(error: unknown): string {
  const chain = causeChain(error);
  const last = chain[chain.length - 1];
  if (!(last instanceof Error)) return typeof last;
  const code = (last as { code?: unknown }).code;
  const inner = last instanceof AggregateError ? last.errors.find((e): e is Error => e instanceof Error) : undefined;
  const message = last.message || inner?.message || (typeof code === 'string' ? code : '');
  return `${last.name}${message ? `: ${message}` : ''}`;
}

/** Where the SDK sends the service's calls, and why there. */
export function endpointFor(service: AwsService, env: Env, region: string | undefined): string {
  const { envId, host } = SERVICES[service];
  const specific = env[`AWS_ENDPOINT_URL_${envId}`];
  if (specific) return `${specific} (AWS_ENDPOINT_URL_${envId})`;
  if (env.AWS_ENDPOINT_URL) return `${env.AWS_ENDPOINT_URL} (AWS_ENDPOINT_URL)`;
  return region ? `https://${host}.${region}.amazonaws.com (the SDK's default)` : "the SDK's default for the region";
}

/**
 * Which provider of the default chain the credentials came from, from the features it marked
 * them with; `undefined` when none is marked (then the caller says what the environment sets).
 */
export function credentialSourceOf(source: Readonly<Record<string, unknown>> | undefined, env: Env): string | undefined {
  const has = (...keys: string[]) => keys.some((k) => source?.[k] !== undefined);
  const profile = `profile ${env.AWS_PROFILE ?? 'default'}`;
  if (has('CREDENTIALS_ENV_VARS')) return `environment variables (AWS_ACCESS_KEY_ID${env.AWS_SESSION_TOKEN ? ' and AWS_SESSION_TOKEN: temporary' : ': long-term'})`;
  if (has('CREDENTIALS_PROFILE_SSO', 'CREDENTIALS_PROFILE_SSO_LEGACY', 'CREDENTIALS_SSO', 'CREDENTIALS_SSO_LEGACY')) return `SSO (${profile})`;
  if (has('CREDENTIALS_PROFILE_LOGIN', 'CREDENTIALS_LOGIN')) return `an aws login session (${profile})`;
  if (has('CREDENTIALS_ENV_VARS_STS_WEB_ID_TOKEN', 'CREDENTIALS_PROFILE_STS_WEB_ID_TOKEN')) return 'a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN)';
  if (has('CREDENTIALS_PROFILE_PROCESS', 'CREDENTIALS_PROCESS')) return `credential_process (${profile})`;
  if (has('CREDENTIALS_PROFILE_SOURCE_PROFILE', 'CREDENTIALS_PROFILE_NAMED_PROVIDER')) return `a role assumed through ${profile}`;
  if (has('CREDENTIALS_HTTP')) return 'the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_*)';
  if (has('CREDENTIALS_IMDS')) return 'the instance role (EC2 instance metadata)';
  if (has('CREDENTIALS_PROFILE')) return `the keys of ${profile} (shared credentials file)`;
  return undefined;
}

/** What the environment points the chain at, when the chain itself cannot say. */
export function credentialHint(env: Env): string {
  if (env.AWS_PROFILE) return `AWS_PROFILE=${env.AWS_PROFILE}${env.AWS_ACCESS_KEY_ID ? ' (AWS_ACCESS_KEY_ID is set too: the SDK uses the profile)' : ''}`;
  if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) return 'AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set';
  const set = ['AWS_WEB_IDENTITY_TOKEN_FILE', 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI', 'AWS_CONTAINER_CREDENTIALS_FULL_URI'].filter((name) => env[name]);
  if (set.length > 0) return `${set.join(', ')} set`;
  return `no AWS_PROFILE or access key variables: the default profile, then ${env.AWS_EC2_METADATA_DISABLED === 'true' ? 'no instance metadata (AWS_EC2_METADATA_DISABLED)' : 'the instance role'}`;
}

/** Asks the default chain, bounded: an unreachable instance metadata service must not hang the report. */
async function resolveCredentialSource(env: Env): Promise<string> {
  try {
    const { defaultProvider } = await import('@aws-sdk/credential-provider-node');
    const credentials = await Promise.race([
      defaultProvider()(),
      new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('no answer within 3 s')), 3_000).unref()),
    ]);
    return credentialSourceOf((credentials as { $source?: Readonly<Record<string, unknown>> }).$source, env) ?? `found (${credentialHint(env)})`;
  } catch (error) {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    return `none found (${message.split('\n')[0]}; ${credentialHint(env)})`;
  }
}

/** The region the SDK uses: AWS_REGION, else the profile's, as a client resolves it. */
async function resolveRegion(env: Env): Promise<{ region: string | undefined; shown: string }> {
  if (env.AWS_REGION) return { region: env.AWS_REGION, shown: `${env.AWS_REGION} (AWS_REGION)` };
  try {
    const { DynamoDBClient } = await import('@aws-sdk/client-dynamodb');
    const region = await new DynamoDBClient({}).config.region();
    return { region, shown: `${region} (profile ${env.AWS_PROFILE ?? 'default'})` };
  } catch {
    return { region: undefined, shown: 'none (set --region, AWS_REGION or region in your AWS profile)' };
  }
}

/**
 * One line of context for a failure: `table T, region R (AWS_REGION), endpoint E (…), credentials:
 * C; cause: Name: message`, or just the cause when no AWS service is involved.
 */
export async function awsFailureContext(error: unknown, config: Pick<VendorConfig, 'tableName' | 'sealKeyId'>, env: Env = process.env): Promise<string> {
  const cause = `cause: ${rootCause(error)}`;
  const failed = failedService(error, config);
  if (failed === undefined) return cause;
  const [{ region, shown }, credentials] = await Promise.all([resolveRegion(env), resolveCredentialSource(env)]);
  return `${failed.service} ${failed.resource}, region ${shown}, endpoint ${endpointFor(failed.service, env, region)}, credentials: ${credentials}; ${cause}`;
}
