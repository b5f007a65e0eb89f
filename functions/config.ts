/**
 * Configuration, parsed once at cold start into a frozen object (as Powertools'
 * commons `getStringFromEnv` / `getNumberFromEnv` do). A missing or
 * malformed variable fails the cold start with a message that names it; nothing else in the
 * code reads `process.env`.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { ConfigError } from './core/errors.js';
import { GrantBook } from './core/grants.js';
import type { ProofPolicy } from './core/identityProof.js';
import type { TokenServiceOptions } from './core/tokenService.js';

/**
 * The token service's settings come from the environment, one variable each (defaults in
 * brackets): EARLY_EXPIRY_SECONDS → earlyExpirySeconds (120), REFRESH_AHEAD_PERCENT →
 * refreshAheadRatio (25 %), IDP_TIMEOUT_MS → idpTimeoutMs (2000), IDP_DEADLINE_MS → idpDeadlineMs
 * (10000; at least 2 × 2 × IDP_TIMEOUT_MS + RETRY_BASE_MS, so one whole retry fits after one whole
 * failed attempt), RETRY_BASE_MS / RETRY_CAP_MS (100 / 2000), FAILURE_BACKOFF_SECONDS (10),
 * QUOTA_PER_CLIENT_PER_HOUR (60; 0 = no cap),
 * QUOTA_RESERVE_PERCENT → quotaReserveRatio (25 %), QUOTA_PER_CALLER_PER_HOUR (20; 0 = no cap),
 * REFUSAL_MEMORY_SECONDS → refusalMemoryMs (60 s),
 * LEASE_TTL_MS (25000; at least IDP_DEADLINE_MS + 2 × IDP_TIMEOUT_MS + 1000), LEASE_WAIT_MS
 * (12000), LEASE_HOLD_MS → leaseHoldMs (5000; at most LEASE_TTL_MS, less than LEASE_WAIT_MS),
 * USAGE_WRITE_INTERVAL_SECONDS → usageWriteIntervalMs (60 s), MEMORY_REVALIDATE_SECONDS
 * → memoryRevalidateMs (60 s), MEMORY_CACHE_ENTRIES → memoryCacheEntries (500). idpAttemptMs, the
 * longest one attempt can take (the token call and the JWKS call), is 2 × IDP_TIMEOUT_MS.
 *
 * Each default is the value serverless.yml deploys (test/deploy/serverless.test.ts checks every
 * deployed value against it), and the test suites run on those values, at most on a faster clock
 * (test/helpers/deployedSettings.ts).
 */
export interface VendorConfig extends TokenServiceOptions {
  /** TOKEN_TABLE_NAME: the DynamoDB table shared by every instance */
  readonly tableName: string;
  /** TOKEN_SEAL_KEY_ID: the KMS key (id, ARN or alias) whose data keys seal tokens at rest */
  readonly sealKeyId: string;
  /** GRANTS_FILE: path of the grants JSON (relative to the function's root) */
  readonly grantsFile: string;
  readonly grants: GrantBook;
  /** IDP_TIMEOUT_MS: timeout of each call to the IdP (default 2000) */
  readonly idpTimeoutMs: number;
  /** REFRESHER_LOOKAHEAD_SECONDS: the refresher replaces tokens whose refresh point is this close (default 300) */
  readonly refresherLookaheadMs: number;
  /** RECENT_USE_SECONDS: the refresher keeps tokens used within this window (default 7200) */
  readonly recentUseMs: number;
  /** ROTATION_TEST_TIMEOUT_MS: how long testSecret keeps trying a new credential (default 45000: Auth0 may take ~30 s) */
  readonly rotationTestTimeoutMs: number;
  /** ROTATION_TEST_INTERVAL_MS: pause between testSecret tries (default 2000) */
  readonly rotationTestIntervalMs: number;
  /** SECRET_MAX_AGE_SECONDS: how long client credentials are reused per instance (default 300) */
  readonly secretMaxAgeSeconds: number;
  /** POWERTOOLS_SERVICE_NAME: the `service` of every log line and metric (default token-vendor) */
  readonly serviceName: string;
  /** POWERTOOLS_METRICS_NAMESPACE: the CloudWatch namespace (default TokenVendor) */
  readonly metricsNamespace: string;
  /**
   * LEASE_HOLD_MS: how long each take and renewal of a fetch lease holds it (default 5000); the
   * holder renews every third of it while it fetches, up to LEASE_TTL_MS. A holder that dies is
   * taken over this soon.
   */
  readonly leaseHoldMs: number;
  /**
   * How identity proofs are checked (docs/identity-proof.md): PROOF_SERVER_ID (default
   * token-vendor; deployed as token-vendor-<stage>), the partition of AWS_REGION, and STS_ENDPOINT,
   * a loopback origin for the local stack and tests only.
   */
  readonly proof: ProofPolicy;
  /** STS_TIMEOUT_MS: timeout of the STS call that proves a caller's identity (default 2000) */
  readonly stsTimeoutMs: number;
}

