/**
 * Client credentials from AWS Secrets Manager, through Powertools Parameters (cached per
 * instance with a max age, so the warm path makes no Secrets Manager call).
 *
 * Secret values:
 * - `{"client_id", "client_secret"}` for client_secret_post / client_secret_basic;
 * - `{"client_id", "private_key", "key_id"?}` (PKCS#8 PEM) for private_key_jwt.
 */
import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SecretsProvider } from '@aws-lambda-powertools/parameters/secrets';
import { ConfigError, StoreUnavailableError } from '../core/errors.js';
import type { ClientCredentials, CredentialSource } from '../core/ports.js';

export interface SecretsManagerCredentialsOptions {
  readonly client: SecretsManagerClient;
  /** seconds a secret value is reused before it is read again */
  readonly maxAgeSeconds: number;
  readonly now?: () => number;
}

export class SecretsManagerCredentials implements CredentialSource {
  private readonly provider: SecretsProvider;
  private readonly inFlight = new Map<string, Promise<ClientCredentials>>();
  /** credentials the IdP just accepted after a rejection (e.g. AWSPENDING mid-rotation) */
  private readonly preferred = new Map<string, { credentials: ClientCredentials; until: number }>();
  /** the last AWSCURRENT value read, for when Secrets Manager is briefly unreachable */
  private readonly lastGood = new Map<string, ClientCredentials>();
  private readonly now: () => number;

  constructor(private readonly options: SecretsManagerCredentialsOptions) {
    this.provider = new SecretsProvider({ awsSdkV3Client: options.client });
    this.now = options.now ?? Date.now;
  }

  get(secretId: string): Promise<ClientCredentials> {
    const preferred = this.preferred.get(secretId);
    if (preferred !== undefined && preferred.until > this.now()) return Promise.resolve(preferred.credentials);
    // Powertools caches values, not pending reads: share the read so a cold instance hit by
    // fifty requests makes one GetSecretValue call, not fifty.
    const pending = this.inFlight.get(secretId);
    if (pending !== undefined) return pending;
    const read = this.read(secretId, 'AWSCURRENT', false)
      .then((credentials) => {
        this.lastGood.set(secretId, credentials);
        return credentials;
      })
      .catch((error: unknown) => {
        // A throttled or unreachable Secrets Manager must not stop an instance serving the
        // tokens it holds: keep using the credentials it had (the IdP is the judge of them).
        const last = this.lastGood.get(secretId);
        if (error instanceof StoreUnavailableError && last !== undefined) return last;
        throw error;
      })
      .finally(() => this.inFlight.delete(secretId));
    this.inFlight.set(secretId, read);
    return read;
  }

  async alternatives(secretId: string, rejected: ClientCredentials): Promise<ClientCredentials[]> {
    this.preferred.delete(secretId);
    const candidates: ClientCredentials[] = [];
    // AWSCURRENT first: a rotation may have finished since we cached it.
    const current = await this.read(secretId, 'AWSCURRENT', true);
    if (!sameCredentials(current, rejected)) candidates.push(current);
    // Then AWSPENDING: Auth0's rotate-secret kills the old secret at once, and until the
    // rotation's finishSecret step the new one is only there.
    const pending = await this.read(secretId, 'AWSPENDING', true).catch((error: unknown) => {
      if (error instanceof ConfigError && error.notFound) return undefined;
      throw error;
    });
    if (pending !== undefined && !sameCredentials(pending, rejected) && !sameCredentials(pending, current)) candidates.push(pending);
    return candidates;
  }

  knownClientId(secretId: string): string | undefined {
    const preferred = this.preferred.get(secretId);
    if (preferred !== undefined && preferred.until > this.now()) return preferred.credentials.clientId;
    return this.lastGood.get(secretId)?.clientId;
  }

  prefer(secretId: string, credentials: ClientCredentials): void {
    this.preferred.set(secretId, { credentials, until: this.now() + this.options.maxAgeSeconds * 1000 });
  }

