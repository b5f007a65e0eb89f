/**
 * KmsTokenSealer against a real moto_server (KMS + DynamoDB): the round trip, refusals, and, by
 * counting calls at KMS, that the fleet shares one data key and the warm path never calls KMS.
 * Each "instance" is a sealer with its own KMS client, as separate Lambda instances would have;
 * each test has its own table, so its own data keys.
 */
import { createDecipheriv, createHash, randomBytes, randomUUID } from 'node:crypto';
import { PutItemCommand, ScanCommand, UpdateItemCommand, type AttributeValue, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DecryptCommand, GenerateDataKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DATA_KEY_LEASE, KmsTokenSealer, type PointerDefect } from '../../functions/adapters/kmsTokenSealer.js';
import { DynamoLeaseStore, tableKey } from '../../functions/adapters/tokenTable.js';
import { StoreUnavailableError } from '../../functions/core/errors.js';
import { SealError } from '../../functions/core/sealing.js';
import { freePort, startMoto, type MotoServer } from '../../local/moto.js';
import {
  LOCAL_AWS_CREDENTIALS,
  LOCAL_REGION,
  LOCAL_SEAL_KEY_ALIAS,
  createSealKey,
  createTokenTable,
  localDynamoDb,
  localKms,
} from '../../local/seed.js';

const DAY_MS = 24 * 3600 * 1000;
const ENCRYPTION_CONTEXT = (table: string) => ({ purpose: 'token-vendor-token-seal', table });

let moto: MotoServer;
let dynamodb: DynamoDBClient;
/** KMS calls by command name, across every instance of the current test. */
const kmsCalls = new Map<string, number>();
const callsTo = (command: 'GenerateDataKey' | 'Decrypt') => kmsCalls.get(`${command}Command`) ?? 0;
const totalKmsCalls = () => [...kmsCalls.values()].reduce((a, b) => a + b, 0);

beforeAll(async () => {
  moto = await startMoto();
  dynamodb = localDynamoDb(moto.endpoint);
  await createSealKey(localKms(moto.endpoint), LOCAL_SEAL_KEY_ALIAS);
});
afterAll(async () => {
  await moto?.stop();
});
beforeEach(() => {
  kmsCalls.clear();
});

/** A KMS client that counts every call it sends, as the IdP suite counts token requests. */
function countingKms(): KMSClient {
  const kms = localKms(moto.endpoint);
  kms.middlewareStack.add(
    (next, context) => (args) => {
      const command = context.commandName ?? 'unknown';
      kmsCalls.set(command, (kmsCalls.get(command) ?? 0) + 1);
      return next(args);
    },
    { step: 'initialize', name: 'countKmsCalls' },
  );
  return kms;
}

async function newTable(): Promise<string> {
  const tableName = `tokens-${randomUUID().slice(0, 8)}`;
  await createTokenTable(dynamodb, tableName);
  return tableName;
}

/** A DynamoDB client that calls `hook` with each command before it is sent or after it is answered. */
function dynamoWith(
  when: 'before' | 'after',
  hook: (command: string, input: Record<string, unknown>) => Promise<void> | void,
): DynamoDBClient {
  const client = localDynamoDb(moto.endpoint);
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const command = context.commandName ?? 'unknown';
      const input = args.input as Record<string, unknown>;
      if (when === 'before') await hook(command, input);
      const result = await next(args);
      if (when === 'after') await hook(command, input);
      return result;
    },
    { step: 'initialize', name: 'hookEachCall' },
  );
  return client;
}

interface InstanceOptions {
  readonly now?: () => number;
  readonly rotateAfterMs?: number;
  readonly kms?: KMSClient;
  readonly dynamodb?: DynamoDBClient;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly random?: () => number;
  readonly onRepair?: (defect: PointerDefect) => void;
  readonly log?: { warn: (message: string, ...fields: Record<string, unknown>[]) => void };
}

/** One "Lambda instance": its own KMS client and in-memory keys, the shared table. */
function instance(tableName: string, options: InstanceOptions = {}): KmsTokenSealer {
  return new KmsTokenSealer({ kms: countingKms(), dynamodb, tableName, keyId: LOCAL_SEAL_KEY_ALIAS, ...options });
}