// The one configuration error of the code base, re-exported where configuration is read.
export { ConfigError };

/**
 * Every variable `loadConfig` reads (besides LAMBDA_TASK_ROOT, which Lambda sets). The deployment
 * sets each of them explicitly, and a test holds the two lists together.
 */
export const CONFIG_VARIABLES = [
  'TOKEN_TABLE_NAME',
  'TOKEN_SEAL_KEY_ID',
  'GRANTS_FILE',
  'EARLY_EXPIRY_SECONDS',
  'REFRESH_AHEAD_PERCENT',
  'IDP_TIMEOUT_MS',
  'IDP_DEADLINE_MS',
  'RETRY_BASE_MS',
  'RETRY_CAP_MS',
  'FAILURE_BACKOFF_SECONDS',
  'QUOTA_PER_CLIENT_PER_HOUR',
  'QUOTA_RESERVE_PERCENT',
  'QUOTA_PER_CALLER_PER_HOUR',
  'REFUSAL_MEMORY_SECONDS',
  'LEASE_TTL_MS',
  'LEASE_WAIT_MS',
  'LEASE_HOLD_MS',
  'USAGE_WRITE_INTERVAL_SECONDS',
  'MEMORY_REVALIDATE_SECONDS',
  'REFRESHER_LOOKAHEAD_SECONDS',
  'RECENT_USE_SECONDS',
  'ROTATION_TEST_TIMEOUT_MS',
  'ROTATION_TEST_INTERVAL_MS',
  'SECRET_MAX_AGE_SECONDS',
  'MEMORY_CACHE_ENTRIES',
  'POWERTOOLS_SERVICE_NAME',
  'POWERTOOLS_METRICS_NAMESPACE',
  'PROOF_SERVER_ID',
  'STS_TIMEOUT_MS',
] as const;

/**
 * Read too, but never set by the deployment: AWS_REGION is Lambda's own, and STS_ENDPOINT points
 * proofs at the local STS stand-in (loopback only).
 */
export const RUNTIME_VARIABLES = ['AWS_REGION', 'STS_ENDPOINT'] as const;

type Env = Readonly<Record<string, string | undefined>>;

/** Room in a lease for the store reads and writes around a fetch. */
const LEASE_SLACK_MS = 1000;

/**
 * Parse the environment. `root` is where a relative GRANTS_FILE is looked up: the Lambda task
 * root in AWS, the working directory locally.
 */