  private async read(secretId: string, stage: 'AWSCURRENT' | 'AWSPENDING', forceFetch: boolean): Promise<ClientCredentials> {
    let raw: string | Uint8Array | undefined;
    try {
      if (stage === 'AWSCURRENT') {
        // AWSCURRENT named explicitly: the same as the default in AWS, and it keeps emulators that
        // track a "default version" apart from the label (moto) honest after a rotation.
        raw = await this.provider.get(secretId, { maxAge: this.options.maxAgeSeconds, forceFetch, sdkOptions: { VersionStage: 'AWSCURRENT' } });
      } else {
        // Straight from the SDK, not through Powertools: its cache is keyed by name alone, and a
        // pending value must never be served later as the current one.
        const out = await this.options.client.send(new GetSecretValueCommand({ SecretId: secretId, VersionStage: 'AWSPENDING' }));
        raw = out.SecretString ?? out.SecretBinary;
      }
    } catch (error) {
      const name = errorName(error);
      if (name === 'ResourceNotFoundException' || name === 'AccessDeniedException' || name === 'DecryptionFailure') {
        throw new ConfigError(`secret ${secretId} (${stage}) cannot be read (${name})`, { cause: error, notFound: name === 'ResourceNotFoundException' });
      }
      throw new StoreUnavailableError(`Secrets Manager failed reading ${secretId} (${name})`, { cause: error });
    }
    return parseCredentials(secretId, raw);
  }
}

/** Powertools wraps SDK errors in GetParameterError; the SDK's name is on the cause. */
function errorName(error: unknown): string {
  let current: unknown = error;
  for (let depth = 0; depth < 3 && current instanceof Error; depth += 1) {
    if (current.name !== 'GetParameterError' && current.name !== 'Error') return current.name;
    current = current.cause;
  }
  return error instanceof Error ? error.name : 'Unknown';
}

function sameCredentials(a: ClientCredentials, b: ClientCredentials): boolean {
  if (a.clientId !== b.clientId || a.kind !== b.kind) return false;
  return a.kind === 'secret' ? a.clientSecret === (b as typeof a).clientSecret : a.privateKeyPem === (b as typeof a).privateKeyPem;
}

/**
 * Parse a credentials secret. Parsing is done here rather than with Powertools'
 * `transform: 'json'` because JSON.parse's error message quotes the input: a malformed secret
 * would put secret material into the log.
 */
export function parseCredentials(secretId: string, raw: string | Uint8Array | undefined): ClientCredentials {
  const text = typeof raw === 'string' ? raw : raw === undefined ? '' : Buffer.from(raw).toString('utf8');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new ConfigError(`secret ${secretId} is not JSON; expected {"client_id","client_secret"} or {"client_id","private_key"}`);
  }
  const { client_id: clientId, client_secret: clientSecret, private_key: privateKey, key_id: keyId } = (doc ?? {}) as Record<string, unknown>;
  if (typeof clientId !== 'string' || clientId.length === 0) {
    throw new ConfigError(`secret ${secretId}: client_id must be a non-empty string`);
  }
  if (typeof privateKey === 'string') {
    if (!privateKey.includes('-----BEGIN PRIVATE KEY-----')) {
      throw new ConfigError(`secret ${secretId}: private_key must be a PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----")`);
    }
    if (keyId !== undefined && typeof keyId !== 'string') throw new ConfigError(`secret ${secretId}: key_id must be a string`);
    return Object.freeze({ kind: 'private_key', clientId, privateKeyPem: privateKey, keyId });
  }
  if (typeof clientSecret !== 'string' || clientSecret.length === 0) {
    throw new ConfigError(`secret ${secretId}: client_secret (or private_key) must be a non-empty string`);
  }
  return Object.freeze({ kind: 'secret', clientId, clientSecret });
}