const dataKeyIdOf = (sealed: string) => sealed.split('.')[1];
const fakeToken = () => `eyJ${randomBytes(180).toString('base64url')}`;

/** The same string with one byte of its payload flipped, re-encoded canonically. */
function flipByte(sealed: string, index: number): string {
  const [version, id, encoded] = sealed.split('.');
  const payload = Buffer.from(encoded ?? '', 'base64url');
  payload[index] = (payload[index] ?? 0) ^ 0x01;
  return `${version}.${id}.${payload.toString('base64url')}`;
}

async function scan(tableName: string): Promise<Record<string, AttributeValue>[]> {
  return (await dynamodb.send(new ScanCommand({ TableName: tableName, ConsistentRead: true }))).Items ?? [];
}

describe('sealing and opening', () => {
  it('round-trips a token, and the sealed value shows nothing of it', async () => {
    const sealer = instance(await newTable());
    const token = fakeToken();

    const sealed = await sealer.seal(token, 'item-1');
    const again = await sealer.seal(token, 'item-1');

    expect(sealed).toMatch(/^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$/);
    expect(sealed).not.toContain(token.slice(3, 23));
    expect(again).not.toBe(sealed); // a fresh IV every time
    expect(await sealer.open(sealed, 'item-1')).toBe(token);
    expect(await sealer.open(again, 'item-1')).toBe(token);
    expect(await sealer.open(await sealer.seal('', 'item-2'), 'item-2')).toBe('');
  });

  it('refuses a value sealed for another item', async () => {
    const sealer = instance(await newTable());
    const sealed = await sealer.seal(fakeToken(), 'item-1');

    const opening = sealer.open(sealed, 'item-2');

    await expect(opening).rejects.toBeInstanceOf(SealError);
    await expect(opening).rejects.toMatchObject({ name: 'SealError', code: 'ERR_SEAL_OPEN' });
  });

  it('refuses a tampered value: IV, ciphertext or tag', async () => {
    const sealer = instance(await newTable());
    const sealed = await sealer.seal(fakeToken(), 'item-1');
    const payloadBytes = Buffer.from(sealed.split('.')[2] ?? '', 'base64url').length;

    for (const index of [0, 12, 40, payloadBytes - 1]) {
      await expect(sealer.open(flipByte(sealed, index), 'item-1')).rejects.toMatchObject({ code: 'ERR_SEAL_OPEN' });
    }
  });

  it('refuses what is not a sealed value, and a data key it does not know', async () => {
    const sealer = instance(await newTable());
    const sealed = await sealer.seal(fakeToken(), 'item-1');
    const [, id, encoded = ''] = sealed.split('.');
    // Same bytes, different string: the payload (12 + 243 + 16 = 271 bytes) leaves the last
    // character four unused low bits, which Node's decoder ignores. Flip the lowest.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const lastChar = alphabet[alphabet.indexOf(encoded.at(-1) ?? '') ^ 1] ?? '';
    const nonCanonical = `v1.${id}.${encoded.slice(0, -1)}${lastChar}`;

    for (const value of [fakeToken(), '', `v2.${id}.${encoded}`, `v1.${id}.${encoded.slice(0, 20)}`, `v1.${id}.${encoded}=`]) {
      await expect(sealer.open(value, 'item-1')).rejects.toMatchObject({ code: 'ERR_SEAL_FORMAT' });
    }
    expect(Buffer.from(nonCanonical.split('.')[2] ?? '', 'base64url').equals(Buffer.from(encoded, 'base64url'))).toBe(true);
    await expect(sealer.open(nonCanonical, 'item-1')).rejects.toMatchObject({ code: 'ERR_SEAL_FORMAT' });
    await expect(sealer.open(`v1.${'A'.repeat(16)}.${encoded}`, 'item-1')).rejects.toMatchObject({ code: 'ERR_SEAL_KEY' });
  });
});

