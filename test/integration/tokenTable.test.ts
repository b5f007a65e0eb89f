/**
 * The token table's one owner (functions/adapters/tokenTable.ts) against a real moto_server: every
 * kind of item, written by the adapters themselves, is told back by its key; ops' view
 * (`DynamoTokenStore.inspect()`) reads leases and back-offs through the schema; the lease is one
 * mechanism for the token store and the sealer; and a token of another client replaces a
 * longer-lived one, and the newest fetch of the same client wins.
 */
import { randomUUID } from 'node:crypto';
import { GetItemCommand, ScanCommand } from '@aws-sdk/client-dynamodb';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { DynamoTokenStore } from '../../functions/adapters/dynamoTokenStore.js';
import { DATA_KEY_LEASE, KmsTokenSealer } from '../../functions/adapters/kmsTokenSealer.js';
import {
  DynamoLeaseStore,
  GC_GRACE_SECONDS,
  PARTITION_KEY,
  TTL_ATTRIBUTE,
  classifyKey,
  keyOf,
  tableKey,
  type TableKey,
} from '../../functions/adapters/tokenTable.js';
import { StoreUnavailableError } from '../../functions/core/errors.js';
import type { CachedToken } from '../../functions/core/ports.js';
import { cacheKey, clientKey } from '../../functions/core/tokenIdentity.js';
import { LOCAL_SEAL_KEY_ALIAS, createSealKey, createTokenTable, localDynamoDb, localKms } from '../../local/seed.js';

const dynamodb = localDynamoDb(inject('motoEndpoint'));
const kms = localKms(inject('motoEndpoint'));

beforeAll(async () => {
  await createSealKey(kms, LOCAL_SEAL_KEY_ALIAS);
});

async function newTable(): Promise<string> {
  const tableName = `table-${randomUUID().slice(0, 8)}`;
  await createTokenTable(dynamodb, tableName);
  return tableName;
}

function storeOn(tableName: string, now: () => number = Date.now): { store: DynamoTokenStore; sealer: KmsTokenSealer } {
  const sealer = new KmsTokenSealer({ kms, dynamodb, tableName, keyId: LOCAL_SEAL_KEY_ALIAS, now });
  return { store: new DynamoTokenStore({ client: dynamodb, tableName, sealer, now }), sealer };
}

const KEY = cacheKey('https://tenant.example/', 'secret/orders', 'https://orders.example', ['read:orders']);
const CLIENT_KEY = clientKey('https://tenant.example/', 'client-a');

function token(overrides: Partial<CachedToken> = {}): CachedToken {
  const nowS = Math.floor(Date.now() / 1000);
  return {
    key: KEY,
    accessToken: `token-${randomUUID()}`,
    scope: 'read:orders',
    expiresAt: nowS + 3600,
    fetchedAt: Date.now(),
    fingerprint: 'fp',
    client: 'orders',
    audience: 'https://orders.example',
    scopes: ['read:orders'],
    ...overrides,
  };
}

async function rawItem(tableName: string, pk: string) {
  return (await dynamodb.send(new GetItemCommand({ TableName: tableName, Key: keyOf(pk), ConsistentRead: true }))).Item;
}

