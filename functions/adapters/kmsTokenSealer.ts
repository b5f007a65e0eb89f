/**
 * Envelope encryption of tokens with a data key the whole fleet shares through the token table.
 *
 * A token is sealed with AES-256-GCM under a data key; the data key is stored in the table only
 * as KMS ciphertext, so read access to the table yields no usable token. Each instance unwraps a
 * data key with KMS (loaded on first use: kmsModule.ts) once and keeps it in memory: the warm
 * path makes no KMS call. This module seals, caches, rotates and repairs; the keys' items in the
 * table (each key's own, and the pointer naming the key to seal with now) are dataKeyTable.ts's,
 * and the fleet lease `datakey` (core/lease.ts over tokenTable.ts's DynamoLeaseStore) says who
 * is generating the next key.
 *
 * Rotation is lazy: the first instance to seal after the pointer is `rotateAfterMs` old takes the
 * lease, asks KMS for a new key and publishes it with a conditional write; the others wait for
 * the pointer, so the fleet makes one GenerateDataKey call per rotation and converges on one key.
 * Old keys stay in the table (and in memory) until every token sealed under them has expired.
 *
 * A pointer that cannot be used ({@link PointerDefect}) is repaired by the next seal: the lease
 * holder publishes a new key in place of the defective pointer exactly as read, so of several
 * instances repairing at once one wins and the others adopt its key. Each repair is reported
 * (`onRepair`) and logged.
 *
 * Sealed format: `v1.<dataKeyId>.<base64url(iv | ciphertext | tag)>`. The id is derived from
 * the wrapped key (dataKeyTable.ts's `dataKeyIdOf`), so it also checks the blob read back for it.
 */
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KMSClient } from '@aws-sdk/client-kms';
import type * as KmsModule from './kmsModule.js';
import { onFirstUse } from '../core/onFirstUse.js';
import { StoreUnavailableError, describe } from '../core/errors.js';
import { FleetLease } from '../core/lease.js';
import type { Log } from '../core/ports.js';
import { SealError, type TokenSealer } from '../core/sealing.js';
import { DATA_KEY_ID_LENGTH, DataKeyTable, dataKeyIdOf, type PointerRead, type StoredDataKey } from './dataKeyTable.js';
import { DynamoLeaseStore, type TableRef } from './tokenTable.js';

/** The fleet lease on generating the next data key (its item: `tableKey.lease(DATA_KEY_LEASE)`). */
export const DATA_KEY_LEASE = 'datakey';
const FORMAT_VERSION = 'v1';
/**
 * 96-bit random IVs (NIST SP 800-38D §8.2.2). The whole fleet shares a key, so the bound that
 * matters is 2^32 seals per key (§8.3): one seal per fetched token, and a new key a day, stay far below.
 */
const IV_BYTES = 12;
const TAG_BYTES = 16;
const DATA_KEY_BYTES = 32;
const DEFAULT_ROTATE_AFTER_MS = 24 * 3600 * 1000;
/**
 * The deadline of each outbound call (aborted through the SDK's `abortSignal`: AWS Developer Tools
 * blog, "AbortController in modular AWS SDK for JavaScript"), so no hung call can use up the
 * Lambda timeout. Only cold and rotation paths call out at all.
 */
const CALL_TIMEOUT_MS = 5_000;
/** Long enough for a GetItem, a GenerateDataKey and two PutItems: the longest the lease is held. */
const LEASE_MS = 10_000;
/** The lease is held this long at a time, renewed while the key is generated: a dead holder is taken over this soon. */
const LEASE_HOLD_MS = 2_000;
/** A waiter waits this long for the lease holder's pointer, then generates a key itself. */
const LEASE_WAIT_MS = 3_000;
const SEALED_PATTERN = new RegExp(`^${FORMAT_VERSION}\\.([A-Za-z0-9_-]{${DATA_KEY_ID_LENGTH}})\\.([A-Za-z0-9_-]+)$`);

/**
 * What a {@link KmsTokenSealer} is built from. Clients are built once per instance and passed in
 * (AWS Lambda developer guide, "Best practices": initialise SDK clients outside the handler).
 */
export interface KmsTokenSealerOptions {
  /** the KMS client; by default one is built (kmsModule.ts) the first time KMS is needed */
  readonly kms?: KMSClient | undefined;
  readonly dynamodb: DynamoDBClient;
  /** the token table: data keys live next to the tokens they seal */
  readonly tableName: string;
  /** the KMS key that wraps data keys: key id, key ARN, alias name or alias ARN */
  readonly keyId: string;
  /** a data key seals for this long after it was created; default 24 h */
  readonly rotateAfterMs?: number;
  /** epoch ms */
  readonly now?: () => number;
  /** the pause between looks at the pointer while another instance rotates; default a real timer */
  readonly sleep?: (ms: number) => Promise<void>;
  /** [0, 1), the jitter of those pauses; default `Math.random` */
  readonly random?: () => number;
  /** a seal found the data key pointer unusable and replaced it (a metric: each is logged too) */
  readonly onRepair?: (defect: PointerDefect) => void;
  /** where repairs and a lost lease are logged; none by default */
  readonly log?: Pick<Log, 'warn'> | undefined;
}

