/**
 * Envelope encryption with a data key per sealed value (AWS KMS developer guide, "Envelope
 * encryption"; the AWS Encryption SDK does the same: one data key per message).
 *
 * Each `seal` asks KMS for a fresh AES-256 data key (GenerateDataKey), with the item's key in the
 * KMS encryption context beside the purpose and the table, and stores the key only as the KMS
 * ciphertext inside the sealed value. So:
 * - read access to the table yields no usable token: the data key unwraps only through KMS, which
 *   the key policy opens only to the function roles (infra/deployment.cjs, `FunctionsSealTokens`);
 * - nothing in the table chooses the key a new value is sealed with: there is no shared data key,
 *   no pointer to plant, and no lease to take to rotate one;
 * - a wrapped key moved to another item does not unwrap there: KMS authenticates the encryption
 *   context and refuses (`InvalidCiphertextException`) a context that differs from the one it was
 *   wrapped with (KMS developer guide, "Encryption context"); the item's key is also the GCM
 *   associated data, so a whole sealed value moved elsewhere fails on either count.
 *
 * Unwrapped keys are kept in memory, bounded (least recently used out), per (item, wrapped key):
 * the instance that sealed a value never asks KMS to open it, the warm path never calls KMS, and
 * a cold instance makes one Decrypt per distinct sealed value it reads. The KMS client itself is
 * loaded on first use (kmsModule.ts), so an instance that only serves from memory never loads it.
 *
 * Sealed format: `v2.<base64url(wrapped data key)>.<base64url(iv | ciphertext | tag)>`.
 * (`v1`, the fleet-shared data key of earlier versions, is refused as `ERR_SEAL_FORMAT`: its
 * records read as misses and are replaced by the next fetch.)
 */
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import type { KMSClient } from '@aws-sdk/client-kms';
import type * as KmsModule from './kmsModule.js';
import { onFirstUse } from '../core/onFirstUse.js';
import { StoreUnavailableError } from '../core/errors.js';
import { SealError, type TokenSealer } from '../core/sealing.js';

const FORMAT_VERSION = 'v2';
/** The encryption context's `purpose`: what the KMS key policy requires (infra/deployment.cjs, infra/iam.yml). */
export const SEAL_PURPOSE = 'token-vendor-token-seal';
/**
 * 96-bit random IVs (NIST SP 800-38D §8.2.2). Each data key seals one value, so the 2^32
 * invocations-per-key bound of §8.3 is never approached.
 */
const IV_BYTES = 12;
const TAG_BYTES = 16;
const DATA_KEY_BYTES = 32;
/** KMS ciphertext blobs are at most 6144 bytes (KMS API reference, Decrypt `CiphertextBlob`). */
const MAX_WRAPPED_BYTES = 6144;
const DEFAULT_CACHE_ENTRIES = 1024;
/**
 * The deadline of each KMS call (aborted through the SDK's `abortSignal`: AWS Developer Tools
 * blog, "AbortController in modular AWS SDK for JavaScript"), so no hung call can use up the
 * Lambda timeout. Only a fetch (seal) and a cold read (open) call out at all.
 */
const CALL_TIMEOUT_MS = 5_000;
const SEALED_PATTERN = new RegExp(`^${FORMAT_VERSION}\\.([A-Za-z0-9_-]+)\\.([A-Za-z0-9_-]+)$`);

/** The KMS encryption context of the data key sealing item `itemKey` of `table`. */
export function sealEncryptionContext(table: string, itemKey: string): Record<string, string> {
  // `purpose` and `table` are what the key policy conditions on; `item` binds the key to one item
  // (extra context keys are allowed: the policy does not restrict kms:EncryptionContextKeys).
  return { purpose: SEAL_PURPOSE, table, item: itemKey };
}

/**
 * What a {@link KmsTokenSealer} is built from. The client is built once per instance and passed in
 * (AWS Lambda developer guide, "Best practices": initialise SDK clients outside the handler).
 */
export interface KmsTokenSealerOptions {
  /** the KMS client; by default one is built (kmsModule.ts) the first time KMS is needed */
  readonly kms?: KMSClient | undefined;
  /** the token table: part of every data key's encryption context */
  readonly tableName: string;
  /** the KMS key that wraps data keys: key id, key ARN, alias name or alias ARN */
  readonly keyId: string;
  /** unwrapped data keys kept in memory; default 1024 */
  readonly cacheEntries?: number | undefined;
}

