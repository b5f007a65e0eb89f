/**
 * Someone with write access to the token table, and nothing else (no use of the KMS key: the key
 * policy gives it only to the function roles, infra/deployment.cjs), tries to make the vendor
 * serve what the IdP did not issue as served: (a) a flushed token written back, (b) an expired
 * token's seal spliced into a live item, or the whole expired item written back, (c) an edited
 * expiry, (d) an edited scope, (e) a data key taken from another item, or one the attacker knows.
 * Each is a miss: the vendor fetches a new token from the IdP (counted at the tenant) and serves
 * that; none is a failure. Against the real local components: moto_server's DynamoDB and KMS, and
 * the oidc-provider tenant. Callers go through `service.tokenFor`, the path every entry point
 * shares once the caller is authorized.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { GetItemCommand, PutItemCommand, ScanCommand, UpdateItemCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { GenerateDataKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoTokenStore } from '../../functions/adapters/dynamoTokenStore.js';
import { KmsTokenSealer, SEAL_PURPOSE } from '../../functions/adapters/kmsTokenSealer.js';
import { keyOf, type Item } from '../../functions/adapters/tokenTable.js';
import { loadConfig } from '../../functions/config.js';
import type { AuthorizedRequest } from '../../functions/core/grants.js';
import type { Observer } from '../../functions/core/ports.js';
import { cacheKey, fingerprint } from '../../functions/core/tokenIdentity.js';
import { localKms } from '../../local/seed.js';
import { countingObserver } from '../helpers/countingObserver.js';
import { ORDERS, startTestStack, type TestStack } from '../helpers/testStack.js';

const CALLER = 'arn:aws:iam::111122223333:role/checkout-service';
const HOUR_MS = 3600 * 1000;

let stack: TestStack;
let READ: AuthorizedRequest;
let WRITE: AuthorizedRequest;
beforeAll(async () => {
  stack = await startTestStack();
  const { grants } = loadConfig(stack.env);
  READ = grants.requestFor('orders', ORDERS, ['read:orders'])!;
  WRITE = grants.requestFor('orders', ORDERS, ['write:orders'])!;
});
afterAll(async () => {
  await stack?.close();
});

const keyOfRequest = (request: AuthorizedRequest) => cacheKey(stack.tenant.issuer, stack.ordersSecretId, ORDERS, request.scopes);

/** KMS calls by command, at the client every instance of a test shares. */
function countingKms(): { kms: KMSClient; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const kms = localKms(stack.motoEndpoint);
  kms.middlewareStack.add(
    (next, context) => (args) => {
      const command = (context.commandName ?? 'unknown').replace(/Command$/, '');
      calls.set(command, (calls.get(command) ?? 0) + 1);
      return next(args);
    },
    { step: 'initialize', name: 'countKmsCalls' },
  );
  return { kms, calls };
}

interface Instance {
  tokenFor(request: AuthorizedRequest): Promise<{ access_token: string; expires_in: number; scope: string }>;
  flush(): Promise<number>;
  /** the store's refusals, by defect */
  rejected: string[];
}

/** A new vendor instance (its own memory) on `table`, on its own clock if given. */
function instance(table: string, options: { now?: () => number; kms?: KMSClient } = {}): Instance {
  const rejected: string[] = [];
  const observer: Observer = { ...countingObserver().observer, sealedRecordRejected: (defect) => void rejected.push(defect) };
  const vendor = stack.vendor({
    env: { TOKEN_TABLE_NAME: table },
    deps: { observer, ...(options.now ? { now: options.now } : {}), ...(options.kms ? { kms: options.kms } : {}) },
  });
  return {
    tokenFor: (request) => vendor.service.tokenFor(request, CALLER),
    flush: () => vendor.service.flush('orders'),
    rejected,
  };
}

async function rawItem(table: string, pk: string): Promise<Item | undefined> {
  return (await stack.dynamodb.send(new GetItemCommand({ TableName: table, Key: keyOf(pk), ConsistentRead: true }))).Item;
}

async function writeBack(table: string, item: Item): Promise<void> {
  await stack.dynamodb.send(new PutItemCommand({ TableName: table, Item: item }));
}

async function setAttributes(table: string, pk: string, attributes: Record<string, AttributeValue>): Promise<void> {
  const names = Object.keys(attributes);
  await stack.dynamodb.send(
    new UpdateItemCommand({
      TableName: table,
      Key: keyOf(pk),
      UpdateExpression: `SET ${names.map((_, i) => `#a${i} = :v${i}`).join(', ')}`,
      ExpressionAttributeNames: Object.fromEntries(names.map((name, i) => [`#a${i}`, name])),
      ExpressionAttributeValues: Object.fromEntries(names.map((name, i) => [`:v${i}`, attributes[name]!])),
    }),
  );
}

