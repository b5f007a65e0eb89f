/**
 * KmsTokenSealer against a real moto_server (KMS): the round trip, refusals, and, by counting
 * calls at KMS, that each sealed value has a data key of its own (one GenerateDataKey per seal),
 * that the instance that sealed a value opens it without KMS, that a cold instance makes one
 * Decrypt per distinct value and then none, and that the key cache is bounded. Each "instance"
 * is a sealer with its own KMS client, as separate Lambda instances would have.
 */
import { createDecipheriv, randomBytes } from 'node:crypto';
import { DecryptCommand, GenerateDataKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { KmsTokenSealer, SEAL_PURPOSE, sealEncryptionContext } from '../../functions/adapters/kmsTokenSealer.js';
import { StoreUnavailableError } from '../../functions/core/errors.js';
import { SealError } from '../../functions/core/sealing.js';
import { freePort, startMoto, type MotoServer } from '../../local/moto.js';
import { LOCAL_AWS_CREDENTIALS, LOCAL_REGION, LOCAL_SEAL_KEY_ALIAS, createSealKey, localKms } from '../../local/seed.js';

const TABLE = 'tokens-sealer-test';

let moto: MotoServer;
/** KMS calls by command name, across every instance of the current test. */
const kmsCalls = new Map<string, number>();
const callsTo = (command: 'GenerateDataKey' | 'Decrypt') => kmsCalls.get(`${command}Command`) ?? 0;
const totalKmsCalls = () => [...kmsCalls.values()].reduce((a, b) => a + b, 0);

beforeAll(async () => {
  moto = await startMoto();
  await createSealKey(localKms(moto.endpoint), LOCAL_SEAL_KEY_ALIAS);
});
afterAll(async () => {
  await moto?.stop();
});
beforeEach(() => {
  kmsCalls.clear();
});

/** A KMS client that counts every call it sends; `failFirst` calls fail before reaching KMS (a network error). */
function countingKms(failFirst = 0): KMSClient {
  const kms = localKms(moto.endpoint);
  let failures = failFirst;
  kms.middlewareStack.add(
    (next, context) => (args) => {
      const command = context.commandName ?? 'unknown';
      kmsCalls.set(command, (kmsCalls.get(command) ?? 0) + 1);
      if (failures > 0) {
        failures -= 1;
        return Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { name: 'NetworkingError' }));
      }
      return next(args);
    },
    { step: 'initialize', name: 'countKmsCalls' },
  );
  return kms;
}

/** One "Lambda instance": its own KMS client and in-memory keys. */
function instance(options: { kms?: KMSClient; cacheEntries?: number; tableName?: string } = {}): KmsTokenSealer {
  return new KmsTokenSealer({ kms: countingKms(), tableName: TABLE, keyId: LOCAL_SEAL_KEY_ALIAS, ...options });
}

const fakeToken = () => `eyJ${randomBytes(180).toString('base64url')}`;
const parts = (sealed: string) => {
  const [version = '', wrapped = '', payload = ''] = sealed.split('.');
  return { version, wrapped, payload };
};

/** The same string with one byte of its payload flipped, re-encoded canonically. */
function flipByte(sealed: string, index: number): string {
  const { version, wrapped, payload } = parts(sealed);
  const bytes = Buffer.from(payload, 'base64url');
  bytes[index] = (bytes[index] ?? 0) ^ 0x01;
  return `${version}.${wrapped}.${bytes.toString('base64url')}`;
}