/** The KMS module (loaded on first use) and the client to call it with. */
interface Kms {
  readonly module: typeof KmsModule;
  readonly client: KMSClient;
}

/** {@link TokenSealer} over one KMS-wrapped AES-256-GCM data key per sealed value. */
export class KmsTokenSealer implements TokenSealer {
  private readonly cacheEntries: number;
  /**
   * Unwrapped data keys, resolved or in flight (single flight per key), by item and wrapped key,
   * least recently used first. The key material is in a KeyObject: it cannot be logged or serialised.
   */
  private readonly keys = new Map<string, Promise<KeyObject>>();
  /** KMS, once loaded (single flight) */
  private readonly loadedKms = onFirstUse<Kms>(async () => {
    const module = await import('./kmsModule.js');
    return { module, client: this.options.kms ?? module.kmsClient() };
  });

  constructor(private readonly options: KmsTokenSealerOptions) {
    this.cacheEntries = options.cacheEntries ?? DEFAULT_CACHE_ENTRIES;
    if (!Number.isSafeInteger(this.cacheEntries) || this.cacheEntries < 1) {
      throw new RangeError(`cacheEntries must be a positive integer, got ${this.cacheEntries}`);
    }
  }

  /** One GenerateDataKey: the value gets a data key of its own, bound to `itemKey`. */
  async seal(plaintext: string, itemKey: string): Promise<string> {
    const out = await this.kmsCall('GenerateDataKey', (kms, abortSignal) =>
      kms.client.send(
        new kms.module.GenerateDataKeyCommand({
          KeyId: this.options.keyId,
          KeySpec: 'AES_256',
          EncryptionContext: sealEncryptionContext(this.options.tableName, itemKey),
        }),
        { abortSignal },
      ),
    );
    const wrapped = out.CiphertextBlob;
    if (wrapped === undefined || wrapped.length === 0 || wrapped.length > MAX_WRAPPED_BYTES) {
      throw new StoreUnavailableError('KMS GenerateDataKey returned no usable ciphertext');
    }
    const key = toKeyObject(out.Plaintext, 'GenerateDataKey');
    const encodedKey = Buffer.from(wrapped).toString('base64url');
    // Whoever seals a value opens it without KMS (the fetching instance reads its own token back).
    this.remember(cacheId(itemKey, encodedKey), Promise.resolve(key));

    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(associatedData(itemKey));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const payload = Buffer.concat([iv, ciphertext, cipher.getAuthTag()]);
    return `${FORMAT_VERSION}.${encodedKey}.${payload.toString('base64url')}`;
  }