/**
 * Why the data key pointer could not be used, and was replaced:
 * - `malformed`: it does not parse (an attribute missing, or of another type);
 * - `key-mismatch`: its blob is not the data key it names (or the named key's item holds another blob);
 * - `unknown-key`: the table holds no data key by the name it gives;
 * - `refused`: KMS refuses to unwrap its blob (wrapped under another KMS key, table or context).
 */
export type PointerDefect = 'malformed' | 'key-mismatch' | 'unknown-key' | 'refused';

/** A data key that cannot be used, and why: a {@link SealError} (`ERR_SEAL_KEY`) to everyone else. */
class DataKeyError extends SealError {
  constructor(
    readonly defect: Exclude<PointerDefect, 'malformed'>,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('ERR_SEAL_KEY', message, options);
  }
}

/** What the pointer says, as read. */
type PointerState =
  | { readonly kind: 'absent' }
  | { readonly kind: 'stale' }
  | { readonly kind: 'usable'; readonly key: DataKey }
  /** `read`: the pointer exactly as read, for the repair's condition */
  | { readonly kind: 'defective'; readonly defect: PointerDefect; readonly read: PointerRead; readonly cause?: unknown };

/** A data key in memory. The key material is in a KeyObject: it cannot be logged or serialised. */
interface DataKey extends Pick<StoredDataKey, 'id' | 'createdAt'> {
  readonly key: KeyObject;
}

/** The KMS module (loaded on first use) and the client to call it with. */
interface Kms {
  readonly module: typeof KmsModule;
  readonly client: KMSClient;
}

/** {@link TokenSealer} over KMS-wrapped AES-256-GCM data keys shared through DynamoDB. */
export class KmsTokenSealer implements TokenSealer {
  private readonly now: () => number;
  private readonly rotateAfterMs: number;
  /** The data key items and the pointer. */
  private readonly dataKeys: DataKeyTable;
  /** One instance of the fleet generates the next data key; the others wait for its pointer. */
  private readonly lease: FleetLease;
  /** Binds every wrapped data key to this purpose and table: a blob copied elsewhere does not unwrap. */
  private readonly encryptionContext: Record<string, string>;
  /** The data key to seal with, while fresh. */
  private current: DataKey | undefined;
  /** Single flight for the current data key: concurrent seals share one load. */
  private loadingCurrent: Promise<DataKey> | undefined;
  /**
   * Unwrapped data keys by id, resolved or in flight (single flight per id). Rotation adds one a
   * day at most and an instance lives hours, so the map stays small without eviction.
   */
  private readonly keys = new Map<string, Promise<KeyObject>>();
  /** KMS, once loaded (single flight) */
  private readonly loadedKms = onFirstUse<Kms>(async () => {
    const module = await import('./kmsModule.js');
    return { module, client: this.options.kms ?? module.kmsClient() };
  });

  constructor(private readonly options: KmsTokenSealerOptions) {
    this.now = options.now ?? Date.now;
    this.rotateAfterMs = options.rotateAfterMs ?? DEFAULT_ROTATE_AFTER_MS;
    if (!Number.isFinite(this.rotateAfterMs) || this.rotateAfterMs <= 0) {
      throw new RangeError(`rotateAfterMs must be a positive number of milliseconds, got ${this.rotateAfterMs}`);
    }
    this.encryptionContext = { purpose: 'token-vendor-token-seal', table: options.tableName };
    const table: TableRef = { client: options.dynamodb, tableName: options.tableName, callTimeoutMs: CALL_TIMEOUT_MS };
    this.dataKeys = new DataKeyTable(table);
    this.lease = new FleetLease({
      store: new DynamoLeaseStore({ ...table, now: this.now }),
      now: this.now,
      sleep: options.sleep ?? ((ms) => delay(ms)),
      random: options.random ?? Math.random,
      holdMs: LEASE_HOLD_MS,
      onLost: (name, error) =>
        options.log?.warn('Lost the data key lease while generating a key; its publish is conditional', {
          lease: name,
          ...(error !== undefined ? { error: describe(error) } : {}),
        }),
    });
  }