describe('one data key for the fleet, no KMS on the warm path', () => {
  it('two instances sealing at once make one GenerateDataKey call and converge on one data key', async () => {
    const table = await newTable();
    const [a, b] = [instance(table), instance(table)];

    const sealed = await Promise.all(
      Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a : b).seal(`token-${i}`, `item-${i}`)),
    );

    expect(callsTo('GenerateDataKey')).toBe(1);
    expect(callsTo('Decrypt')).toBe(1); // the instance that waited unwraps the winner's key, once
    expect(new Set(sealed.map(dataKeyIdOf)).size).toBe(1);
    expect(await a.open(sealed[1] ?? '', 'item-1')).toBe('token-1');
    expect(await b.open(sealed[0] ?? '', 'item-0')).toBe('token-0');
    expect(totalKmsCalls()).toBe(2);
  });

  it('five instances racing to seal make one GenerateDataKey call between them', async () => {
    const table = await newTable();
    const fleet = Array.from({ length: 5 }, () => instance(table));

    const sealed = await Promise.all(Array.from({ length: 20 }, (_, i) => fleet[i % 5]!.seal(`token-${i}`, `item-${i}`)));

    expect(callsTo('GenerateDataKey')).toBe(1);
    expect(callsTo('Decrypt')).toBe(4); // each waiter unwraps the winner's key, once
    expect(new Set(sealed.map(dataKeyIdOf)).size).toBe(1);
    for (const [i, sealer] of fleet.entries()) expect(await sealer.open(sealed[(i + 1) % 20] ?? '', `item-${(i + 1) % 20}`)).toBe(`token-${(i + 1) % 20}`);
  });

  it('concurrent seals in one instance load the data key once', async () => {
    const table = await newTable();
    const dynamoCalls: string[] = [];
    const sealer = instance(table, { dynamodb: dynamoWith('after', (command) => void dynamoCalls.push(command)) });

    await Promise.all(Array.from({ length: 10 }, (_, i) => sealer.seal(`token-${i}`, `item-${i}`)));

    expect(callsTo('GenerateDataKey')).toBe(1);
    // Read the pointer, take the lease, read again under it, write key and pointer, release.
    expect(dynamoCalls).toEqual(['GetItemCommand', 'PutItemCommand', 'GetItemCommand', 'PutItemCommand', 'PutItemCommand', 'DeleteItemCommand']);
  });

  it('an instance that found no pointer just before another published adopts that one', async () => {
    const table = await newTable();
    const first = instance(table);
    let firstSealed: Promise<string> | undefined;
    // The late instance's first read (no pointer yet) is answered only once `first` has sealed
    // and released the lease: it then holds a stale view and a free lease.
    const late = instance(table, {
      dynamodb: dynamoWith('after', async (command) => {
        if (command !== 'GetItemCommand' || firstSealed !== undefined) return;
        firstSealed = first.seal('first', 'item-1');
        await firstSealed;
      }),
    });

    const lateSealed = await late.seal('late', 'item-2');

    expect(callsTo('GenerateDataKey')).toBe(1);
    expect(dataKeyIdOf(lateSealed)).toBe(dataKeyIdOf((await firstSealed) ?? ''));
  });

  it('a lease holder slower than the wait budget: the waiter generates its own key, and the fleet still converges', async () => {
    const table = await newTable();
    const waiter = instance(table);
    let waiterSealed: Promise<string> | undefined;
    // The holder has its new key but publishes it only after the waiter, having waited in vain
    // for it, has generated and published its own.
    const holder = instance(table, {
      dynamodb: dynamoWith('before', async (command, input) => {
        const pk = (input.Item as Record<string, AttributeValue> | undefined)?.pk?.S;
        if (command !== 'PutItemCommand' || pk !== tableKey.dataKeyPointer() || waiterSealed !== undefined) return;
        waiterSealed = waiter.seal('waiter', 'item-2');
        await waiterSealed;
      }),
    });
    const started = Date.now();

    const holderSealed = await holder.seal('holder', 'item-1');

    expect(Date.now() - started).toBeLessThan(10_000); // the waiter gave up waiting
    expect(callsTo('GenerateDataKey')).toBe(2); // both asked KMS...
    expect(dataKeyIdOf(holderSealed)).toBe(dataKeyIdOf((await waiterSealed) ?? '')); // ...one key won
    expect(await holder.open((await waiterSealed) ?? '', 'item-2')).toBe('waiter');
  });

  it('the lease is the table\'s fleet lease: while another holds it, the sealer waits about 3 s (its own sleep), then generates anyway', async () => {
    const table = await newTable();
    const holder = new DynamoLeaseStore({ client: localDynamoDb(moto.endpoint), tableName: table });
    expect(await holder.acquireLease(DATA_KEY_LEASE, 'a-dead-instance', Date.now() + 60_000)).toBe(true);
    const pauses: number[] = [];
    const sealer = instance(table, { sleep: async (ms) => void pauses.push(ms), random: () => 0.5 });
    const started = Date.now();

    const sealed = await sealer.seal('t', 'item-1');

    expect(Date.now() - started).toBeLessThan(2_000); // the pauses were the injected sleep's, not real time
    expect(pauses.length).toBeGreaterThan(1);
    const waited = pauses.reduce((a, b) => a + b, 0);
    expect(waited).toBeGreaterThanOrEqual(3_000);
    expect(waited).toBeLessThanOrEqual(3_000 + 250);
    expect(callsTo('GenerateDataKey')).toBe(1);
    expect(await sealer.open(sealed, 'item-1')).toBe('t');
    // the holder's lease was never taken over, nor released by the sealer
    expect(await holder.acquireLease(DATA_KEY_LEASE, 'another', Date.now() + 1_000)).toBe(false);
    const leaseItem = (await scan(table)).find((item) => item.pk?.S === tableKey.lease(DATA_KEY_LEASE));
    expect(leaseItem?.owner?.S).toBe('a-dead-instance');
  });

  it('a second instance opens the first one\'s values with one Decrypt, then with none', async () => {
    const table = await newTable();
    const first = instance(table);
    const sealed = await Promise.all(['t0', 't1', 't2'].map((t, i) => first.seal(t, `item-${i}`)));
    kmsCalls.clear();
    const second = instance(table);

    const cold = await Promise.all(sealed.map((s, i) => second.open(s, `item-${i}`)));
    const afterCold = totalKmsCalls();
    const decryptsAfterCold = callsTo('Decrypt');
    for (let round = 0; round < 5; round++) {
      for (const [i, s] of sealed.entries()) expect(await second.open(s, `item-${i}`)).toBe(`t${i}`);
    }
    const ownSealed = await second.seal('t3', 'item-3');

    expect(cold).toEqual(['t0', 't1', 't2']);
    expect(decryptsAfterCold).toBe(1);
    expect(afterCold).toBe(1);
    expect(totalKmsCalls()).toBe(1); // warm opens, and sealing with the key it already holds
    expect(dataKeyIdOf(ownSealed)).toBe(dataKeyIdOf(sealed[0] ?? ''));
  });

  it('rotates after rotateAfterMs, and values sealed under the old key still open', async () => {
    const table = await newTable();
    const clock = { t: Date.now() };
    const now = () => clock.t;
    const [a, b] = [instance(table, { now, rotateAfterMs: 60_000 }), instance(table, { now, rotateAfterMs: 60_000 })];
    const old = await a.seal('old', 'item-1');
    await b.open(old, 'item-1');

    clock.t += 59_999;
    const stillOld = await a.seal('still-old', 'item-2');
    clock.t += 1;
    const rotated = await a.seal('new', 'item-3');
    const fromB = await b.seal('new-b', 'item-4');

    expect(dataKeyIdOf(stillOld)).toBe(dataKeyIdOf(old));
    expect(dataKeyIdOf(rotated)).not.toBe(dataKeyIdOf(old));
    expect(dataKeyIdOf(fromB)).toBe(dataKeyIdOf(rotated)); // b adopts a's new key
    expect(callsTo('GenerateDataKey')).toBe(2);
    const beforeOpens = totalKmsCalls();
    expect(await a.open(old, 'item-1')).toBe('old');
    expect(await b.open(stillOld, 'item-2')).toBe('still-old');
    expect(totalKmsCalls()).toBe(beforeOpens); // both still hold the old key
    const decryptsBeforeLate = callsTo('Decrypt');
    const late = instance(table, { now, rotateAfterMs: 60_000 });
    expect(await late.open(old, 'item-1')).toBe('old');
    expect(await late.open(fromB, 'item-4')).toBe('new-b');
    expect(callsTo('Decrypt')).toBe(decryptsBeforeLate + 2); // one per data key for a new instance
  });
});