export function loadConfig(env: Env = process.env, root: string = env.LAMBDA_TASK_ROOT ?? process.cwd()): VendorConfig {
  const tableName = requiredString(env, 'TOKEN_TABLE_NAME');
  const sealKeyId = requiredString(env, 'TOKEN_SEAL_KEY_ID');
  const grantsFileSetting = env.GRANTS_FILE?.trim() || 'grants.json';
  const grantsFile = isAbsolute(grantsFileSetting) ? grantsFileSetting : join(root, grantsFileSetting);
  const idpTimeoutMs = integer(env, 'IDP_TIMEOUT_MS', 2000, 100, 60_000);
  const idpDeadlineMs = integer(env, 'IDP_DEADLINE_MS', 10_000, 100, 25_000);
  const retryBaseMs = integer(env, 'RETRY_BASE_MS', 100, 1, 10_000);
  // The retry rule (goodCitizenEndpoint.ts) starts a retry only if the time spent, the pause
  // (under RETRY_BASE_MS before the first retry) and one whole attempt (the token call and the
  // JWKS call, each up to IDP_TIMEOUT_MS) fit in the deadline. A deadline without room for one
  // retry after one whole failed attempt turns every transient failure into a 503: refused.
  // infra/deployment.cjs runs this function on the environment serverless.yml deploys, so
  // packaging refuses the same values.
  const retryRoomMs = 2 * (2 * idpTimeoutMs) + retryBaseMs;
  if (idpDeadlineMs < retryRoomMs) {
    throw new ConfigError(`must leave room for one retry: at least 2 × 2 × IDP_TIMEOUT_MS + RETRY_BASE_MS (${retryRoomMs}), got ${idpDeadlineMs}`, { variable: 'IDP_DEADLINE_MS' });
  }
  const leaseTtlMs = integer(env, 'LEASE_TTL_MS', 25_000, 1000, 120_000);
  // A fetch is at most the deadline plus one attempt (the token call and the JWKS call, each
  // up to IDP_TIMEOUT_MS); the lease must outlive it with room for the store writes, or a slow
  // fetch loses its lease and a second instance fetches too.
  const longestFetchMs = idpDeadlineMs + 2 * idpTimeoutMs + LEASE_SLACK_MS;
  if (leaseTtlMs < longestFetchMs) {
    throw new ConfigError(`must be at least IDP_DEADLINE_MS + 2 × IDP_TIMEOUT_MS + ${LEASE_SLACK_MS} (${longestFetchMs})`, { variable: 'LEASE_TTL_MS' });
  }
  const leaseWaitMs = integer(env, 'LEASE_WAIT_MS', 12_000, 0, 25_000);
  // The lease is held this long at a time and renewed while the fetch runs (up to LEASE_TTL_MS),
  // so a holder that dies is taken over after this, not after LEASE_TTL_MS. A caller waiting on a
  // dead holder takes over only once its hold lapses: the hold must end inside the wait.
  const leaseHoldMs = integer(env, 'LEASE_HOLD_MS', 5000, 100, 120_000);
  if (leaseHoldMs > leaseTtlMs) {
    throw new ConfigError(`must be at most LEASE_TTL_MS (${leaseTtlMs}), got ${leaseHoldMs}`, { variable: 'LEASE_HOLD_MS' });
  }
  if (leaseWaitMs > 0 && leaseHoldMs >= leaseWaitMs) {
    throw new ConfigError(`must be less than LEASE_WAIT_MS (${leaseWaitMs}): a caller waiting on a dead holder takes over only after its hold, got ${leaseHoldMs}`, { variable: 'LEASE_HOLD_MS' });
  }
  const region = env.AWS_REGION?.trim() || 'us-east-1';
  const localStsOrigin = loopbackOrigin(env, 'STS_ENDPOINT');
  const proof: ProofPolicy = Object.freeze({
    region,
    serverId: serverId(env),
    ...(localStsOrigin !== undefined ? { localStsOrigin } : {}),
  });
  return Object.freeze({
    proof,
    stsTimeoutMs: integer(env, 'STS_TIMEOUT_MS', 2000, 100, 10_000),
    tableName,
    sealKeyId,
    grantsFile,
    grants: loadGrants(grantsFile),
    // At least a second: the expiry is counted from the response's arrival, so it is optimistic by
    // the response's own latency.
    earlyExpirySeconds: integer(env, 'EARLY_EXPIRY_SECONDS', 120, 1, 3600),
    refreshAheadRatio: integer(env, 'REFRESH_AHEAD_PERCENT', 25, 0, 90) / 100,
    idpTimeoutMs,
    idpDeadlineMs,
    retryBaseMs,
    retryCapMs: integer(env, 'RETRY_CAP_MS', 2000, 1, 20_000),
    failureBackoffSeconds: integer(env, 'FAILURE_BACKOFF_SECONDS', 10, 0, 3600),
    quotaPerClientPerHour: integer(env, 'QUOTA_PER_CLIENT_PER_HOUR', 60, 0, 1_000_000),
    // The share of the client's hourly cap that only refreshes of tokens already in use may spend,
    // so callers asking for new tokens can never starve the tokens everyone relies on.
    quotaReserveRatio: integer(env, 'QUOTA_RESERVE_PERCENT', 25, 0, 90) / 100,
    quotaPerCallerPerHour: integer(env, 'QUOTA_PER_CALLER_PER_HOUR', 20, 0, 1_000_000),
    refusalMemoryMs: integer(env, 'REFUSAL_MEMORY_SECONDS', 60, 0, 3600) * 1000,
    leaseTtlMs,
    leaseWaitMs,
    leaseHoldMs,
    idpAttemptMs: 2 * idpTimeoutMs,
    usageWriteIntervalMs: integer(env, 'USAGE_WRITE_INTERVAL_SECONDS', 60, 0, 3600) * 1000,
    memoryRevalidateMs: integer(env, 'MEMORY_REVALIDATE_SECONDS', 60, 1, 3600) * 1000,
    refresherLookaheadMs: integer(env, 'REFRESHER_LOOKAHEAD_SECONDS', 300, 0, 86_400) * 1000,
    recentUseMs: integer(env, 'RECENT_USE_SECONDS', 7200, 60, 30 * 86_400) * 1000,
    rotationTestTimeoutMs: integer(env, 'ROTATION_TEST_TIMEOUT_MS', 45_000, 0, 600_000),
    rotationTestIntervalMs: integer(env, 'ROTATION_TEST_INTERVAL_MS', 2000, 10, 60_000),
    secretMaxAgeSeconds: integer(env, 'SECRET_MAX_AGE_SECONDS', 300, 0, 86_400),
    memoryCacheEntries: integer(env, 'MEMORY_CACHE_ENTRIES', 500, 1, 100_000),
    // Powertools reads these itself, but an explicit option would override them: read once here
    // so the deployment's per-stage service name wins and local runs still get a sane default.
    serviceName: env.POWERTOOLS_SERVICE_NAME?.trim() || 'token-vendor',
    metricsNamespace: env.POWERTOOLS_METRICS_NAMESPACE?.trim() || 'TokenVendor',
  });
}