/** The JWT's exp (epoch s): what the IdP issued it as. */
const expOf = (accessToken: string) => decodeJwt(accessToken).exp!;

describe('(a) a flushed token written back', () => {
  it('is refused by a warm instance at its next revalidation and by a cold one; each fetches anew, once', async () => {
    const table = await stack.newTable();
    const clock = { t: Date.now() };
    const writer = instance(table);
    const flushed = (await writer.tokenFor(READ)).access_token;
    const warm = instance(table, { now: () => clock.t });
    expect((await warm.tokenFor(READ)).access_token).toBe(flushed); // from the table
    const copy = await rawItem(table, keyOfRequest(READ));
    stack.tenant.resetCounters();

    expect(await writer.flush()).toBe(1);
    await writeBack(table, copy!);

    // The warm instance checks its memory against the table: the written-back copy is refused.
    clock.t += Number(stack.env.MEMORY_REVALIDATE_SECONDS) * 1000 + 100;
    const afterRevalidation = await warm.tokenFor(READ);
    expect(afterRevalidation.access_token).not.toBe(flushed);
    // each read of the copy (the revalidation's, and the fetch's looks before and under the lease) refuses it
    expect(warm.rejected.length).toBeGreaterThan(0);
    expect(new Set(warm.rejected)).toEqual(new Set(['flushed']));
    expect(stack.tenant.tokenRequests()).toBe(1);

    // A cold instance is served the new token from the table: no IdP call.
    expect((await instance(table).tokenFor(READ)).access_token).toBe(afterRevalidation.access_token);
    expect(stack.tenant.tokenRequests()).toBe(1);

    // Written back again, over the new token: a cold instance refuses it and fetches once more.
    await writeBack(table, copy!);
    const cold = instance(table);
    const again = await cold.tokenFor(READ);
    expect([flushed, afterRevalidation.access_token]).not.toContain(again.access_token);
    expect(cold.rejected[0]).toBe('flushed');
    expect(stack.tenant.tokenRequests()).toBe(2);
  });
});

describe('(b) an expired token spliced into a live item', () => {
  it('its seal in the live item, the whole expired item, or a record that outlives its JWT: never served; each costs one fetch', async () => {
    const table = await stack.newTable();
    // A token that lives 10 minutes, seen an hour later.
    stack.tenant.setTokenTtl(ORDERS, 600);
    let expired: string;
    let expiredItem: Item | undefined;
    try {
      expired = (await instance(table).tokenFor(READ)).access_token;
      expiredItem = await rawItem(table, keyOfRequest(READ));
    } finally {
      stack.tenant.setTokenTtl(ORDERS, 86_400);
    }
    const later = () => Date.now() + HOUR_MS;
    const live = (await instance(table, { now: later }).tokenFor(READ)).access_token;
    expect(live).not.toBe(expired);
    stack.tenant.resetCounters();

    // 1. Only the expired token's seal, spliced into the live item.
    await setAttributes(table, keyOfRequest(READ), { sealedToken: expiredItem!.sealedToken! });
    const first = instance(table, { now: later });
    const served = await first.tokenFor(READ);
    expect([expired, live]).not.toContain(served.access_token);
    expect(first.rejected[0]).toBe('attributes');
    expect(stack.tenant.tokenRequests()).toBe(1);

    // 2. The whole expired item written back: a consistent record, and expired: a miss.
    await writeBack(table, expiredItem!);
    const second = instance(table, { now: later });
    const refetched = await second.tokenFor(READ);
    expect([expired, live, served.access_token]).not.toContain(refetched.access_token);
    expect(second.rejected).toEqual([]); // not a forgery: just expired
    expect(stack.tenant.tokenRequests()).toBe(2);

    // 3. A record that says the expired JWT lives another day (only someone who can use the KMS
    //    key could seal one): the JWT's own exp still refuses it.
    const key = keyOfRequest(READ);
    const nowS = Math.floor(later() / 1000);
    await new DynamoTokenStore({
      client: stack.dynamodb,
      tableName: table,
      sealer: new KmsTokenSealer({ kms: stack.kms, tableName: table, keyId: stack.env.TOKEN_SEAL_KEY_ID! }),
    }).put({
      key,
      accessToken: expired,
      scope: 'read:orders',
      expiresAt: nowS + 86_400,
      fetchedAt: later() + 1_000,
      fingerprint: fingerprint(expired),
      client: 'orders',
      audience: ORDERS,
      scopes: ['read:orders'],
      clientId: 'orders-client',
    });
    const third = instance(table, { now: later });
    const fresh = await third.tokenFor(READ);
    expect(fresh.access_token).not.toBe(expired);
    expect(third.rejected).toEqual([]);
    expect(stack.tenant.tokenRequests()).toBe(3);

    // Every token served is alive by its own JWT, and expires_in never runs past it.
    for (const t of [served, refetched, fresh]) {
      expect(expOf(t.access_token)).toBeGreaterThan(nowS);
      expect(t.expires_in).toBeLessThanOrEqual(expOf(t.access_token) - nowS + 1);
    }
  });
});

