/**
 * Client credentials from AWS Secrets Manager, through Powertools Parameters (cached per
 * instance with a max age, so the warm path makes no Secrets Manager call).
 */
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SecretsProvider } from '@aws-lambda-powertools/parameters/secrets';
import { ConfigurationError, StoreUnavailableError } from '../core/errors.js';
import type { ClientCredentials, CredentialSource } from '../core/ports.js';

export interface SecretsManagerCredentialsOptions {
  readonly client: SecretsManagerClient;
  /** seconds a secret value is reused before it is read again */
  readonly maxAgeSeconds: number;
}

export class SecretsManagerCredentials implements CredentialSource {
  private readonly provider: SecretsProvider;
  private readonly inFlight = new Map<string, Promise<ClientCredentials>>();

  constructor(private readonly options: SecretsManagerCredentialsOptions) {
    this.provider = new SecretsProvider({ awsSdkV3Client: options.client });
  }

  get(secretId: string): Promise<ClientCredentials> {
    // Powertools caches values, not pending reads: share the read so a cold instance hit by
    // fifty requests makes one GetSecretValue call, not fifty.
    const pending = this.inFlight.get(secretId);
    if (pending !== undefined) return pending;
    const read = this.read(secretId).finally(() => this.inFlight.delete(secretId));
    this.inFlight.set(secretId, read);
    return read;
  }

  private async read(secretId: string): Promise<ClientCredentials> {
    let raw: string | Uint8Array | undefined;
    try {
      raw = await this.provider.get(secretId, { maxAge: this.options.maxAgeSeconds });
    } catch (error) {
      const name = (error as { name?: unknown }).name;
      if (name === 'ResourceNotFoundException' || name === 'AccessDeniedException' || name === 'DecryptionFailure') {
        throw new ConfigurationError(`secret ${secretId} cannot be read (${String(name)})`, { cause: error });
      }
      throw new StoreUnavailableError(`Secrets Manager failed reading ${secretId} (${String(name)})`, { cause: error });
    }
    return parseCredentials(secretId, raw);
  }
}

/**
 * Parse `{"client_id","client_secret"}`. Parsing is done here rather than with Powertools'
 * `transform: 'json'` because JSON.parse's error message quotes the input: a malformed secret
 * would put secret material into the log.
 */
export function parseCredentials(secretId: string, raw: string | Uint8Array | undefined): ClientCredentials {
  const text = typeof raw === 'string' ? raw : raw === undefined ? '' : Buffer.from(raw).toString('utf8');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new ConfigurationError(`secret ${secretId} is not JSON; expected {"client_id","client_secret"}`);
  }
  const { client_id: clientId, client_secret: clientSecret } = (doc ?? {}) as Record<string, unknown>;
  if (typeof clientId !== 'string' || clientId.length === 0) {
    throw new ConfigurationError(`secret ${secretId}: client_id must be a non-empty string`);
  }
  if (typeof clientSecret !== 'string' || clientSecret.length === 0) {
    throw new ConfigurationError(`secret ${secretId}: client_secret must be a non-empty string`);
  }
  return Object.freeze({ clientId, clientSecret });
}
