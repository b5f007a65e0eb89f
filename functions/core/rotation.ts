/**
 * Rotating an Auth0 client's credentials as a Secrets Manager rotation function, following AWS's
 * four-step contract (createSecret, setSecret, testSecret, finishSecret), each step idempotent
 * per ClientRequestToken: Secrets Manager may run any step again.
 *
 * Auth0 decides the shape of the rotation (see shared/reference/README.md, "Rotation"):
 *
 * - client_secret_*: `POST /api/v2/clients/{id}/rotate-secret` makes a new secret and kills the
 *   old one at once — there is no overlap. So the Auth0 call happens in createSecret, and its
 *   result is AWSPENDING at once. From then until finishSecret, instances still holding the old
 *   secret get invalid_client and fall back to AWSPENDING (TokenService), so callers see no error.
 *   setSecret has nothing left to do.
 * - private_key_jwt: an app may hold two public keys at once, so the rotation overlaps:
 *   createSecret makes a key pair (AWSPENDING), setSecret registers its public key as a second
 *   credential, testSecret gets a token with it, finishSecret makes it AWSCURRENT and only then
 *   detaches and deletes the old credential.
 *
 * A failed testSecret throws and leaves AWSCURRENT as it was.
 */
import { calculateJwkThumbprint, exportJWK, exportPKCS8, generateKeyPair, importPKCS8, importSPKI } from 'jose';
import { createPublicKey } from 'node:crypto';
import type { ClientConfig, GrantBook } from './grants.js';
import type { ClientCredentials, Log, TokenEndpoint } from './ports.js';
import { describe } from './errors.js';
import type { TokenService } from './tokenService.js';

export type RotationStep = 'createSecret' | 'setSecret' | 'testSecret' | 'finishSecret';

/** What Secrets Manager sends the rotation function. */
export interface RotationEvent {
  readonly SecretId: string;
  readonly ClientRequestToken: string;
  readonly Step: RotationStep;
}

export interface SecretDescription {
  readonly arn: string;
  readonly name: string;
  readonly rotationEnabled: boolean;
  /** version id → staging labels */
  readonly versions: Readonly<Record<string, readonly string[]>>;
}

/** Secrets Manager, as the rotation needs it. */
export interface RotationSecretStore {
  describe(secretId: string): Promise<SecretDescription>;
  /** the value of a version (by id, or by stage), or undefined if it has none */
  read(secretId: string, version: { versionId: string } | { stage: string }): Promise<string | undefined>;
  /** write `value` as version `token`, staged AWSPENDING; a no-op if that version exists */
  putPending(secretId: string, token: string, value: string): Promise<void>;
  /** move AWSCURRENT from `fromVersionId` to `toVersionId` */
  moveCurrent(secretId: string, toVersionId: string, fromVersionId: string | undefined): Promise<void>;
}

/** A private_key_jwt credential registered with Auth0. */
export interface Auth0Credential {
  readonly id: string;
  readonly name: string;
  readonly kid?: string | undefined;
}

/** Auth0's Management API, as the rotation needs it. */
export interface ManagementApi {
  rotateSecret(origin: string, accessToken: string, clientId: string): Promise<string>;
  listCredentials(origin: string, accessToken: string, clientId: string): Promise<Auth0Credential[]>;
  createCredential(origin: string, accessToken: string, clientId: string, credential: { name: string; pem: string }): Promise<Auth0Credential>;
  /** make exactly `ids` the client's private_key_jwt credentials */
  attachCredentials(origin: string, accessToken: string, clientId: string, ids: readonly string[]): Promise<void>;
  deleteCredential(origin: string, accessToken: string, clientId: string, credentialId: string): Promise<void>;
}

export interface SecretRotatorOptions {
  /** how long testSecret keeps trying a new secret (Auth0: up to ~30 s to be accepted everywhere) */
  readonly testTimeoutMs: number;
  readonly testIntervalMs: number;
}

export interface SecretRotatorDeps {
  readonly grants: GrantBook;
  readonly secrets: RotationSecretStore;
  readonly management: ManagementApi;
  /** for the rotator's own Management API token, cached like any other */
  readonly tokens: Pick<TokenService, 'tokenFor'>;
  /** to test a pending credential directly, bypassing every cache */
  readonly idp: TokenEndpoint;
  readonly parseCredentials: (secretId: string, raw: string) => ClientCredentials;
  readonly log: Log;
  readonly now?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
}

/** Management API scopes each kind of rotation needs. */
const SECRET_ROTATION_SCOPES = ['update:client_keys'];
const KEY_ROTATION_SCOPES = ['create:client_credentials', 'delete:client_credentials', 'read:client_keys', 'update:client_keys'];