describe('(c) an edited expiry, (d) an edited scope', () => {
  const edits: Array<[string, () => Record<string, AttributeValue>]> = [
    ['expiry pushed a month out', () => ({ expiresAt: { N: String(Math.floor(Date.now() / 1000) + 30 * 86_400) }, ttl: { N: String(Math.floor(Date.now() / 1000) + 30 * 86_400) } })],
    ['expiry pulled into the past', () => ({ expiresAt: { N: String(Math.floor(Date.now() / 1000) - 10) } })],
    ['scope widened to what the client grant allows', () => ({ scope: { S: 'read:orders write:orders admin:orders' } })],
    ['scope and the scopes asked for, both widened', () => ({ scope: { S: 'admin:orders read:orders' }, scopes: { S: 'admin:orders read:orders' } })],
    ['fetch time pushed into the future (to block the next write)', () => ({ fetchedAt: { N: String(Date.now() + 365 * 86_400_000) } })],
  ];

  it.each(edits)('%s: refused, fetched anew once, and the new token replaces the item', async (_case, attributes) => {
    const table = await stack.newTable();
    const original = await instance(table).tokenFor(READ);
    stack.tenant.resetCounters();
    await setAttributes(table, keyOfRequest(READ), attributes());

    const cold = instance(table);
    const served = await cold.tokenFor(READ);

    expect(served.access_token).not.toBe(original.access_token);
    expect(served.scope).toBe('read:orders');
    expect(decodeJwt(served.access_token).scope).toBe('read:orders');
    expect(served.expires_in).toBeLessThanOrEqual(expOf(served.access_token) - Math.floor(Date.now() / 1000) + 1);
    expect(cold.rejected[0]).toBe('attributes');
    expect(stack.tenant.tokenRequests()).toBe(1);
    // The item is the new token's again: the next cold instance is served from the table.
    const next = instance(table);
    expect((await next.tokenFor(READ)).access_token).toBe(served.access_token);
    expect(next.rejected).toEqual([]);
    expect(stack.tenant.tokenRequests()).toBe(1);
    const item = await rawItem(table, keyOfRequest(READ));
    expect(item?.scope?.S).toBe('read:orders');
    expect(Number(item?.expiresAt?.N)).toBeLessThanOrEqual(expOf(served.access_token));
  });
});