  async seal(plaintext: string, associatedData: string): Promise<string> {
    const { id, key } = await this.currentKey();
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(associatedData, 'utf8'));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const payload = Buffer.concat([iv, ciphertext, cipher.getAuthTag()]);
    return `${FORMAT_VERSION}.${id}.${payload.toString('base64url')}`;
  }

  async open(sealed: string, associatedData: string): Promise<string> {
    const { id, payload } = parseSealed(sealed);
    const key = await this.keyFor(id);
    const decipher = createDecipheriv('aes-256-gcm', key, payload.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(associatedData, 'utf8'));
    decipher.setAuthTag(payload.subarray(payload.length - TAG_BYTES));
    try {
      const plaintext = Buffer.concat([decipher.update(payload.subarray(IV_BYTES, payload.length - TAG_BYTES)), decipher.final()]);
      return plaintext.toString('utf8');
    } catch (error) {
      throw new SealError('ERR_SEAL_OPEN', 'Sealed value failed authentication (tampered with, or sealed for another item)', { cause: error });
    }
  }

  private isFresh(createdAt: number): boolean {
    return this.now() - createdAt < this.rotateAfterMs;
  }

  private currentKey(): Promise<DataKey> {
    const current = this.current;
    if (current !== undefined && this.isFresh(current.createdAt)) return Promise.resolve(current);
    // Failures are not kept: the next seal tries again.
    this.loadingCurrent ??= this.loadCurrent().finally(() => {
      this.loadingCurrent = undefined;
    });
    return this.loadingCurrent;
  }

  private async loadCurrent(): Promise<DataKey> {
    const current = await this.rotate();
    this.current = current;
    return current;
  }

  /**
   * The fleet's fresh data key; if there is none (or the pointer is defective), one instance
   * generates the next one and the others wait for it rather than each asking KMS. Without
   * DynamoDB for the lease (`degraded`), the instance goes ahead alone: publishing its key needs
   * DynamoDB anyway.
   */
  private async rotate(): Promise<DataKey> {
    // The last pointer read: a defective one is what the publish must replace.
    let seen: PointerState = { kind: 'absent' };
    const freshKey = async (): Promise<DataKey | undefined> => {
      seen = await this.inspectPointer(true);
      return seen.kind === 'usable' ? seen.key : undefined;
    };
    const result = await this.lease.run<DataKey>({
      name: DATA_KEY_LEASE,
      ttlMs: LEASE_MS,
      waitMs: LEASE_WAIT_MS,
      ready: freshKey,
      // The previous holder may have published and released between our read and our lease.
      produce: async () => (await freshKey()) ?? (await this.generateAndPublish(seen)),
    });
    if ('value' in result) return result.value;
    // The holder is slow or gone. Generating anyway costs one more KMS call; the conditional
    // publish still makes the fleet converge on a single key.
    return this.generateAndPublish(seen);
  }

  /**
   * Read the pointer and tell what it is. Only a deterministic refusal makes it `defective`:
   * DynamoDB or KMS being unreachable propagates (a repair then would replace a good key).
   * @param requireFresh false: a parsed pointer is used however old (a rotation race's winner)
   */
  private async inspectPointer(requireFresh: boolean): Promise<PointerState> {
    const read = await this.dataKeys.readPointer();
    if (read === undefined) return { kind: 'absent' };
    const { pointer } = read;
    if (pointer === undefined) return { kind: 'defective', defect: 'malformed', read };
    if (requireFresh && !this.isFresh(pointer.createdAt)) return { kind: 'stale' };
    try {
      return { kind: 'usable', key: await this.adopt(pointer) };
    } catch (error) {
      if (error instanceof DataKeyError) return { kind: 'defective', defect: error.defect, read, cause: error };
      throw error;
    }
  }

  /**
   * Generate a data key and publish it: in place of a missing or stale pointer, or of the
   * defective one `replacing` read (matched exactly, so a pointer changed since is left alone).
   */
  private async generateAndPublish(replacing: PointerState): Promise<DataKey> {
    const createdAt = this.now();
    const out = await this.kmsCall('GenerateDataKey', (kms, abortSignal) =>
      kms.client.send(
        new kms.module.GenerateDataKeyCommand({ KeyId: this.options.keyId, KeySpec: 'AES_256', EncryptionContext: this.encryptionContext }),
        { abortSignal },
      ),
    );
    const blob = out.CiphertextBlob;
    if (blob === undefined) throw new StoreUnavailableError('KMS GenerateDataKey returned no ciphertext');
    const key = toKeyObject(out.Plaintext, 'GenerateDataKey');
    const id = dataKeyIdOf(blob);

    const stored: StoredDataKey = { id, blob, createdAt };
    // The key's own item first, so a pointer always names a key that `open` can find.
    await this.dataKeys.putDataKey(stored, createdAt + this.rotateAfterMs);
    const defective = replacing.kind === 'defective' ? replacing : undefined;
    // Replace only a missing or stale pointer, or exactly the defective one read: of several rotating, one wins.
    const condition = defective === undefined ? { staleBefore: createdAt - this.rotateAfterMs } : { replacing: defective.read };
    const published = await this.dataKeys.publishPointer(stored, condition);
    if (!published) {
      // Lost the race: use the winner's key. Ours seals nothing; its item lapses by TTL.
      const winner = await this.inspectPointer(false);
      if (winner.kind === 'usable') return winner.key;
      // Changed under us into something else we cannot use: the next seal looks again (and repairs it).
      throw new StoreUnavailableError(`The data key pointer changed while a key was published, and is ${winner.kind === 'defective' ? winner.defect : winner.kind}`);
    }
    this.keys.set(id, Promise.resolve(key));
    if (defective !== undefined) {
      this.options.log?.warn('Replaced a defective data key pointer', {
        defect: defective.defect,
        // Key ids are digests of wrapped keys: public names, never key material.
        ...(defective.read.dataKeyId !== undefined ? { replacedDataKeyId: defective.read.dataKeyId } : {}),
        dataKeyId: id,
        ...(defective.cause !== undefined ? { cause: describe(defective.cause) } : {}),
      });
      this.options.onRepair?.(defective.defect);
    }
    return { id, key, createdAt };
  }

  /**
   * The pointer's data key, if every instance can open what it seals: its blob is the key it
   * names, that key's own item holds the same blob (`open` reads it there), and KMS unwraps it.
   * @throws DataKeyError when not
   */
  private async adopt(pointer: StoredDataKey): Promise<DataKey> {
    if (dataKeyIdOf(pointer.blob) !== pointer.id) {
      throw new DataKeyError('key-mismatch', `The data key pointer's blob is not data key ${pointer.id}`);
    }
    // By id, so through the key's own item (unless already in memory): both digests match, so
    // the pointer's blob and the item's are the same.
    const key = await this.keyFor(pointer.id);
    return { id: pointer.id, key, createdAt: pointer.createdAt };
  }

  /** The unwrapped data key `id`: from memory, else from its item in the table through KMS. */
  private keyFor(id: string): Promise<KeyObject> {
    const cached = this.keys.get(id);
    if (cached !== undefined) return cached;
    const loading = this.unwrap(id);
    this.keys.set(id, loading);
    // Failures are not kept: a later open or seal tries again.
    loading.catch(() => {
      if (this.keys.get(id) === loading) this.keys.delete(id);
    });
    return loading;
  }

  private async unwrap(id: string): Promise<KeyObject> {
    const blob = await this.dataKeys.readBlob(id);
    if (blob === undefined) throw new DataKeyError('unknown-key', `Data key ${id} is unknown (expired, or never published)`);
    // The id is a digest of the blob: a blob swapped in the table under a known id is refused.
    if (dataKeyIdOf(blob) !== id) throw new DataKeyError('key-mismatch', `Data key ${id} does not match its stored blob`);
    const out = await this.kmsCall('Decrypt', (kms, abortSignal) =>
      kms.client.send(
        // KeyId pins the KMS key: a blob wrapped under any other key is refused, not unwrapped.
        new kms.module.DecryptCommand({ CiphertextBlob: blob, KeyId: this.options.keyId, EncryptionContext: this.encryptionContext }),
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
      // KMS refusing the blob itself is deterministic: the stored copy is corrupt or not ours.
      if (name === 'InvalidCiphertextException' || name === 'IncorrectKeyException') {
        throw new DataKeyError('refused', `KMS ${operation} refused the stored data key (${name})`, { cause: error });
      }
      throw new StoreUnavailableError(`KMS ${operation} failed (${name})`, { cause: error });
    }
  }
}

/** Moves the key material into a KeyObject and wipes the SDK's copy, so no readable copy stays on the heap. */
function toKeyObject(plaintext: Uint8Array | undefined, operation: string): KeyObject {
  if (plaintext?.length !== DATA_KEY_BYTES) throw new StoreUnavailableError(`KMS ${operation} returned no 256-bit data key`);
  const key = createSecretKey(plaintext);
  plaintext.fill(0);
  return key;
}

function parseSealed(sealed: string): { id: string; payload: Buffer } {
  const match = SEALED_PATTERN.exec(sealed);
  const id = match?.[1];
  const encoded = match?.[2];
  if (id === undefined || encoded === undefined) throw new SealError('ERR_SEAL_FORMAT', 'Not a sealed value');
  const payload = Buffer.from(encoded, 'base64url');
  // Node's decoder ignores stray trailing bits: insist on the canonical form so that every
  // change to the string is a change to the bytes, which GCM then refuses.
  if (payload.toString('base64url') !== encoded || payload.length < IV_BYTES + TAG_BYTES) {
    throw new SealError('ERR_SEAL_FORMAT', 'Not a sealed value');
  }
  return { id, payload };
}