describe('the schema: keys and their kinds', () => {
  it('tells every kind back from the key it wrote', () => {
    const cases: Array<[string, TableKey]> = [
      [tableKey.token(KEY), { kind: 'token', key: KEY }],
      [tableKey.lease(KEY), { kind: 'lease', name: KEY }],
      [tableKey.lease(DATA_KEY_LEASE), { kind: 'lease', name: 'datakey' }],
      [tableKey.backoff(CLIENT_KEY), { kind: 'backoff', clientKey: CLIENT_KEY }],
      [tableKey.quota(CLIENT_KEY, 1_700_000_000_000), { kind: 'quota', clientKey: CLIENT_KEY, hourStartMs: 1_700_000_000_000 }],
      [tableKey.dataKey('AbCdEfGhIjKlMn_-'), { kind: 'datakey', id: 'AbCdEfGhIjKlMn_-' }],
      [tableKey.dataKeyPointer(), { kind: 'datakey-pointer' }],
    ];
    for (const [pk, expected] of cases) expect(classifyKey(pk)).toEqual(expected);
    // the spelling the table has always had: existing items keep their meaning
    expect([tableKey.lease('k'), tableKey.backoff('c'), tableKey.quota('c', 0), tableKey.dataKey('i'), tableKey.dataKeyPointer()]).toEqual([
      'lease#k',
      'backoff#c',
      'quota#c#0',
      'datakey#i',
      'datakey#current',
    ]);
    expect([PARTITION_KEY, TTL_ATTRIBUTE]).toEqual(['pk', 'ttl']);
  });

  it('calls what no version writes unknown, and refuses a token key that would read as another kind', () => {
    for (const pk of ['', 'other#x', 'lease#', 'backoff#', 'quota#c', 'quota#c#soon', 'quota##1', 'datakey#a#b']) {
      expect(classifyKey(pk)).toEqual({ kind: 'unknown', pk });
    }
    expect(() => tableKey.token('lease#x')).toThrow(RangeError);
    expect(() => tableKey.token('')).toThrow(RangeError);
  });

  it('every item the adapters write is classified as what it is', async () => {
    const table = await newTable();
    const { store } = storeOn(table);
    const hour = Math.floor(Date.now() / 3_600_000) * 3_600_000;
    await store.put(token());
    await store.putBackoff(CLIENT_KEY, { until: Date.now() + 60_000, reason: 'rate_limited' });
    expect(await store.countFetch(CLIENT_KEY, hour, 10)).toBe(true);
    expect(await store.acquireLease(KEY, 'owner-1', Date.now() + 10_000)).toBe(true);

    const items = (await dynamodb.send(new ScanCommand({ TableName: table, ConsistentRead: true }))).Items ?? [];
    const kinds = items.map((item) => classifyKey(item[PARTITION_KEY]?.S ?? ''));

    // the token's put sealed it, which generated and published the fleet's data key
    expect(kinds.map((k) => k.kind).sort()).toEqual(['backoff', 'datakey', 'datakey-pointer', 'lease', 'quota', 'token']);
    expect(kinds).toContainEqual({ kind: 'token', key: KEY });
    expect(kinds).toContainEqual({ kind: 'lease', name: KEY });
    expect(kinds).toContainEqual({ kind: 'backoff', clientKey: CLIENT_KEY });
    expect(kinds).toContainEqual({ kind: 'quota', clientKey: CLIENT_KEY, hourStartMs: hour });
    const pointer = items.find((item) => classifyKey(item[PARTITION_KEY]?.S ?? '').kind === 'datakey-pointer');
    expect(kinds).toContainEqual({ kind: 'datakey', id: pointer?.dataKeyId?.S });
  });
});

describe("ops' view: DynamoTokenStore.inspect()", () => {
  it('returns token records, a live lease and a back-off written through the store, and nothing else', async () => {
    const table = await newTable();
    const { store } = storeOn(table);
    const leaseUntil = Date.now() + 10_000;
    const backoffUntil = Date.now() + 60_000;
    const stored = token({ clientId: 'client-a' });
    await store.put(stored);
    await store.putBackoff(CLIENT_KEY, { until: backoffUntil, reason: 'rate_limited' });
    await store.countFetch(CLIENT_KEY, 0, 10);
    await store.acquireLease(KEY, 'owner-1', leaseUntil);

    const contents = await store.inspect();

    const { accessToken: _secret, ...record } = stored;
    expect(contents.tokens).toEqual([{ ...record, lastUsedAt: stored.fetchedAt }]);
    expect(JSON.stringify(contents)).not.toContain(stored.accessToken);
    expect(contents.leases).toEqual([{ name: KEY, until: leaseUntil }]);
    expect(contents.backoffs).toEqual([{ clientKey: CLIENT_KEY, reason: 'rate_limited', until: backoffUntil }]);
    expect(await store.listTokens()).toEqual(contents.tokens);
  });

  it('shows the sealer\'s lease by its name while a data key is being generated, and a released lease no more', async () => {
    const table = await newTable();
    const { store, sealer } = storeOn(table);
    const leases = new DynamoLeaseStore({ client: dynamodb, tableName: table });
    expect(await leases.acquireLease(DATA_KEY_LEASE, 'someone-else', Date.now() + 10_000)).toBe(true);
    expect((await store.inspect()).leases.map((l) => l.name)).toEqual([DATA_KEY_LEASE]);

    await leases.releaseLease(DATA_KEY_LEASE, 'someone-else');
    await sealer.seal('t', 'item-1'); // takes and releases the lease itself

    expect(await store.inspect()).toEqual({ tokens: [], leases: [], backoffs: [] });
  });

  it('reports a lapsed lease and back-off with their `until`, for the caller to judge', async () => {
    const table = await newTable();
    const { store } = storeOn(table);
    await store.putBackoff(CLIENT_KEY, { until: 1_000, reason: 'unavailable' });
    await store.acquireLease(KEY, 'owner-1', 2_000);

    const contents = await store.inspect();

    expect(contents.backoffs).toEqual([{ clientKey: CLIENT_KEY, reason: 'unavailable', until: 1_000 }]);
    expect(contents.leases).toEqual([{ name: KEY, until: 2_000 }]);
  });

  it('a table that is not there: StoreUnavailableError, as every other call', async () => {
    const { store } = storeOn(`missing-${randomUUID().slice(0, 8)}`);
    await expect(store.inspect()).rejects.toThrow(StoreUnavailableError);
    await expect(store.inspect()).rejects.toThrow(/^DynamoDB Scan failed \(ResourceNotFoundException\)$/);
  });
});

