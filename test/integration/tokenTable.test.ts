/**
 * The token table's one owner (functions/adapters/tokenTable.ts) against a real moto_server: every
 * kind of item, written by the adapters themselves, is told back by its key; ops' view
 * (`DynamoTokenStore.inspect()`) reads leases and back-offs through the schema; a token of another
 * client replaces a longer-lived one, and the newest fetch of the same client wins; the whole
 * token record is sealed, and an item that disagrees with its seal, or that a flush removed and
 * someone wrote back, is a counted miss that the next put replaces.
 */
import { randomUUID } from 'node:crypto';
import { GetItemCommand, PutItemCommand, ScanCommand, UpdateItemCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { DynamoTokenStore, type RecordDefect } from '../../functions/adapters/dynamoTokenStore.js';
import { KmsTokenSealer } from '../../functions/adapters/kmsTokenSealer.js';
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

interface Watched {
  store: DynamoTokenStore;
  sealer: KmsTokenSealer;
  defects: RecordDefect[];
  warnings: Array<{ message: string; fields: Record<string, unknown> }>;
}

/** A store (one "instance") whose refusals are recorded. */
function storeOn(tableName: string, now: () => number = Date.now): Watched {
  const sealer = new KmsTokenSealer({ kms, tableName, keyId: LOCAL_SEAL_KEY_ALIAS });
  const defects: RecordDefect[] = [];
  const warnings: Watched['warnings'] = [];
  const store = new DynamoTokenStore({
    client: dynamodb,
    tableName,
    sealer,
    now,
    onDefect: (defect) => void defects.push(defect),
    log: { warn: (message, ...fields) => void warnings.push({ message, fields: Object.assign({}, ...fields) as Record<string, unknown> }) },
  });
  return { store, sealer, defects, warnings };
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
      [tableKey.backoff(CLIENT_KEY), { kind: 'backoff', clientKey: CLIENT_KEY }],
      [tableKey.quota(CLIENT_KEY, 1_700_000_000_000), { kind: 'quota', clientKey: CLIENT_KEY, hourStartMs: 1_700_000_000_000 }],
      [tableKey.flushMark(KEY), { kind: 'flush-mark', key: KEY }],
    ];
    for (const [pk, expected] of cases) expect(classifyKey(pk)).toEqual(expected);
    // the spelling the table has always had: existing items keep their meaning
    expect([tableKey.lease('k'), tableKey.backoff('c'), tableKey.quota('c', 0), tableKey.flushMark('k')]).toEqual(['lease#k', 'backoff#c', 'quota#c#0', 'flushed#k']);
    expect([PARTITION_KEY, TTL_ATTRIBUTE]).toEqual(['pk', 'ttl']);
  });

  it('calls what no version writes unknown, and refuses a token key that would read as another kind', () => {
    // an earlier version's shared data keys and their pointer included: nothing reads them now
    for (const pk of ['', 'other#x', 'lease#', 'backoff#', 'quota#c', 'quota#c#soon', 'quota##1', 'flushed#', 'flushed#a#b', 'datakey#AbCdEfGhIjKlMn_-', 'datakey#current']) {
      expect(classifyKey(pk)).toEqual({ kind: 'unknown', pk });
    }
    expect(() => tableKey.token('lease#x')).toThrow(RangeError);
    expect(() => tableKey.token('')).toThrow(RangeError);
    expect(() => tableKey.flushMark('lease#x')).toThrow(RangeError);
  });

  it('every item the adapters write is classified as what it is', async () => {
    const table = await newTable();
    const { store } = storeOn(table);
    const hour = Math.floor(Date.now() / 3_600_000) * 3_600_000;
    const flushed = cacheKey('https://tenant.example/', 'secret/orders', 'https://orders.example', ['write:orders']);
    await store.put(token());
    await store.put(token({ key: flushed }));
    await store.remove(flushed);
    await store.putBackoff(CLIENT_KEY, { until: Date.now() + 60_000, reason: 'rate_limited' });
    expect(await store.countFetch(CLIENT_KEY, hour, 10)).toBe(true);
    expect(await store.acquireLease(KEY, 'owner-1', Date.now() + 10_000)).toBe(true);

    const items = (await dynamodb.send(new ScanCommand({ TableName: table, ConsistentRead: true }))).Items ?? [];
    const kinds = items.map((item) => classifyKey(item[PARTITION_KEY]?.S ?? ''));

    // sealing writes nothing of its own: each token carries its wrapped data key
    expect(kinds.map((k) => k.kind).sort()).toEqual(['backoff', 'flush-mark', 'lease', 'quota', 'token']);
    expect(kinds).toContainEqual({ kind: 'token', key: KEY });
    expect(kinds).toContainEqual({ kind: 'flush-mark', key: flushed });
    expect(kinds).toContainEqual({ kind: 'lease', name: KEY });
    expect(kinds).toContainEqual({ kind: 'backoff', clientKey: CLIENT_KEY });
    expect(kinds).toContainEqual({ kind: 'quota', clientKey: CLIENT_KEY, hourStartMs: hour });
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

  it('shows a lease by its name while held and a released lease no more; a flushed token is no longer listed', async () => {
    const table = await newTable();
    const { store } = storeOn(table);
    const leases = new DynamoLeaseStore({ client: dynamodb, tableName: table });
    expect(await leases.acquireLease('some-lease', 'someone-else', Date.now() + 10_000)).toBe(true);
    await store.put(token());
    expect((await store.inspect()).leases.map((l) => l.name)).toEqual(['some-lease']);

    await leases.releaseLease('some-lease', 'someone-else');
    await store.remove(KEY);

    expect(await store.inspect()).toEqual({ tokens: [], leases: [], backoffs: [] });
    expect(await store.listTokens()).toEqual([]);
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

describe('the whole record is sealed: the seal is the truth, an unsealed copy that disagrees makes the item a miss', () => {
  const ORIGIN = 'arn:aws:iam::111122223333:role/checkout-service';

  async function edit(tableName: string, name: string, value: AttributeValue | undefined): Promise<void> {
    await dynamodb.send(
      new UpdateItemCommand({
        TableName: tableName,
        Key: keyOf(KEY),
        UpdateExpression: value === undefined ? 'REMOVE #a' : 'SET #a = :v',
        ExpressionAttributeNames: { '#a': name },
        ...(value === undefined ? {} : { ExpressionAttributeValues: { ':v': value } }),
      }),
    );
  }

  it('get returns what the seal holds; the item holds the token only sealed, beside copies that match', async () => {
    const table = await newTable();
    const { store, defects } = storeOn(table);
    const stored = token({ clientId: 'client-a', origin: ORIGIN });
    await store.put(stored);

    expect(await store.get(KEY)).toEqual({ ...stored, lastUsedAt: stored.fetchedAt });
    const item = await rawItem(table, KEY);
    expect(JSON.stringify(item)).not.toContain(stored.accessToken);
    expect(item?.sealedToken?.S).toMatch(/^v2\./);
    expect([item?.scope?.S, Number(item?.expiresAt?.N), Number(item?.fetchedAt?.N), item?.clientId?.S, item?.origin?.S]).toEqual([
      stored.scope,
      stored.expiresAt,
      stored.fetchedAt,
      'client-a',
      ORIGIN,
    ]);
    expect(defects).toEqual([]);
  });

  const edits: Array<[string, AttributeValue | undefined]> = [
    ['scope', { S: 'read:orders admin:orders' }],
    ['expiresAt', { N: String(Math.floor(Date.now() / 1000) + 30 * 86_400) }],
    ['fetchedAt', { N: String(Date.now() + 365 * 86_400_000) }],
    ['fingerprint', { S: 'someone-else' }],
    ['client', { S: 'billing' }],
    ['audience', { S: 'https://elsewhere.example' }],
    ['scopes', { S: 'read:orders admin:orders' }],
    ['clientId', { S: 'client-b' }],
    ['clientId', undefined],
    ['origin', { S: 'arn:aws:iam::111122223333:role/someone-else' }],
    ['origin', undefined],
  ];

  it.each(edits)('%s edited in the table (%j): a miss, counted and logged by name; the next put replaces the item', async (name, value) => {
    const table = await newTable();
    const { store, defects, warnings } = storeOn(table);
    const stored = token({ clientId: 'client-a', origin: ORIGIN });
    await store.put(stored);
    await edit(table, name, value);

    expect(await store.get(KEY)).toBeUndefined();

    expect(defects).toEqual(['attributes']);
    expect(warnings).toEqual([{ message: expect.stringMatching(/^Token item not used/), fields: { key: KEY, defect: 'attributes', fingerprint: stored.fingerprint, attributes: [name] } }]);
    expect(JSON.stringify(warnings)).not.toContain(stored.accessToken);
    // Replaced by the next fetch, even when the edit pushed fetchedAt past it (the put replaces exactly what was read).
    const next = token({ clientId: 'client-a', origin: ORIGIN, accessToken: 'the-next-fetch' });
    await store.put(next);
    expect((await store.get(KEY))?.accessToken).toBe('the-next-fetch');
    expect(defects).toEqual(['attributes']);
  });

  it('lastUsedAt is not sealed: instances record uses in place, and the item is still served', async () => {
    const table = await newTable();
    const { store, defects } = storeOn(table);
    const stored = token();
    await store.put(stored);

    await store.touch(KEY, stored.fetchedAt + 60_000);

    expect(await store.get(KEY)).toEqual({ ...stored, lastUsedAt: stored.fetchedAt + 60_000 });
    expect(defects).toEqual([]);
  });

  it('a seal that does not open, or is not this version\'s, or is missing: each a counted miss, replaced by the next put', async () => {
    const table = await newTable();
    const { store, defects } = storeOn(table);
    const other = cacheKey('https://tenant.example/', 'secret/orders', 'https://orders.example', ['write:orders']);
    await store.put(token({ key: other }));
    const theirs = (await rawItem(table, other))?.sealedToken?.S ?? '';
    const [version, wrapped, payload = ''] = theirs.split('.');
    const flipped = Buffer.from(payload, 'base64url');
    flipped[20] = (flipped[20] ?? 0) ^ 1;
    const cases: Array<[RecordDefect, AttributeValue | undefined]> = [
      ['key-refused', { S: theirs }], // another item's seal, copied here
      ['unsealed', { S: `v1.${'A'.repeat(16)}.${payload}` }], // an earlier version's shared-key format
      ['tampered', { S: `${version}.${wrapped}.${flipped.toString('base64url')}` }],
      ['malformed', undefined],
    ];
    for (const [defect, sealed] of cases) {
      await store.put(token({ accessToken: `fresh-before-${defect}` }));
      const original = (await rawItem(table, KEY))?.sealedToken?.S ?? '';
      if (defect === 'tampered') {
        // this item's own seal, one byte flipped (the wrapped key is its own: KMS unwraps it)
        const [v, w, p = ''] = original.split('.');
        const bytes = Buffer.from(p, 'base64url');
        bytes[20] = (bytes[20] ?? 0) ^ 1;
        await edit(table, 'sealedToken', { S: `${v}.${w}.${bytes.toString('base64url')}` });
      } else {
        await edit(table, 'sealedToken', sealed);
      }
      expect(await store.get(KEY)).toBeUndefined();
      expect(defects.at(-1)).toBe(defect);
    }
    expect(defects).toEqual(cases.map(([defect]) => defect));
    await store.put(token({ accessToken: 'after-all-that' }));
    expect((await store.get(KEY))?.accessToken).toBe('after-all-that');
  });

  it('a defective item is replaced only as it was read: a newer token written meanwhile by another instance stays', async () => {
    const table = await newTable();
    const a = storeOn(table);
    const b = storeOn(table);
    const t0 = Date.now();
    await a.store.put(token({ accessToken: 'first', fetchedAt: t0 }));
    await edit(table, 'fetchedAt', { N: String(Date.now() + 86_400_000) });
    expect(await a.store.get(KEY)).toBeUndefined();
    await b.store.get(KEY); // b found it defective too, and replaces it first
    await b.store.put(token({ accessToken: 'b-newer', fetchedAt: t0 + 2 }));

    await a.store.put(token({ accessToken: 'a-older', fetchedAt: t0 + 1 }));

    expect((await a.store.get(KEY))?.accessToken).toBe('b-newer');
  });
});

describe('a flush leaves a mark: the flushed token written back is a miss', () => {
  it('remove marks the key through the token\'s fetch time and deletes it; written back, it is refused; a later token is served', async () => {
    const table = await newTable();
    const { store, defects, warnings } = storeOn(table);
    const flushed = token({ accessToken: 'leaked' });
    await store.put(flushed);
    const copy = await rawItem(table, KEY);

    await store.remove(KEY);

    expect(await rawItem(table, KEY)).toBeUndefined();
    const mark = await rawItem(table, tableKey.flushMark(KEY));
    expect(Number(mark?.through?.N)).toBe(flushed.fetchedAt);
    expect(Number(mark?.[TTL_ATTRIBUTE]?.N)).toBe(Math.ceil((flushed.fetchedAt + 30 * 86_400_000) / 1000) + GC_GRACE_SECONDS);
    await dynamodb.send(new PutItemCommand({ TableName: table, Item: copy! }));
    expect(await store.get(KEY)).toBeUndefined();
    expect(await storeOn(table).store.get(KEY)).toBeUndefined(); // any instance, cold or not
    expect(defects).toEqual(['flushed']);
    expect(warnings[0]?.fields).toEqual({ key: KEY, defect: 'flushed', fingerprint: flushed.fingerprint });

    const later = token({ accessToken: 'fetched-after-the-flush', fetchedAt: flushed.fetchedAt + 1 });
    await store.put(later);
    expect((await store.get(KEY))?.accessToken).toBe('fetched-after-the-flush');
    // written back over the new one: refused again (and the next put replaces it: it is older)
    await dynamodb.send(new PutItemCommand({ TableName: table, Item: copy! }));
    expect(await store.get(KEY)).toBeUndefined();
  });

  it('a mark only rises: flushing an older token later leaves the higher mark', async () => {
    const table = await newTable();
    const { store } = storeOn(table);
    const t0 = Date.now();
    await store.put(token({ fetchedAt: t0 }));
    await store.remove(KEY);
    await store.put(token({ fetchedAt: t0 - 5_000 })); // an older token, written later (a slow writer)
    await store.remove(KEY);

    expect(Number((await rawItem(table, tableKey.flushMark(KEY)))?.through?.N)).toBe(t0);
  });

  it('a mark far in the future is not a flush\'s: ignored (counted and logged), the token is served', async () => {
    const table = await newTable();
    const { store, defects } = storeOn(table);
    const stored = token();
    await store.put(stored);
    await dynamodb.send(
      new PutItemCommand({ TableName: table, Item: { ...keyOf(tableKey.flushMark(KEY)), through: { N: String(Date.now() + 86_400_000) } } }),
    );

    expect((await store.get(KEY))?.accessToken).toBe(stored.accessToken);
    expect(defects).toEqual(['flush-mark-ahead']);
  });
});

describe('KMS calls of the store', () => {
  it('one GenerateDataKey per put; gets by the instance that put: none; a cold instance: one Decrypt per token, then none', async () => {
    const table = await newTable();
    const calls: string[] = [];
    const counting = localKms(inject('motoEndpoint'));
    counting.middlewareStack.add(
      (next, context) => (args) => {
        calls.push(context.commandName ?? 'unknown');
        return next(args);
      },
      { step: 'initialize', name: 'countKmsCalls' },
    );
    const instance = () => new DynamoTokenStore({ client: dynamodb, tableName: table, sealer: new KmsTokenSealer({ kms: counting, tableName: table, keyId: LOCAL_SEAL_KEY_ALIAS }) });
    const writer = instance();
    const other = cacheKey('https://tenant.example/', 'secret/orders', 'https://orders.example', ['write:orders']);
    await writer.put(token());
    await writer.put(token({ key: other }));
    expect(calls).toEqual(['GenerateDataKeyCommand', 'GenerateDataKeyCommand']);
    for (let i = 0; i < 3; i++) expect(await writer.get(KEY)).toBeDefined();
    expect(calls).toHaveLength(2);

    const cold = instance();
    for (let i = 0; i < 3; i++) {
      expect(await cold.get(KEY)).toBeDefined();
      expect(await cold.get(other)).toBeDefined();
    }
    expect(calls).toEqual(['GenerateDataKeyCommand', 'GenerateDataKeyCommand', 'DecryptCommand', 'DecryptCommand']);
  });
});