describe('sealing and opening', () => {
  it('round-trips a value, and the sealed value shows nothing of it; every seal has a data key of its own', async () => {
    const sealer = instance();
    const token = fakeToken();

    const sealed = await sealer.seal(token, 'item-1');
    const again = await sealer.seal(token, 'item-1');

    expect(sealed).toMatch(/^v2\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(sealed).not.toContain(token.slice(3, 23));
    expect(parts(again).wrapped).not.toBe(parts(sealed).wrapped); // a new data key per seal
    expect(parts(again).payload).not.toBe(parts(sealed).payload);
    expect(await sealer.open(sealed, 'item-1')).toBe(token);
    expect(await instance().open(again, 'item-1')).toBe(token);
    expect(await sealer.open(await sealer.seal('', 'item-2'), 'item-2')).toBe('');
  });

  it('refuses a value sealed for another item, in the instance that sealed it and in any other: KMS refuses its data key there', async () => {
    const sealer = instance();
    const sealed = await sealer.seal(fakeToken(), 'item-1');

    for (const opener of [sealer, instance()]) {
      const opening = opener.open(sealed, 'item-2');
      await expect(opening).rejects.toBeInstanceOf(SealError);
      await expect(opening).rejects.toMatchObject({ name: 'SealError', code: 'ERR_SEAL_KEY' });
    }
  });

  it('refuses a tampered value: IV, ciphertext or tag', async () => {
    const sealer = instance();
    const sealed = await sealer.seal(fakeToken(), 'item-1');
    const payloadBytes = Buffer.from(parts(sealed).payload, 'base64url').length;

    for (const index of [0, 12, 40, payloadBytes - 1]) {
      await expect(sealer.open(flipByte(sealed, index), 'item-1')).rejects.toMatchObject({ code: 'ERR_SEAL_OPEN' });
      await expect(instance().open(flipByte(sealed, index), 'item-1')).rejects.toMatchObject({ code: 'ERR_SEAL_OPEN' });
    }
  });

  it('refuses a data key taken from another item\'s value, and one that is not KMS\'s at all', async () => {
    const sealer = instance();
    const mine = parts(await sealer.seal('mine', 'item-1'));
    const theirs = parts(await sealer.seal('theirs', 'item-2'));

    // their data key with my payload, in my item: KMS will not unwrap their key for my item
    await expect(instance().open(`v2.${theirs.wrapped}.${mine.payload}`, 'item-1')).rejects.toMatchObject({ code: 'ERR_SEAL_KEY' });
    // nor does the instance that holds both keys use theirs for my item
    await expect(sealer.open(`v2.${theirs.wrapped}.${mine.payload}`, 'item-1')).rejects.toMatchObject({ code: 'ERR_SEAL_KEY' });
    // a blob KMS never made
    await expect(instance().open(`v2.${randomBytes(150).toString('base64url')}.${mine.payload}`, 'item-1')).rejects.toMatchObject({ code: 'ERR_SEAL_KEY' });
  });

  it('refuses what is not a sealed value of this version', async () => {
    const sealer = instance();
    const sealed = await sealer.seal(fakeToken(), 'item-1');
    const { wrapped, payload } = parts(sealed);
    // Same bytes, different string: flip the lowest unused bit of the last character, which Node's decoder ignores.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const nonCanonical = (encoded: string) => `${encoded.slice(0, -1)}${alphabet[alphabet.indexOf(encoded.at(-1) ?? '') ^ 1] ?? ''}`;
    const payloadLength = Buffer.from(payload, 'base64url').length;
    expect(payloadLength % 3).not.toBe(0); // so the payload's last character has unused bits

    for (const value of [
      fakeToken(),
      '',
      `v1.${'A'.repeat(16)}.${payload}`, // the shared-key format of earlier versions
      `v3.${wrapped}.${payload}`,
      `v2.${wrapped}.${payload.slice(0, 20)}`,
      `v2.${wrapped}.${payload}=`,
      `v2..${payload}`,
      `v2.${wrapped}.${nonCanonical(payload)}`,
    ]) {
      await expect(sealer.open(value, 'item-1')).rejects.toMatchObject({ code: 'ERR_SEAL_FORMAT' });
    }
    expect(totalKmsCalls()).toBe(1); // the seal: nothing malformed reached KMS
  });
});

describe('KMS calls: one GenerateDataKey per seal, none on the warm path, one Decrypt per value for a cold instance', () => {
  it('the instance that sealed a value opens it without asking KMS', async () => {
    const sealer = instance();
    const sealed = await Promise.all(['t0', 't1', 't2'].map((t, i) => sealer.seal(t, `item-${i}`)));

    for (let round = 0; round < 5; round++) {
      for (const [i, s] of sealed.entries()) expect(await sealer.open(s, `item-${i}`)).toBe(`t${i}`);
    }

    expect(callsTo('GenerateDataKey')).toBe(3);
    expect(callsTo('Decrypt')).toBe(0);
    expect(totalKmsCalls()).toBe(3);
  });

  it('a cold instance unwraps each value\'s key once, however often and however concurrently it opens it', async () => {
    const sealed = await Promise.all(['t0', 't1', 't2'].map((t, i) => instance().seal(t, `item-${i}`)));
    kmsCalls.clear();
    const cold = instance();

    const first = await Promise.all(sealed.flatMap((s, i) => Array.from({ length: 4 }, () => cold.open(s, `item-${i}`))));
    const decryptsWhenCold = callsTo('Decrypt');
    for (let round = 0; round < 5; round++) {
      for (const [i, s] of sealed.entries()) expect(await cold.open(s, `item-${i}`)).toBe(`t${i}`);
    }

    expect(first).toEqual(['t0', 't0', 't0', 't0', 't1', 't1', 't1', 't1', 't2', 't2', 't2', 't2']);
    expect(decryptsWhenCold).toBe(3);
    expect(totalKmsCalls()).toBe(3);
    expect(cold.cachedKeys).toBe(3);
  });

  it('keeps at most cacheEntries keys, the least recently used out', async () => {
    const sealed = await Promise.all(['t0', 't1', 't2'].map((t, i) => instance().seal(t, `item-${i}`)));
    kmsCalls.clear();
    const small = instance({ cacheEntries: 2 });

    await small.open(sealed[0]!, 'item-0');
    await small.open(sealed[1]!, 'item-1');
    await small.open(sealed[0]!, 'item-0'); // item-0 is now the most recently used
    await small.open(sealed[2]!, 'item-2'); // evicts item-1
    expect(callsTo('Decrypt')).toBe(3);
    await small.open(sealed[0]!, 'item-0');
    expect(callsTo('Decrypt')).toBe(3);
    await small.open(sealed[1]!, 'item-1');
    expect(callsTo('Decrypt')).toBe(4);
    expect(small.cachedKeys).toBe(2);
    expect(() => instance({ cacheEntries: 0 })).toThrow(RangeError);
  });

  it('a failed unwrap is not kept: the next open asks KMS again and succeeds', async () => {
    const sealed = await instance().seal('t', 'item-1');
    kmsCalls.clear();
    const flaky = instance({ kms: countingKms(1) });

    await expect(flaky.open(sealed, 'item-1')).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(await flaky.open(sealed, 'item-1')).toBe('t');

    expect(callsTo('Decrypt')).toBe(2);
    expect(flaky.cachedKeys).toBe(1);
  });
});

describe('what a sealed value holds', () => {
  it('only the wrapped data key, which unwraps only through KMS with its whole encryption context; the payload is AES-256-GCM bound to the item', async () => {
    const token = fakeToken();
    const sealed = await instance().seal(token, 'item-1');
    const { wrapped, payload } = parts(sealed);
    const blob = Buffer.from(wrapped, 'base64url');
    const kms = localKms(moto.endpoint);

    // The context is what the KMS key policy conditions on (infra/deployment.cjs, FunctionsSealTokens), and the item.
    expect(sealEncryptionContext(TABLE, 'item-1')).toEqual({ purpose: SEAL_PURPOSE, table: TABLE, item: 'item-1' });
    expect(SEAL_PURPOSE).toBe('token-vendor-token-seal');
    for (const context of [undefined, { purpose: SEAL_PURPOSE, table: TABLE }, sealEncryptionContext(TABLE, 'item-2'), sealEncryptionContext('another-table', 'item-1')]) {
      await expect(kms.send(new DecryptCommand({ CiphertextBlob: blob, ...(context ? { EncryptionContext: context } : {}) }))).rejects.toMatchObject({
        name: 'InvalidCiphertextException',
      });
    }
    const dataKey = Buffer.from((await kms.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: sealEncryptionContext(TABLE, 'item-1') }))).Plaintext ?? []);
    expect(dataKey).toHaveLength(32);
    expect(sealed).not.toContain(dataKey.toString('base64url'));
    expect(blob.includes(dataKey)).toBe(false);

    // iv | ciphertext | tag, with the format and the item as associated data
    const bytes = Buffer.from(payload, 'base64url');
    const decipher = createDecipheriv('aes-256-gcm', dataKey, bytes.subarray(0, 12));
    decipher.setAAD(Buffer.from('v2\nitem-1'));
    decipher.setAuthTag(bytes.subarray(-16));
    expect(Buffer.concat([decipher.update(bytes.subarray(12, -16)), decipher.final()]).toString()).toBe(token);
  });

  it('a value sealed for another table does not open here (KMS encryption context)', async () => {
    const sealed = await instance({ tableName: 'another-table' }).seal('t', 'item-1');
    kmsCalls.clear();

    await expect(instance().open(sealed, 'item-1')).rejects.toMatchObject({ code: 'ERR_SEAL_KEY' });
    expect(callsTo('Decrypt')).toBe(1);
  });

  it('a data key the attacker knows, wrapped by KMS without the item, does not open as the item\'s', async () => {
    // Someone who could call GenerateDataKey with the purpose and table (but not the item) and
    // forged a value under the key they got: the sealer asks KMS with the item in the context.
    const planted = await localKms(moto.endpoint).send(
      new GenerateDataKeyCommand({ KeyId: LOCAL_SEAL_KEY_ALIAS, KeySpec: 'AES_256', EncryptionContext: { purpose: SEAL_PURPOSE, table: TABLE } }),
    );
    const forged = await instance().seal('forged', 'item-1');
    await expect(
      instance().open(`v2.${Buffer.from(planted.CiphertextBlob ?? []).toString('base64url')}.${parts(forged).payload}`, 'item-1'),
    ).rejects.toMatchObject({ code: 'ERR_SEAL_KEY' });
  });
});

describe('failures of KMS', () => {
  it('KMS unreachable: StoreUnavailableError on seal and on open, never a SealError (an outage is not a verdict on the value)', async () => {
    const sealed = await instance().seal('t', 'item-1');
    const deadKms = new KMSClient({ endpoint: `http://127.0.0.1:${await freePort()}`, region: LOCAL_REGION, credentials: LOCAL_AWS_CREDENTIALS, maxAttempts: 1 });
    const cut = instance({ kms: deadKms });

    await expect(cut.seal('t', 'item-1')).rejects.toThrow(/^KMS GenerateDataKey failed \(/);
    await expect(cut.seal('t', 'item-1')).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(cut.open(sealed, 'item-1')).rejects.toThrow(/^KMS Decrypt failed \(/);
    await expect(cut.open(sealed, 'item-1')).rejects.not.toBeInstanceOf(SealError);
  });
});