  /** No KMS call when this instance has unwrapped the value's data key before; one Decrypt otherwise. */
  async open(sealed: string, itemKey: string): Promise<string> {
    const { encodedKey, wrapped, payload } = parseSealed(sealed);
    const key = await this.keyFor(itemKey, encodedKey, wrapped);
    const decipher = createDecipheriv('aes-256-gcm', key, payload.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAAD(associatedData(itemKey));
    decipher.setAuthTag(payload.subarray(payload.length - TAG_BYTES));
    try {
      const plaintext = Buffer.concat([decipher.update(payload.subarray(IV_BYTES, payload.length - TAG_BYTES)), decipher.final()]);
      return plaintext.toString('utf8');
    } catch (error) {
      throw new SealError('ERR_SEAL_OPEN', 'Sealed value failed authentication (tampered with, or sealed for another item)', { cause: error });
    }
  }

  /** How many unwrapped data keys this instance holds (tests, the bench). */
  get cachedKeys(): number {
    return this.keys.size;
  }

  /** The data key wrapped as `wrapped` for `itemKey`: from memory, else unwrapped by KMS (single flight). */
  private keyFor(itemKey: string, encodedKey: string, wrapped: Buffer): Promise<KeyObject> {
    const id = cacheId(itemKey, encodedKey);
    const cached = this.keys.get(id);
    if (cached !== undefined) {
      // Most recently used last: eviction takes the first.
      this.keys.delete(id);
      this.keys.set(id, cached);
      return cached;
    }
    const loading = this.unwrap(itemKey, wrapped);
    this.remember(id, loading);
    // Failures are not kept: a later open tries again (and an outage is not a verdict).
    loading.catch(() => {
      if (this.keys.get(id) === loading) this.keys.delete(id);
    });
    return loading;
  }

  private remember(id: string, key: Promise<KeyObject>): void {
    this.keys.delete(id);
    this.keys.set(id, key);
    while (this.keys.size > this.cacheEntries) {
      const oldest = this.keys.keys().next();
      if (oldest.done === true) break;
      this.keys.delete(oldest.value);
    }
  }

  private async unwrap(itemKey: string, wrapped: Buffer): Promise<KeyObject> {
    const out = await this.kmsCall('Decrypt', (kms, abortSignal) =>
      kms.client.send(
        new kms.module.DecryptCommand({
          CiphertextBlob: wrapped,
          // KeyId pins the KMS key: a blob wrapped under any other key is refused, not unwrapped.
          KeyId: this.options.keyId,
          // KMS authenticates the context: a key wrapped for another item or table is refused.
          EncryptionContext: sealEncryptionContext(this.options.tableName, itemKey),
        }),
        { abortSignal },
      ),
    );
    return toKeyObject(out.Plaintext, 'Decrypt');
  }

  /** KMS, loaded the first time it is needed: the module, and the client passed in or built then. */
  private kms(): Promise<Kms> {
    return this.loadedKms.get();
  }

  private async kmsCall<T>(operation: string, send: (kms: Kms, abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    try {
      return await send(await this.kms(), AbortSignal.timeout(CALL_TIMEOUT_MS));
    } catch (error) {
      const name = error instanceof Error ? error.name : 'Unknown';
      // KMS refusing the blob itself is deterministic: it is not ours for this item (KMS API
      // reference, Decrypt errors: InvalidCiphertextException, IncorrectKeyException).
      if (name === 'InvalidCiphertextException' || name === 'IncorrectKeyException') {
        throw new SealError('ERR_SEAL_KEY', `KMS ${operation} refused the sealed value's data key (${name})`, { cause: error });
      }
      throw new StoreUnavailableError(`KMS ${operation} failed (${name})`, { cause: error });
    }
  }
}

/** The GCM associated data: the format and the item, so a value opens only as what and where it was sealed. */
function associatedData(itemKey: string): Buffer {
  return Buffer.from(`${FORMAT_VERSION}\n${itemKey}`, 'utf8');
}

/** A data key is reused only for the item it was unwrapped for (KMS checked that context, not this cache). */
function cacheId(itemKey: string, encodedKey: string): string {
  return `${itemKey}\n${encodedKey}`;
}

/** Moves the key material into a KeyObject and wipes the SDK's copy, so no readable copy stays on the heap. */
function toKeyObject(plaintext: Uint8Array | undefined, operation: string): KeyObject {
  if (plaintext?.length !== DATA_KEY_BYTES) throw new StoreUnavailableError(`KMS ${operation} returned no 256-bit data key`);
  const key = createSecretKey(plaintext);
  plaintext.fill(0);
  return key;
}

/** Node's decoder ignores stray trailing bits: insist on the canonical form, so every change to the string is a change to the bytes. */
function canonical(encoded: string): Buffer | undefined {
  const bytes = Buffer.from(encoded, 'base64url');
  return bytes.toString('base64url') === encoded ? bytes : undefined;
}

function parseSealed(sealed: string): { encodedKey: string; wrapped: Buffer; payload: Buffer } {
  const match = SEALED_PATTERN.exec(sealed);
  const encodedKey = match?.[1];
  const encodedPayload = match?.[2];
  if (encodedKey === undefined || encodedPayload === undefined) throw new SealError('ERR_SEAL_FORMAT', 'Not a sealed value');
  const wrapped = canonical(encodedKey);
  const payload = canonical(encodedPayload);
  if (wrapped === undefined || wrapped.length === 0 || wrapped.length > MAX_WRAPPED_BYTES) throw new SealError('ERR_SEAL_FORMAT', 'Not a sealed value');
  if (payload === undefined || payload.length < IV_BYTES + TAG_BYTES) throw new SealError('ERR_SEAL_FORMAT', 'Not a sealed value');
  return { encodedKey, wrapped, payload };
}