describe('what the table holds', () => {
  it('only the wrapped data key, which unwraps only through KMS with its encryption context', async () => {
    const table = await newTable();
    const token = fakeToken();
    const sealed = await instance(table).seal(token, 'item-1');
    const id = dataKeyIdOf(sealed);

    const items = await scan(table);
    const keyItem = items.find((item) => item.pk?.S === tableKey.dataKey(id ?? ''));
    const pointer = items.find((item) => item.pk?.S === tableKey.dataKeyPointer());
    const blob = keyItem?.blob?.B ?? new Uint8Array();
    const createdAt = Number(keyItem?.createdAt?.N);

    expect(Object.keys(keyItem ?? {}).sort()).toEqual(['blob', 'createdAt', 'pk', 'ttl']);
    expect(Number(keyItem?.ttl?.N)).toBe(Math.ceil((createdAt + DAY_MS + 7 * DAY_MS) / 1000));
    expect(Object.keys(pointer ?? {}).sort()).toEqual(['blob', 'createdAt', 'dataKeyId', 'pk']);
    expect(pointer?.dataKeyId?.S).toBe(id);
    expect(Buffer.from(pointer?.blob?.B ?? []).equals(Buffer.from(blob))).toBe(true);

    // The blob alone is useless: KMS refuses it without the encryption context it was bound to.
    const kms = localKms(moto.endpoint);
    await expect(kms.send(new DecryptCommand({ CiphertextBlob: blob }))).rejects.toMatchObject({ name: 'InvalidCiphertextException' });
    const dataKey = Buffer.from(
      (await kms.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: ENCRYPTION_CONTEXT(table) }))).Plaintext ?? [],
    );
    expect(dataKey).toHaveLength(32);

    // Neither the data key nor the token is anywhere in the table, in any encoding.
    const raw = JSON.stringify(items, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v));
    for (const needle of [dataKey.toString('hex'), dataKey.toString('base64'), dataKey.toString('base64url'), token.slice(3, 23)]) {
      expect(raw).not.toContain(needle);
    }
    for (const item of items) {
      for (const value of Object.values(item)) {
        if (value.B !== undefined) expect(Buffer.from(value.B).includes(dataKey)).toBe(false);
      }
    }

    // And the format is what the adapter documents: AES-256-GCM, iv | ciphertext | tag.
    const payload = Buffer.from(sealed.split('.')[2] ?? '', 'base64url');
    const decipher = createDecipheriv('aes-256-gcm', dataKey, payload.subarray(0, 12));
    decipher.setAAD(Buffer.from('item-1'));
    decipher.setAuthTag(payload.subarray(-16));
    expect(Buffer.concat([decipher.update(payload.subarray(12, -16)), decipher.final()]).toString()).toBe(token);
  });
});

