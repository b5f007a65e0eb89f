/**
 * Client credentials from AWS Secrets Manager, cached per instance with a max age, so the warm
 * path makes no Secrets Manager call.
 *
 * One way to read a secret: the SDK's GetSecretValue ({@link readSecretValue}, which the rotation
 * store uses too), for AWSCURRENT and AWSPENDING alike, with the cache below. Not Powertools
 * Parameters' SecretsProvider: its cache is keyed by the secret's name and the transform only
 * (`[name, transform]` in BaseProvider.get of @aws-lambda-powertools/parameters 2.x), never by
 * `sdkOptions.VersionStage`, so a pending value read through it would later be served as the
 * current one. The cache here holds AWSCURRENT only; AWSPENDING is never cached.
 *
 * Secret values:
 * - `{"client_id", "client_secret"}` for client_secret_post / client_secret_basic;
 * - `{"client_id", "private_key", "key_id"?}` (PKCS#8 PEM) for private_key_jwt.
 */
import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ConfigError, StoreUnavailableError } from '../core/errors.js';
import type { ClientCredentials, CredentialSource } from '../core/ports.js';

export interface SecretsManagerCredentialsOptions {
  readonly client: SecretsManagerClient;
  /** seconds a secret value is reused before it is read again (0: read every time) */
  readonly maxAgeSeconds: number;
  readonly now?: () => number;
}

type Stage = 'AWSCURRENT' | 'AWSPENDING';

/** One version of a secret: by its id, or by a staging label. */
export type SecretVersion = { readonly versionId: string } | { readonly stage: string };

/** The raw value of one version of a secret (SecretString, or SecretBinary as UTF-8). SDK errors are thrown as they are. */
export async function readSecretValue(client: SecretsManagerClient, secretId: string, version: SecretVersion): Promise<string | undefined> {
  const out = await client.send(
    new GetSecretValueCommand({ SecretId: secretId, ...('versionId' in version ? { VersionId: version.versionId } : { VersionStage: version.stage }) }),
  );
  return out.SecretString ?? (out.SecretBinary ? Buffer.from(out.SecretBinary).toString('utf8') : undefined);
}

export class SecretsManagerCredentials implements CredentialSource {
  /** AWSCURRENT as last read, until `expires` (this instance's clock) */
  private readonly cache = new Map<string, { credentials: ClientCredentials; expires: number }>();
  private readonly inFlight = new Map<string, Promise<ClientCredentials>>();
  /** credentials the IdP just accepted after a rejection (e.g. AWSPENDING mid-rotation) */
  private readonly preferred = new Map<string, { credentials: ClientCredentials; until: number }>();
  /** the last AWSCURRENT value read, for when Secrets Manager is briefly unreachable */
  private readonly lastGood = new Map<string, ClientCredentials>();
  private readonly now: () => number;

  constructor(private readonly options: SecretsManagerCredentialsOptions) {
    this.now = options.now ?? Date.now;
  }

  get(secretId: string): Promise<ClientCredentials> {
    const preferred = this.preferred.get(secretId);
    if (preferred !== undefined && preferred.until > this.now()) return Promise.resolve(preferred.credentials);
    const cached = this.cache.get(secretId);
    if (cached !== undefined && cached.expires > this.now()) return Promise.resolve(cached.credentials);
    // Share the read: a cold instance hit by fifty requests makes one GetSecretValue call, not fifty.
    const pending = this.inFlight.get(secretId);
    if (pending !== undefined) return pending;
    const read = this.readCurrent(secretId)
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
    // AWSCURRENT first, read again past the cache: a rotation may have finished since we cached it.
    const current = await this.readCurrent(secretId);
    if (!sameCredentials(current, rejected)) candidates.push(current);
    // Then AWSPENDING: Auth0's rotate-secret kills the old secret at once, and until the
    // rotation's finishSecret step the new one is only there.
    const pending = await this.read(secretId, 'AWSPENDING').catch((error: unknown) => {
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

  /** AWSCURRENT from Secrets Manager, kept for the max age (the only stage that is cached). */
  private async readCurrent(secretId: string): Promise<ClientCredentials> {
    const credentials = await this.read(secretId, 'AWSCURRENT');
    if (this.options.maxAgeSeconds > 0) this.cache.set(secretId, { credentials, expires: this.now() + this.options.maxAgeSeconds * 1000 });
    return credentials;
  }

  private async read(secretId: string, stage: Stage): Promise<ClientCredentials> {
    let raw: string | undefined;
    try {
      // AWSCURRENT named explicitly: the same as the default in AWS, and it keeps emulators that
      // track a "default version" apart from the label (moto) honest after a rotation.
      raw = await readSecretValue(this.options.client, secretId, { stage });
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

/** The SDK's error name, or a network error's code (ECONNREFUSED) where the name is a bare "Error". */
function errorName(error: unknown): string {
  if (!(error instanceof Error)) return 'Unknown';
  const code = (error as { code?: unknown }).code;
  return error.name === 'Error' && typeof code === 'string' ? code : error.name;
}

function sameCredentials(a: ClientCredentials, b: ClientCredentials): boolean {
  if (a.clientId !== b.clientId || a.kind !== b.kind) return false;
  return a.kind === 'secret' ? a.clientSecret === (b as typeof a).clientSecret : a.privateKeyPem === (b as typeof a).privateKeyPem;
}

/**
 * Parse a credentials secret. The message of a failed parse never carries JSON.parse's own,
 * because that quotes the input: a malformed secret would put secret material into the log.
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