describe('(e) a data key from elsewhere', () => {
  it('another item\'s data key, another item\'s whole seal, or a key the attacker knows: refused (KMS will not unwrap it for this item); later tokens never use it', async () => {
    const table = await stack.newTable();
    const { kms, calls } = countingKms();
    const writer = instance(table, { kms });
    const read = await writer.tokenFor(READ);
    const write = await writer.tokenFor(WRITE);
    // One GenerateDataKey per fetch, and the fetching instance reads its own tokens without KMS.
    expect(Object.fromEntries(calls)).toEqual({ GenerateDataKey: 2 });
    await writer.tokenFor(READ);
    expect(Object.fromEntries(calls)).toEqual({ GenerateDataKey: 2 });
    stack.tenant.resetCounters();
    const readKey = keyOfRequest(READ);
    const readSeal = (await rawItem(table, readKey))!.sealedToken!.S!;
    const writeSeal = (await rawItem(table, keyOfRequest(WRITE)))!.sealedToken!.S!;
    const [, , readPayload] = readSeal.split('.');
    const [, writeWrappedKey] = writeSeal.split('.');

    // 1. The other item's wrapped data key, with this item's payload.
    await setAttributes(table, readKey, { sealedToken: { S: `v2.${writeWrappedKey}.${readPayload}` } });
    const first = instance(table, { kms });
    calls.clear();
    const served1 = await first.tokenFor(READ);
    expect(served1.access_token).not.toBe(read.access_token);
    expect(first.rejected[0]).toBe('key-refused');
    // the refused Decrypt, the lease holder's second look (refused again), and the new token's key
    expect(Object.fromEntries(calls)).toEqual({ Decrypt: 2, GenerateDataKey: 1 });
    expect(stack.tenant.tokenRequests()).toBe(1);
    // the other item is untouched and still served, from the table
    expect((await instance(table).tokenFor(WRITE)).access_token).toBe(write.access_token);
    expect(stack.tenant.tokenRequests()).toBe(1);

    // 2. The other item's whole seal.
    await setAttributes(table, readKey, { sealedToken: { S: writeSeal } });
    const second = instance(table);
    expect([write.access_token, served1.access_token]).not.toContain((await second.tokenFor(READ)).access_token);
    expect(second.rejected[0]).toBe('key-refused');
    expect(stack.tenant.tokenRequests()).toBe(2);

    // 3. A data key the attacker knows (as if obtained with the purpose and table, without the
    //    item), planted as earlier versions' shared key and pointer, and used to forge a record
    //    that names the attacker's token with a long life.
    const planted = await localKms(stack.motoEndpoint).send(
      new GenerateDataKeyCommand({ KeyId: stack.env.TOKEN_SEAL_KEY_ID!, KeySpec: 'AES_256', EncryptionContext: { purpose: SEAL_PURPOSE, table } }),
    );
    const plantedKey = Buffer.from(planted.Plaintext!);
    const plantedBlob = Buffer.from(planted.CiphertextBlob!);
    await writeBack(table, { pk: { S: 'datakey#current' }, dataKeyId: { S: 'planted' }, blob: { B: plantedBlob }, createdAt: { N: String(Date.now()) } });
    await writeBack(table, { pk: { S: 'datakey#planted' }, blob: { B: plantedBlob }, createdAt: { N: String(Date.now()) } });
    const item = (await rawItem(table, readKey))!;
    const forgedRecord = {
      v: 2,
      key: readKey,
      accessToken: 'attacker-token',
      scope: item.scope!.S,
      expiresAt: Number(item.expiresAt!.N),
      fetchedAt: Number(item.fetchedAt!.N),
      fingerprint: item.fingerprint!.S,
      client: item.client!.S,
      audience: item.audience!.S,
      scopes: item.scopes!.S!.split(' '),
      clientId: item.clientId?.S ?? null,
      origin: item.origin?.S ?? null,
    };
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', plantedKey, iv);
    cipher.setAAD(Buffer.from(`v2\n${readKey}`));
    const body = Buffer.concat([cipher.update(JSON.stringify(forgedRecord)), cipher.final()]);
    const forged = `v2.${plantedBlob.toString('base64url')}.${Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url')}`;
    await setAttributes(table, readKey, { sealedToken: { S: forged } });

    const third = instance(table, { kms });
    calls.clear();
    const served3 = await third.tokenFor(READ);
    expect(served3.access_token).not.toBe('attacker-token');
    expect(third.rejected[0]).toBe('key-refused');
    expect(stack.tenant.tokenRequests()).toBe(3);
    // The new token was sealed under a key of its own from KMS, not the planted one.
    expect(calls.get('GenerateDataKey')).toBe(1);
    const items = (await stack.dynamodb.send(new ScanCommand({ TableName: table, ConsistentRead: true }))).Items ?? [];
    const tokenItems = items.filter((i) => i.sealedToken?.S !== undefined);
    expect(tokenItems).toHaveLength(2);
    for (const tokenItem of tokenItems) {
      const [, wrapped, payload] = tokenItem.sealedToken!.S!.split('.');
      expect(wrapped).not.toBe(plantedBlob.toString('base64url'));
      const bytes = Buffer.from(payload!, 'base64url');
      const opener = createDecipheriv('aes-256-gcm', plantedKey, bytes.subarray(0, 12));
      opener.setAAD(Buffer.from(`v2\n${tokenItem.pk!.S!}`));
      opener.setAuthTag(bytes.subarray(-16));
      opener.update(bytes.subarray(12, -16));
      expect(() => opener.final()).toThrow();
    }
  });
});

describe('KMS calls per instance', () => {
  it('a cold instance makes one Decrypt per distinct token it reads, then none; the warm path none', async () => {
    const table = await stack.newTable();
    await instance(table).tokenFor(READ);
    await instance(table).tokenFor(WRITE);
    const { kms, calls } = countingKms();
    const cold = instance(table, { kms });
    stack.tenant.resetCounters();

    for (let i = 0; i < 5; i++) {
      await cold.tokenFor(READ);
      await cold.tokenFor(WRITE);
    }

    expect(Object.fromEntries(calls)).toEqual({ Decrypt: 2 });
    expect(stack.tenant.tokenRequests()).toBe(0);
  });
});