describe('the conditional put: the newest fetch, or another client', () => {
  it('a token of client B replaces a longer-lived token of client A under the same key', async () => {
    const table = await newTable();
    const { store } = storeOn(table);
    const nowS = Math.floor(Date.now() / 1000);
    await store.put(token({ clientId: 'client-a', accessToken: 'token-of-a', expiresAt: nowS + 86_400 }));

    await store.put(token({ clientId: 'client-b', accessToken: 'token-of-b', expiresAt: nowS + 600 }));

    const got = await store.get(KEY);
    expect(got?.accessToken).toBe('token-of-b');
    expect(got?.clientId).toBe('client-b');
    expect(got?.expiresAt).toBe(nowS + 600);
    expect((await rawItem(table, KEY))?.clientId?.S).toBe('client-b');
  });

  it('the newest fetch wins: a later-fetched, shorter-lived token replaces a longer-lived one; an earlier-fetched one does not', async () => {
    // Issue 9: a lifetime lowered in Auth0 must be adopted, not refetched on every refresh run.
    const table = await newTable();
    const { store } = storeOn(table);
    const nowS = Math.floor(Date.now() / 1000);
    const t0 = Date.now();
    await store.put(token({ clientId: 'client-a', accessToken: 'long', expiresAt: nowS + 86_400, fetchedAt: t0 }));

    await store.put(token({ clientId: 'client-a', accessToken: 'shorter-but-newer', expiresAt: nowS + 600, fetchedAt: t0 + 1 }));
    expect((await store.get(KEY))?.accessToken).toBe('shorter-but-newer');

    await store.put(token({ clientId: 'client-a', accessToken: 'late-writer', expiresAt: nowS + 90_000, fetchedAt: t0 }));
    expect((await store.get(KEY))?.accessToken).toBe('shorter-but-newer');
  });

  it('a token that records no client and one that does are of different clients, both ways', async () => {
    const table = await newTable();
    const { store } = storeOn(table);
    const nowS = Math.floor(Date.now() / 1000);
    // what an older version wrote: no clientId attribute at all
    await store.put(token({ accessToken: 'unattributed', expiresAt: nowS + 86_400 }));
    expect((await rawItem(table, KEY))?.clientId).toBeUndefined();
    expect((await store.get(KEY))?.clientId).toBeUndefined();

    await store.put(token({ clientId: 'client-a', accessToken: 'of-a', expiresAt: nowS + 600 }));
    expect((await store.get(KEY))?.accessToken).toBe('of-a');

    const fetchedAt = Date.now();
    await store.put(token({ accessToken: 'unattributed-again', expiresAt: nowS + 300, fetchedAt }));
    expect((await store.get(KEY))?.accessToken).toBe('unattributed-again');
    // the same (unattributed) client: an earlier fetch does not replace it (the newest fetch wins)
    await store.put(token({ accessToken: 'unattributed-older', expiresAt: nowS + 200, fetchedAt: fetchedAt - 1 }));
    expect((await store.get(KEY))?.accessToken).toBe('unattributed-again');
  });
});

describe('the token item keeps who made it', () => {
  it('writes the origin (the caller whose miss fetched it) and reads it back, in get, listTokens and inspect', async () => {
    const table = await newTable();
    const { store } = storeOn(table);
    await store.put(token({ clientId: 'client-a', origin: 'arn:aws:iam::111122223333:role/checkout-service' }));

    expect((await store.get(KEY))?.origin).toBe('arn:aws:iam::111122223333:role/checkout-service');
    expect((await store.listTokens())[0]?.origin).toBe('arn:aws:iam::111122223333:role/checkout-service');
    expect((await store.inspect()).tokens[0]?.origin).toBe('arn:aws:iam::111122223333:role/checkout-service');
  });
});