/** A rotation step that cannot complete; Secrets Manager records it and retries the step. */
export class RotationError extends Error {
  /** stable internal code, as every error of the vendor has (functions/core/errors.ts) */
  readonly code = 'ERR_ROTATION';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RotationError';
  }
}

export class SecretRotator {
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    private readonly deps: SecretRotatorDeps,
    private readonly options: SecretRotatorOptions,
  ) {
    this.now = deps.now ?? Date.now;
    this.sleep = deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  async handle(event: RotationEvent): Promise<void> {
    const { SecretId: secretId, ClientRequestToken: token, Step: step } = event;
    const secret = await this.deps.secrets.describe(secretId);
    const client = this.deps.grants.clientForSecret(secret.name, secret.arn);
    if (client === undefined) throw new RotationError(`secret ${secret.name} belongs to no client in the grants file`);
    const stages = secret.versions[token];
    // AWS's contract: a version that is already AWSCURRENT has nothing left to do.
    if (stages?.includes('AWSCURRENT')) {
      this.deps.log.info('rotation: version already current', { secret: secret.name, step });
      return;
    }
    if (stages !== undefined && !stages.includes('AWSPENDING')) {
      throw new RotationError(`secret version ${token} of ${secret.name} is not staged AWSPENDING`);
    }
    if (stages === undefined && step !== 'createSecret') {
      throw new RotationError(`secret ${secret.name} has no version ${token} (createSecret has not run)`);
    }
    this.deps.log.info('rotation step', { secret: secret.name, client: client.name, step, method: client.authMethod });
    switch (step) {
      case 'createSecret':
        return this.createSecret(secret, client, token);
      case 'setSecret':
        return this.setSecret(secret, client, token);
      case 'testSecret':
        return this.testSecret(secret, client, token);
      case 'finishSecret':
        return this.finishSecret(secret, client, token);
      default:
        throw new RotationError(`unknown rotation step ${String(step)}`);
    }
  }

  private async createSecret(secret: SecretDescription, client: ClientConfig, token: string): Promise<void> {
    // Idempotent: a pending value for this token means this step already ran. Never call
    // rotate-secret twice for one rotation: each call kills the secret before it.
    if ((await this.deps.secrets.read(secret.arn, { versionId: token })) !== undefined) return;
    const current = await this.current(secret);
    if (client.authMethod === 'private_key_jwt') {
      const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true });
      const keyId = await calculateJwkThumbprint(await exportJWK(publicKey));
      const value = JSON.stringify({ client_id: current.clientId, private_key: await exportPKCS8(privateKey), key_id: keyId });
      await this.deps.secrets.putPending(secret.arn, token, value);
      return;
    }
    const accessToken = await this.managementToken(client, SECRET_ROTATION_SCOPES);
    const newSecret = await this.deps.management.rotateSecret(client.origin, accessToken, current.clientId);
    // From here the old secret is dead at Auth0: the new one must reach Secrets Manager. One
    // call: the client retries it itself, a bounded number of times within its deadline
    // (functions/adapters/awsClients.ts); a loop here would multiply those retries.
    try {
      await this.deps.secrets.putPending(secret.arn, token, JSON.stringify({ client_id: current.clientId, client_secret: newSecret }));
    } catch (error) {
      this.deps.log.error('rotation: Auth0 rotated the secret but it could not be stored; rotate again (npm run ops -- rotate)', {
        secret: secret.name,
        error: describe(error),
      });
      throw new RotationError(`the new secret for ${client.name} could not be stored in ${secret.name}`, { cause: error });
    }
  }

  private async setSecret(secret: SecretDescription, client: ClientConfig, token: string): Promise<void> {
    // client_secret: Auth0 already holds the new secret (rotate-secret, in createSecret).
    if (client.authMethod !== 'private_key_jwt') return;
    const pending = await this.pending(secret, token);
    const current = await this.current(secret);
    const accessToken = await this.managementToken(client, KEY_ROTATION_SCOPES);
    const registered = await this.deps.management.listCredentials(client.origin, accessToken, current.clientId);
    const name = credentialName(token);
    const mine = registered.find((c) => c.name === name) ?? (await this.deps.management.createCredential(client.origin, accessToken, current.clientId, { name, pem: await publicPem(pending) }));
    const old = await this.credentialOf(current, registered);
    // Two keys at once: instances still signing with the old key keep working.
    await this.deps.management.attachCredentials(client.origin, accessToken, current.clientId, old === undefined ? [mine.id] : [old.id, mine.id]);
  }

  private async testSecret(secret: SecretDescription, client: ClientConfig, token: string): Promise<void> {
    const pending = await this.pending(secret, token);
    const request = this.deps.grants.testRequestFor(client);
    if (request === undefined) throw new RotationError(`client ${client.name} has no grant to test a token with`);
    const deadline = this.now() + this.options.testTimeoutMs;
    for (let attempt = 1; ; attempt += 1) {
      try {
        // Straight to Auth0 with the pending credential: no cache, no lease, nothing stored.
        await this.deps.idp.fetchToken({ ...request, credentials: pending });
        this.deps.log.info('rotation: the new credential works', { client: client.name, attempts: attempt });
        return;
      } catch (error) {
        if (this.now() + this.options.testIntervalMs > deadline) {
          // AWSCURRENT is untouched: finishSecret will not run for this version.
          throw new RotationError(`testSecret: Auth0 refused the new credential of ${client.name} for ${this.options.testTimeoutMs} ms (${describe(error).message})`, { cause: error });
        }
        await this.sleep(this.options.testIntervalMs);
      }
    }
  }

  private async finishSecret(secret: SecretDescription, client: ClientConfig, token: string): Promise<void> {
    const currentVersion = Object.entries(secret.versions).find(([, stages]) => stages.includes('AWSCURRENT'))?.[0];
    const previous = client.authMethod === 'private_key_jwt' ? await this.current(secret) : undefined;
    await this.deps.secrets.moveCurrent(secret.arn, token, currentVersion);
    if (previous === undefined) return;
    // private_key_jwt: only now that every reader gets the new key is the old one retired.
    const pending = await this.pending(secret, token);
    const accessToken = await this.managementToken(client, KEY_ROTATION_SCOPES);
    const registered = await this.deps.management.listCredentials(client.origin, accessToken, pending.clientId);
    const mine = registered.find((c) => c.name === credentialName(token));
    if (mine === undefined) throw new RotationError(`finishSecret: the new credential of ${client.name} is not registered (setSecret has not run)`);
    await this.deps.management.attachCredentials(client.origin, accessToken, pending.clientId, [mine.id]);
    const old = await this.credentialOf(previous, registered);
    if (old !== undefined && old.id !== mine.id) await this.deps.management.deleteCredential(client.origin, accessToken, pending.clientId, old.id);
  }

  private async current(secret: SecretDescription): Promise<ClientCredentials> {
    const raw = await this.deps.secrets.read(secret.arn, { stage: 'AWSCURRENT' });
    if (raw === undefined) throw new RotationError(`secret ${secret.name} has no AWSCURRENT value: set the client's credentials first`);
    return this.deps.parseCredentials(secret.name, raw);
  }

  private async pending(secret: SecretDescription, token: string): Promise<ClientCredentials> {
    const raw = await this.deps.secrets.read(secret.arn, { versionId: token });
    if (raw === undefined) throw new RotationError(`secret ${secret.name} has no value for version ${token} (createSecret has not run)`);
    return this.deps.parseCredentials(secret.name, raw);
  }

  /** The registered credential holding `credentials`' key, found by its RFC 7638 thumbprint. */
  private async credentialOf(credentials: ClientCredentials, registered: readonly Auth0Credential[]): Promise<Auth0Credential | undefined> {
    if (credentials.kind !== 'private_key') return undefined;
    const kid = await calculateJwkThumbprint(await exportJWK(await importSPKI(await publicPem(credentials), 'RS256')));
    return registered.find((c) => c.kid === kid);
  }

  private async managementToken(client: ClientConfig, scopes: readonly string[]): Promise<string> {
    const manager = client.rotationManagementClient === undefined ? undefined : this.deps.grants.clients.get(client.rotationManagementClient);
    if (manager === undefined) throw new RotationError(`client ${client.name} has no rotation.managementClient in the grants file`);
    const token = await this.deps.tokens.tokenFor({ client: manager, audience: `${client.origin}/api/v2/`, scopes: [...scopes].sort() });
    return token.access_token;
  }
}

/** One credential name per rotation, so setSecret run twice finds what it made the first time. */
function credentialName(token: string): string {
  return `token-vendor-${token}`.slice(0, 64);
}

async function publicPem(credentials: ClientCredentials): Promise<string> {
  if (credentials.kind !== 'private_key') throw new RotationError('expected a private_key credential');
  // Validates the key as jose will use it, then derives the public half.
  await importPKCS8(credentials.privateKeyPem, 'RS256');
  return createPublicKey(credentials.privateKeyPem).export({ type: 'spki', format: 'pem' }).toString();
}