describe('a table written to by someone else', () => {
  it('a data key blob swapped for another wrapped key is refused before KMS is asked', async () => {
    const table = await newTable();
    const sealed = await instance(table).seal('t', 'item-1');
    const other = await localKms(moto.endpoint).send(
      new GenerateDataKeyCommand({ KeyId: LOCAL_SEAL_KEY_ALIAS, KeySpec: 'AES_256', EncryptionContext: ENCRYPTION_CONTEXT(table) }),
    );
    await dynamodb.send(
      new UpdateItemCommand({
        TableName: table,
        Key: { pk: { S: tableKey.dataKey(dataKeyIdOf(sealed) ?? '') } },
        UpdateExpression: 'SET #blob = :blob',
        ExpressionAttributeNames: { '#blob': 'blob' }, // a reserved word
        ExpressionAttributeValues: { ':blob': { B: other.CiphertextBlob ?? new Uint8Array() } },
      }),
    );
    kmsCalls.clear();

    await expect(instance(table).open(sealed, 'item-1')).rejects.toMatchObject({ code: 'ERR_SEAL_KEY' });
    expect(totalKmsCalls()).toBe(0);
  });

  it('a data key copied to another table does not unwrap there (KMS encryption context)', async () => {
    const [source, target] = [await newTable(), await newTable()];
    const sealed = await instance(source).seal('t', 'item-1');
    for (const item of await scan(source)) await dynamodb.send(new PutItemCommand({ TableName: target, Item: item }));
    kmsCalls.clear();

    await expect(instance(target).open(sealed, 'item-1')).rejects.toMatchObject({ code: 'ERR_SEAL_KEY' });
    expect(callsTo('Decrypt')).toBe(1);
  });
});