describe('one lease for the table: DynamoLeaseStore', () => {
  it('taken when free or lapsed, refused while held, released only by its owner, collected by TTL', async () => {
    const table = await newTable();
    const clock = { t: Date.now() };
    const leases = new DynamoLeaseStore({ client: dynamodb, tableName: table, now: () => clock.t });
    const until = clock.t + 10_000;

    expect(await leases.acquireLease('x', 'a', until)).toBe(true);
    expect(await leases.acquireLease('x', 'b', clock.t + 10_000)).toBe(false);
    const item = await rawItem(table, tableKey.lease('x'));
    expect(item?.owner?.S).toBe('a');
    expect(Number(item?.leaseUntil?.N)).toBe(until);
    expect(Number(item?.[TTL_ATTRIBUTE]?.N)).toBe(Math.ceil(until / 1000) + GC_GRACE_SECONDS);

    await leases.releaseLease('x', 'b'); // not b's: stays
    expect((await rawItem(table, tableKey.lease('x')))?.owner?.S).toBe('a');

    clock.t = until + 1; // a's holding lapsed: b takes it over, and a's late release leaves it alone
    expect(await leases.acquireLease('x', 'b', clock.t + 10_000)).toBe(true);
    await leases.releaseLease('x', 'a');
    expect((await rawItem(table, tableKey.lease('x')))?.owner?.S).toBe('b');

    await leases.releaseLease('x', 'b');
    expect(await rawItem(table, tableKey.lease('x'))).toBeUndefined();
    expect(await leases.acquireLease('y', 'a', until)).toBe(true); // names are independent
  });

  it('renewed only by its owner: the hold moves (and its TTL with it), a lapsed one nobody took is still the owner\'s', async () => {
    const table = await newTable();
    const clock = { t: Date.now() };
    const leases = new DynamoLeaseStore({ client: dynamodb, tableName: table, now: () => clock.t });
    const first = clock.t + 3_000;
    expect(await leases.acquireLease('x', 'a', first)).toBe(true);

    const renewed = clock.t + 1_000 + 3_000;
    expect(await leases.renewLease('x', 'a', renewed)).toBe(true);
    const item = await rawItem(table, tableKey.lease('x'));
    expect([item?.owner?.S, Number(item?.leaseUntil?.N), Number(item?.[TTL_ATTRIBUTE]?.N)]).toEqual(['a', renewed, Math.ceil(renewed / 1000) + GC_GRACE_SECONDS]);
    clock.t = first + 1; // past the first hold, inside the renewed one: still held
    expect(await leases.acquireLease('x', 'b', clock.t + 3_000)).toBe(false);

    expect(await leases.renewLease('x', 'b', clock.t + 60_000)).toBe(false); // not b's: unchanged
    expect(Number((await rawItem(table, tableKey.lease('x')))?.leaseUntil?.N)).toBe(renewed);

    clock.t = renewed + 1; // lapsed, but nobody took it over: a's renewal still holds
    expect(await leases.renewLease('x', 'a', clock.t + 3_000)).toBe(true);
    expect(await leases.acquireLease('x', 'b', clock.t + 3_000)).toBe(false);

    clock.t += 3_001; // lapsed and taken over: a's late renewal changes nothing
    expect(await leases.acquireLease('x', 'b', clock.t + 3_000)).toBe(true);
    expect(await leases.renewLease('x', 'a', clock.t + 60_000)).toBe(false);
    expect((await rawItem(table, tableKey.lease('x')))?.owner?.S).toBe('b');

    await leases.releaseLease('x', 'b'); // released: a renewal does not bring it back
    expect(await leases.renewLease('x', 'b', clock.t + 3_000)).toBe(false);
    expect(await rawItem(table, tableKey.lease('x'))).toBeUndefined();
  });

  it('the token store delegates to it: one lease item per name, whoever takes it', async () => {
    const table = await newTable();
    const { store } = storeOn(table);
    const leases = new DynamoLeaseStore({ client: dynamodb, tableName: table });

    expect(await store.acquireLease('shared', 'store', Date.now() + 10_000)).toBe(true);
    expect(await leases.acquireLease('shared', 'other', Date.now() + 10_000)).toBe(false);
    expect(await store.renewLease('shared', 'store', Date.now() + 20_000)).toBe(true);
    expect(await leases.renewLease('shared', 'other', Date.now() + 20_000)).toBe(false);
    await store.releaseLease('shared', 'store');
    expect(await leases.acquireLease('shared', 'other', Date.now() + 10_000)).toBe(true);
  });

  it('DynamoDB failing: StoreUnavailableError, named after the call', async () => {
    const leases = new DynamoLeaseStore({ client: dynamodb, tableName: `missing-${randomUUID().slice(0, 8)}` });
    await expect(leases.acquireLease('x', 'a', Date.now() + 1_000)).rejects.toThrow(/^DynamoDB PutItem failed \(ResourceNotFoundException\)$/);
    await expect(leases.renewLease('x', 'a', Date.now() + 1_000)).rejects.toThrow(/^DynamoDB UpdateItem failed \(ResourceNotFoundException\)$/);
    await expect(leases.releaseLease('x', 'a')).rejects.toBeInstanceOf(StoreUnavailableError);
  });
});