/** Read and validate a grants file; errors name GRANTS_FILE and the bad field. */
export function loadGrants(path: string): GrantBook {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read ${path}`, { variable: 'GRANTS_FILE', cause: error });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${path} is not valid JSON: ${(error as Error).message}`, { variable: 'GRANTS_FILE', cause: error });
  }
  try {
    return GrantBook.parse(doc);
  } catch (error) {
    throw new ConfigError(`${path}: ${(error as Error).message}`, { variable: 'GRANTS_FILE', cause: error });
  }
}

/** A server id is sent as an HTTP header value: printable ASCII without spaces, bounded. */
function serverId(env: Env): string {
  const value = env.PROOF_SERVER_ID?.trim() || 'token-vendor';
  if (!/^[\x21-\x7e]{1,128}$/.test(value)) throw new ConfigError(`must be 1-128 printable ASCII characters without spaces, got "${value.slice(0, 40)}"`, { variable: 'PROOF_SERVER_ID' });
  return value;
}

/** An http origin on the loopback interface, or undefined when unset: never a real network host. */
function loopbackOrigin(env: Env, name: string): string | undefined {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`must be a URL, got "${raw.slice(0, 100)}"`, { variable: name });
  }
  if (url.protocol !== 'http:' || !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname) || (url.pathname !== '/' && url.pathname !== '') || url.search !== '') {
    throw new ConfigError('must be a loopback origin (http://127.0.0.1:PORT): only the local stack and tests set it', { variable: name });
  }
  return url.origin;
}

function requiredString(env: Env, name: string): string {
  const value = env[name]?.trim();
  if (value === undefined || value === '') throw new ConfigError('is required', { variable: name });
  return value;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(`must be a whole number, got "${raw}"`, { variable: name });
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(`must be between ${min} and ${max}, got ${value}`, { variable: name });
  return value;
}