describe('failures of the services', () => {
  it('KMS unreachable: StoreUnavailableError, and the next instance is not held up by a lease', async () => {
    const table = await newTable();
    const deadKms = new KMSClient({
      endpoint: `http://127.0.0.1:${await freePort()}`,
      region: LOCAL_REGION,
      credentials: LOCAL_AWS_CREDENTIALS,
      maxAttempts: 1,
    });

    const failed = instance(table, { kms: deadKms }).seal('t', 'item-1');

    await expect(failed).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(failed).rejects.toThrow(/^KMS GenerateDataKey failed \(/);
    const started = Date.now();
    const healthy = instance(table);
    expect(await healthy.open(await healthy.seal('t', 'item-1'), 'item-1')).toBe('t');
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('DynamoDB failing (no such table): StoreUnavailableError on seal and on open', async () => {
    const table = await newTable();
    const sealed = await instance(table).seal('t', 'item-1');
    const missing = instance(`missing-${randomUUID().slice(0, 8)}`);

    await expect(missing.seal('t', 'item-1')).rejects.toThrow(StoreUnavailableError);
    await expect(missing.open(sealed, 'item-1')).rejects.toThrow(/^DynamoDB GetItem failed \(ResourceNotFoundException\)$/);
  });
});

describe('a defective data key pointer is repaired by the next seal', () => {
  /** The adapter's name for a wrapped key: its blob's digest. */
  const idOfBlob = (blob: Uint8Array) => createHash('sha256').update(blob).digest('base64url').slice(0, 16);
  const pointerKey = { pk: { S: tableKey.dataKeyPointer() } };

  async function item(tableName: string, pk: string): Promise<Record<string, AttributeValue> | undefined> {
    return (await scan(tableName)).find((i) => i.pk?.S === pk);
  }

  /** A data key wrapped by KMS for this table, as the adapter would generate it (not yet in the table). */
  async function wrappedKey(tableName: string): Promise<Uint8Array> {
    const out = await localKms(moto.endpoint).send(
      new GenerateDataKeyCommand({ KeyId: LOCAL_SEAL_KEY_ALIAS, KeySpec: 'AES_256', EncryptionContext: ENCRYPTION_CONTEXT(tableName) }),
    );
    return out.CiphertextBlob ?? new Uint8Array();
  }

  async function putPointer(tableName: string, attributes: Record<string, AttributeValue>): Promise<void> {
    await dynamodb.send(new PutItemCommand({ TableName: tableName, Item: { ...pointerKey, ...attributes } }));
  }

  async function putDataKey(tableName: string, blob: Uint8Array): Promise<void> {
    const createdAt = Date.now();
    await dynamodb.send(
      new PutItemCommand({
        TableName: tableName,
        Item: { pk: { S: tableKey.dataKey(idOfBlob(blob)) }, blob: { B: blob }, createdAt: { N: String(createdAt) }, ttl: { N: String(Math.ceil(createdAt / 1000) + 3600) } },
      }),
    );
  }

  /** A working pointer and its key, published by an instance that then goes away; returns the key's blob. */
  async function publishedKey(tableName: string): Promise<Uint8Array> {
    await instance(tableName).seal('t', 'item-0');
    return (await item(tableName, tableKey.dataKeyPointer()))?.blob?.B ?? new Uint8Array();
  }

  /** The pointer parses, names its blob's key, and that key's item holds the same blob; its id. */
  async function expectUsablePointer(tableName: string): Promise<string> {
    const pointer = await item(tableName, tableKey.dataKeyPointer());
    const id = pointer?.dataKeyId?.S ?? '';
    const blob = pointer?.blob?.B ?? new Uint8Array();
    expect(Object.keys(pointer ?? {}).sort()).toEqual(['blob', 'createdAt', 'dataKeyId', 'pk']);
    expect(Number.isFinite(Number(pointer?.createdAt?.N))).toBe(true);
    expect(id).toBe(idOfBlob(blob));
    const keyItem = await item(tableName, tableKey.dataKey(id));
    expect(Buffer.from(keyItem?.blob?.B ?? []).equals(Buffer.from(blob))).toBe(true);
    return id;
  }

  /** An instance whose repairs and warnings are recorded. */
  function watched(tableName: string, options: InstanceOptions = {}) {
    const repairs: PointerDefect[] = [];
    const warnings: { message: string; fields: Record<string, unknown>[] }[] = [];
    const sealer = instance(tableName, {
      onRepair: (defect) => void repairs.push(defect),
      log: { warn: (message, ...fields) => void warnings.push({ message, fields }) },
      ...options,
    });
    return { sealer, repairs, warnings };
  }

  const defects: Array<[string, PointerDefect, (tableName: string) => Promise<void>]> = [
    [
      'without createdAt',
      'malformed',
      async (t) => {
        await publishedKey(t);
        await dynamodb.send(new UpdateItemCommand({ TableName: t, Key: pointerKey, UpdateExpression: 'REMOVE createdAt' }));
      },
    ],
    [
      'with a createdAt that is not a number',
      'malformed',
      async (t) => {
        const blob = await publishedKey(t);
        await putPointer(t, { dataKeyId: { S: idOfBlob(blob) }, blob: { B: blob }, createdAt: { S: 'yesterday' } });
      },
    ],
    [
      'naming a key the table does not hold',
      'unknown-key',
      async (t) => {
        const blob = await wrappedKey(t);
        await putPointer(t, { dataKeyId: { S: idOfBlob(blob) }, blob: { B: blob }, createdAt: { N: String(Date.now()) } });
      },
    ],
    [
      'naming another key than its blob',
      'key-mismatch',
      async (t) => {
        const blob = await publishedKey(t);
        await putPointer(t, { dataKeyId: { S: 'A'.repeat(16) }, blob: { B: blob }, createdAt: { N: String(Date.now()) } });
      },
    ],
    [
      'whose blob is garbage (under a real key\'s name)',
      'key-mismatch',
      async (t) => {
        const blob = await publishedKey(t);
        await putPointer(t, { dataKeyId: { S: idOfBlob(blob) }, blob: { B: randomBytes(150) }, createdAt: { N: String(Date.now()) } });
      },
    ],
    [
      'whose blob is garbage KMS refuses (its own name and item)',
      'refused',
      async (t) => {
        const garbage = randomBytes(150);
        await putDataKey(t, garbage);
        await putPointer(t, { dataKeyId: { S: idOfBlob(garbage) }, blob: { B: garbage }, createdAt: { N: String(Date.now()) } });
      },
    ],
  ];

  it.each(defects)('a pointer %s: the next seal succeeds, repairs it once (%s), and what is sealed after opens everywhere', async (_case, defect, plant) => {
    const table = await newTable();
    await plant(table);
    kmsCalls.clear();
    const { sealer, repairs, warnings } = watched(table);

    const sealed = await sealer.seal('after-repair', 'item-1');

    const id = await expectUsablePointer(table);
    expect(dataKeyIdOf(sealed)).toBe(id);
    expect(repairs).toEqual([defect]);
    expect(warnings).toEqual([{ message: 'Replaced a defective data key pointer', fields: [expect.objectContaining({ defect, dataKeyId: id })] }]);
    expect(callsTo('GenerateDataKey')).toBe(1);
    // Nothing left to repair: this instance and a new one seal with the repaired key.
    const other = watched(table);
    const sealedByOther = await other.sealer.seal('other', 'item-2');
    expect(await sealer.seal('again', 'item-3')).toMatch(new RegExp(`^v1\\.${id}\\.`));
    expect(dataKeyIdOf(sealedByOther)).toBe(id);
    expect([...repairs, ...other.repairs]).toEqual([defect]);
    expect(callsTo('GenerateDataKey')).toBe(1);
    expect(await other.sealer.open(sealed, 'item-1')).toBe('after-repair');
    expect(await instance(table).open(sealedByOther, 'item-2')).toBe('other');
  });

  it('two instances finding it at once: one repairs it under the lease with one GenerateDataKey, both seal with its key', async () => {
    const table = await newTable();
    await defects[0]![2](table);
    kmsCalls.clear();
    const [a, b] = [watched(table), watched(table)];

    const sealed = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a : b).sealer.seal(`token-${i}`, `item-${i}`)));

    const id = await expectUsablePointer(table);
    expect(new Set(sealed.map(dataKeyIdOf))).toEqual(new Set([id]));
    expect([...a.repairs, ...b.repairs]).toEqual(['malformed']);
    expect(callsTo('GenerateDataKey')).toBe(1);
    expect(await a.sealer.open(sealed[1] ?? '', 'item-1')).toBe('token-1');
    expect(await b.sealer.open(sealed[0] ?? '', 'item-0')).toBe('token-0');
  });

  it('two instances repairing at once past the lease: the conditional write lets one win, and the other adopts its key', async () => {
    const table = await newTable();
    await defects[0]![2](table);
    kmsCalls.clear();
    // The waiter gives up on the lease at once (its sleep takes no time) and repairs it itself.
    const waiter = watched(table, { sleep: async () => undefined, random: () => 0.5 });
    let waiterSealed: Promise<string> | undefined;
    // The holder has generated its key, but publishes it only after the waiter has repaired the pointer.
    const holder = watched(table, {
      dynamodb: dynamoWith('before', async (command, input) => {
        const pk = (input.Item as Record<string, AttributeValue> | undefined)?.pk?.S;
        if (command !== 'PutItemCommand' || pk !== tableKey.dataKeyPointer() || waiterSealed !== undefined) return;
        waiterSealed = waiter.sealer.seal('waiter', 'item-2');
        await waiterSealed;
      }),
    });

    const holderSealed = await holder.sealer.seal('holder', 'item-1');

    const id = await expectUsablePointer(table);
    expect(callsTo('GenerateDataKey')).toBe(2); // both asked KMS...
    expect(dataKeyIdOf(holderSealed)).toBe(id); // ...one key won
    expect(dataKeyIdOf((await waiterSealed) ?? '')).toBe(id);
    expect(waiter.repairs).toEqual(['malformed']);
    expect(holder.repairs).toEqual([]); // its write found the pointer repaired already
    expect(await holder.sealer.open((await waiterSealed) ?? '', 'item-2')).toBe('waiter');
    expect(await waiter.sealer.open(holderSealed, 'item-1')).toBe('holder');
  });

  it('KMS being unreachable is not a defect: the seal fails, the pointer is left alone, nothing is counted', async () => {
    const table = await newTable();
    await publishedKey(table);
    const before = await item(table, tableKey.dataKeyPointer());
    const deadKms = new KMSClient({
      endpoint: `http://127.0.0.1:${await freePort()}`,
      region: LOCAL_REGION,
      credentials: LOCAL_AWS_CREDENTIALS,
      maxAttempts: 1,
    });
    const { sealer, repairs, warnings } = watched(table, { kms: deadKms });

    await expect(sealer.seal('t', 'item-1')).rejects.toThrow(/^KMS Decrypt failed \(/);

    expect(await item(table, tableKey.dataKeyPointer())).toEqual(before);
    expect(repairs).toEqual([]);
    expect(warnings).toEqual([]);
  });

  it('a missing pointer (the first seal) and a stale one (rotation) are not repairs', async () => {
    const table = await newTable();
    const clock = { t: Date.now() };
    const { sealer, repairs, warnings } = watched(table, { now: () => clock.t, rotateAfterMs: 60_000 });

    const first = await sealer.seal('first', 'item-1');
    clock.t += 60_000;
    const rotated = await sealer.seal('rotated', 'item-2');

    expect(dataKeyIdOf(rotated)).not.toBe(dataKeyIdOf(first));
    expect(await expectUsablePointer(table)).toBe(dataKeyIdOf(rotated));
    expect(repairs).toEqual([]);
    expect(warnings).toEqual([]);
  });
});
