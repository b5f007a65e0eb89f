/**
 * The fleet-wide cache tier: one DynamoDB table shared by every instance. The table's keys, its
 * TTL attribute, its leases and its error translation are `tokenTable.ts`'s; the attributes of the
 * items below are this store's.
 *
 * Token item:   { pk, sealedToken, scope, expiresAt (epoch s), ttl (= expiresAt), fetchedAt (epoch ms),
 *                fingerprint, client, audience, scopes, lastUsedAt (epoch ms), clientId?, origin?, organization? }.
 * Flush mark:   { through (epoch ms), ttl }: what a flush of the token leaves (see `remove`).
 * Back-off:     { until (epoch ms), reason, ttl }.
 * Fetch count:  { fetches, ttl }.
 *
 * The whole record is sealed, not only the token: `sealedToken` is the seal (kmsTokenSealer.ts:
 * AES-256-GCM under a data key of its own, bound to the item's key) of every field the vendor
 * serves or decides on: the token, its expiry, scope, fingerprint, fetch time, the client it was
 * issued to, who caused the fetch, what was asked for (the Auth0 organization among it), and the
 * item's key: a table writer cannot move a token to another organization's item or relabel it. On a read the sealed
 * fields are the truth; the unsealed attributes are copies, kept for DynamoDB (TTL, the
 * conditions of a write) and for readers without the key (the refresher's list, `ops status`).
 * An item whose copies disagree with its seal, or whose seal does not open, was written by
 * someone other than the vendor: it is a miss, counted (`onDefect`) and logged, never served and
 * never an error, and the next fetch replaces it. Only `lastUsedAt` is not sealed: instances
 * record uses with an UpdateItem, and it only steers what the refresher keeps fresh.
 *
 * Writes are conditional, in the manner of Powertools' idempotency layer: a lease is taken only
 * if absent or expired, and a token only replaces one fetched earlier, one issued to another
 * client, or an item this instance found defective (exactly as read), so a stale item never
 * blocks a fresh one and a slow writer never clobbers a newer token.
 */
import { BatchGetItemCommand, DeleteItemCommand, GetItemCommand, PutItemCommand, UpdateItemCommand, type AttributeValue, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { StoreUnavailableError } from '../core/errors.js';
import type { Backoff, CachedToken, Log, TokenRecord, TokenStore } from '../core/ports.js';
import { SealError, type TokenSealer } from '../core/sealing.js';
import {
  DynamoLeaseStore,
  PARTITION_KEY,
  TTL_ATTRIBUTE,
  conditionalWrite,
  keyOf,
  leaseFromItem,
  scanTable,
  tableCall,
  tableKey,
  ttlAfter,
  type Item,
  type TableRef,
} from './tokenTable.js';

// Where infra, the local stand-ins and the tests have always looked for them; tokenTable.ts owns them.
export { PARTITION_KEY, TTL_ATTRIBUTE } from './tokenTable.js';

/** How long a quota count is kept after its hour starts: the hour, and one more for late writers. */
const QUOTA_KEEP_SECONDS = 2 * 3600;
/** The sealed record's format version (inside the seal, so it is authenticated too). */
const RECORD_VERSION = 2;
/**
 * How long a flush mark is kept: no token fetched before it outlives this. Auth0's longest access
 * token lifetime is 30 days (Auth0 docs, "Update Access Token Lifetime": at most 2592000 s).
 */
const FLUSH_MARK_KEEP_MS = 30 * 24 * 3600 * 1000;
/**
 * A flush mark later than this past the instance's clock is not one a flush wrote (a mark is a
 * flushed token's own fetch time): it is ignored, counted and logged, so a mark pushed into the
 * future cannot make every later token of the key a miss. Well above the clock skew of NTP-synced
 * hosts.
 */
const FLUSH_MARK_MAX_AHEAD_MS = 5 * 60 * 1000;
/** Defective items remembered (by key) so the next put may replace exactly what was read. */
const DEFECTS_REMEMBERED = 1024;

/**
 * Why a token item was not used (each is a miss, counted and logged, never served):
 * - `malformed`: an attribute is missing or of another type;
 * - `unsealed`: its seal is not one this version writes (an older version's item, or a forgery);
 * - `tampered`: its seal fails authentication (changed, or sealed for another item);
 * - `key-refused`: KMS refuses its data key (wrapped for another item or table, or not KMS's);
 * - `record`: the seal opens but does not hold a record of this item;
 * - `attributes`: an unsealed attribute disagrees with the sealed record (edited in the table);
 * - `flushed`: fetched no later than the token a flush removed (written back after the flush);
 * - `flush-mark-ahead`: the key's flush mark is implausibly far in the future (ignored; the record is served).
 */
export type RecordDefect = 'malformed' | 'unsealed' | 'tampered' | 'key-refused' | 'record' | 'attributes' | 'flushed' | 'flush-mark-ahead';

export interface DynamoTokenStoreOptions {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  readonly sealer: TokenSealer;
  readonly now?: () => number;
  /** an item was refused (or a flush mark ignored): a metric; each is logged too */
  readonly onDefect?: ((defect: RecordDefect) => void) | undefined;
  /** where refused items are logged (their key and the sealed fingerprint, never a token); none by default */
  readonly log?: Pick<Log, 'warn'> | undefined;
}

/** Everything the table holds that ops looks at, read through the schema (never the tokens themselves). */
export interface TableContents {
  readonly tokens: TokenRecord[];
  /** every lease item, including lapsed ones not yet deleted by TTL: `until` (epoch ms) tells */
  readonly leases: Array<{ readonly name: string; readonly until: number }>;
  /** every back-off item, including lapsed ones: `until` (epoch ms) tells */
  readonly backoffs: Array<{ readonly clientKey: string; readonly reason: string; readonly until: number }>;
}

export class DynamoTokenStore implements TokenStore {
  private readonly table: TableRef;
  private readonly leases: DynamoLeaseStore;
  private readonly now: () => number;
  /**
   * The `sealedToken` of each item this instance last found defective (null: it had none), so
   * that the next put replaces exactly that item even if its unsealed `fetchedAt` was pushed
   * into the future to block it. Bounded, oldest out.
   */
  private readonly defective = new Map<string, string | null>();

  constructor(private readonly options: DynamoTokenStoreOptions) {
    this.table = { client: options.client, tableName: options.tableName };
    this.now = options.now ?? Date.now;
    this.leases = new DynamoLeaseStore({ ...this.table, now: this.now });
  }

  /**
   * The token, as its seal says, if the item is the vendor's own and no flush has removed it:
   * the item and its flush mark in one BatchGetItem (one round trip), and (on a cold instance)
   * one KMS Decrypt.
   * @throws StoreUnavailableError when DynamoDB or KMS cannot be asked
   */
  async get(key: string): Promise<CachedToken | undefined> {
    const [item, mark] = await this.getPair(tableKey.token(key), tableKey.flushMark(key));
    if (item === undefined) return undefined;
    const sealed = item.sealedToken?.S;
    if (sealed === undefined) return this.refuse(key, item, 'malformed');
    let plaintext: string;
    try {
      plaintext = await this.options.sealer.open(sealed, key);
    } catch (error) {
      // KMS or DynamoDB being unreachable is not a verdict on the item: it propagates.
      if (!(error instanceof SealError)) throw error;
      return this.refuse(key, item, error.code === 'ERR_SEAL_FORMAT' ? 'unsealed' : error.code === 'ERR_SEAL_KEY' ? 'key-refused' : 'tampered');
    }
    const token = recordFromSeal(plaintext, key);
    if (token === undefined) return this.refuse(key, item, 'record');
    const disagreeing = attributesDisagreeing(token, item);
    if (disagreeing.length > 0) return this.refuse(key, item, 'attributes', { fingerprint: token.fingerprint, attributes: disagreeing });
    const through = mark === undefined ? undefined : Number(mark.through?.N);
    if (through !== undefined && Number.isFinite(through) && token.fetchedAt <= through) {
      if (through <= this.now() + FLUSH_MARK_MAX_AHEAD_MS) return this.refuse(key, item, 'flushed', { fingerprint: token.fingerprint });
      this.report(key, 'flush-mark-ahead', { fingerprint: token.fingerprint, through });
    }
    const lastUsedAt = Number(item.lastUsedAt?.N);
    return { ...token, lastUsedAt: Number.isFinite(lastUsedAt) ? lastUsedAt : undefined };
  }

  async put(token: CachedToken): Promise<void> {
    let sealedToken: string;
    try {
      sealedToken = await this.options.sealer.seal(recordToSeal(token), token.key);
    } catch (error) {
      // KMS refusing to generate a key makes the shared tier unusable, not the request: the
      // service carries on from memory, as without DynamoDB.
      if (error instanceof SealError) throw new StoreUnavailableError(`sealing failed (${error.code})`, { cause: error });
      throw error;
    }
    // The newest fetch wins: replace a token fetched earlier, whatever its expiry (a lifetime
    // lowered in Auth0 is adopted, not refetched on every refresh run), or one issued to another
    // client (a changed client must never be kept over by the old client's token), or exactly the
    // defective item this instance last read (its `fetchedAt` may be anything). A failed
    // condition: a newer token of the same client is already there, and ours is still valid.
    const otherClient = token.clientId === undefined ? 'attribute_exists(#cid)' : '(attribute_not_exists(#cid) OR #cid <> :cid)';
    const defective = this.defective.get(token.key);
    const replaceDefective = defective === undefined ? '' : defective === null ? ' OR attribute_not_exists(#sealed)' : ' OR #sealed = :defective';
    const written = await conditionalWrite(this.table, 'PutItem', () =>
      this.options.client.send(
        new PutItemCommand({
          TableName: this.options.tableName,
          Item: {
            ...keyOf(tableKey.token(token.key)),
            sealedToken: { S: sealedToken },
            scope: { S: token.scope },
            expiresAt: { N: String(token.expiresAt) },
            [TTL_ATTRIBUTE]: { N: String(token.expiresAt) },
            fetchedAt: { N: String(token.fetchedAt) },
            fingerprint: { S: token.fingerprint },
            client: { S: token.client },
            audience: { S: token.audience },
            scopes: { S: token.scopes.join(' ') },
            lastUsedAt: { N: String(token.lastUsedAt ?? token.fetchedAt) },
            ...(token.clientId !== undefined ? { clientId: { S: token.clientId } } : {}),
            ...(token.origin !== undefined ? { origin: { S: token.origin } } : {}),
            ...(token.organization !== undefined ? { organization: { S: token.organization } } : {}),
          },
          ConditionExpression: `attribute_not_exists(#pk) OR #fetched < :fetched OR ${otherClient}${replaceDefective}`,
          ExpressionAttributeNames: {
            '#pk': PARTITION_KEY,
            '#fetched': 'fetchedAt',
            '#cid': 'clientId',
            ...(defective !== undefined ? { '#sealed': 'sealedToken' } : {}),
          },
          ExpressionAttributeValues: {
            ':fetched': { N: String(token.fetchedAt) },
            ...(token.clientId !== undefined ? { ':cid': { S: token.clientId } } : {}),
            ...(typeof defective === 'string' ? { ':defective': { S: defective } } : {}),
          },
        }),
      ),
    );
    if (written) this.defective.delete(token.key);
  }

  acquireLease(name: string, owner: string, untilMs: number): Promise<boolean> {
    return this.leases.acquireLease(name, owner, untilMs);
  }

  renewLease(name: string, owner: string, untilMs: number): Promise<boolean> {
    return this.leases.renewLease(name, owner, untilMs);
  }

  releaseLease(name: string, owner: string): Promise<void> {
    return this.leases.releaseLease(name, owner);
  }

  async touch(key: string, atMs: number): Promise<void> {
    await conditionalWrite(this.table, 'UpdateItem', () =>
      this.options.client.send(
        new UpdateItemCommand({
          TableName: this.options.tableName,
          Key: keyOf(tableKey.token(key)),
          UpdateExpression: 'SET #used = :at',
          // Only an existing token, and never backwards in time.
          ConditionExpression: 'attribute_exists(#pk) AND (attribute_not_exists(#used) OR #used < :at)',
          ExpressionAttributeNames: { '#pk': PARTITION_KEY, '#used': 'lastUsedAt' },
          ExpressionAttributeValues: { ':at': { N: String(atMs) } },
        }),
      ),
    );
  }

  async getBackoff(clientKey: string): Promise<Backoff | undefined> {
    const out = await tableCall(this.table, 'GetItem', () =>
      this.options.client.send(new GetItemCommand({ TableName: this.options.tableName, Key: keyOf(tableKey.backoff(clientKey)), ConsistentRead: true })),
    );
    return out.Item === undefined ? undefined : itemToBackoff(out.Item);
  }

  async putBackoff(clientKey: string, backoff: Backoff): Promise<void> {
    // Several instances may record one at once: the longest wins (a failed condition: a longer one is there).
    await conditionalWrite(this.table, 'PutItem', () =>
      this.options.client.send(
        new PutItemCommand({
          TableName: this.options.tableName,
          Item: {
            ...keyOf(tableKey.backoff(clientKey)),
            until: { N: String(backoff.until) },
            reason: { S: backoff.reason },
            [TTL_ATTRIBUTE]: ttlAfter(backoff.until),
          },
          ConditionExpression: 'attribute_not_exists(#pk) OR #until < :until',
          ExpressionAttributeNames: { '#pk': PARTITION_KEY, '#until': 'until' },
          ExpressionAttributeValues: { ':until': { N: String(backoff.until) } },
        }),
      ),
    );
  }

  countFetch(clientKey: string, hourStartMs: number, cap: number): Promise<boolean> {
    return conditionalWrite(this.table, 'UpdateItem', () =>
      this.options.client.send(
        new UpdateItemCommand({
          TableName: this.options.tableName,
          Key: keyOf(tableKey.quota(clientKey, hourStartMs)),
          // Atomic across the fleet: the increment happens only while under the cap.
          UpdateExpression: 'ADD #n :one SET #ttl = :ttl',
          ConditionExpression: 'attribute_not_exists(#n) OR #n < :cap',
          ExpressionAttributeNames: { '#n': 'fetches', '#ttl': TTL_ATTRIBUTE },
          ExpressionAttributeValues: {
            ':one': { N: '1' },
            ':cap': { N: String(cap) },
            ':ttl': { N: String(Math.ceil(hourStartMs / 1000) + QUOTA_KEEP_SECONDS) },
          },
        }),
      ),
    );
  }

  /**
   * Flush the token: leave a mark that refuses it and every token of the key fetched no later
   * (its `fetchedAt`), then delete it. Deleting alone would let its item, copied before, be
   * written back and served again until it expires; the mark makes such a copy a miss. The mark
   * is written first, so a flush that fails half-way still refuses the token. Needs no KMS: ops
   * flush with table access only, so the mark is not sealed; it can only make reads miss, and a
   * mark pushed into the future is ignored (see `get`).
   */
  async remove(key: string): Promise<void> {
    const item = await this.getItem(tableKey.token(key));
    if (item !== undefined) {
      const fetchedAt = Number(item.fetchedAt?.N);
      // An item without a readable fetch time is refused by every reader anyway; the flush's own
      // clock is the best bound left for a copy of it.
      await this.markFlushed(key, Number.isFinite(fetchedAt) ? fetchedAt : this.now());
    }
    await tableCall(this.table, 'DeleteItem', () =>
      this.options.client.send(new DeleteItemCommand({ TableName: this.options.tableName, Key: keyOf(tableKey.token(key)) })),
    );
  }

  /** Raise the key's flush mark to `through` (epoch ms); a higher mark stands (a failed condition). */
  private async markFlushed(key: string, through: number): Promise<void> {
    await conditionalWrite(this.table, 'UpdateItem', () =>
      this.options.client.send(
        new UpdateItemCommand({
          TableName: this.options.tableName,
          Key: keyOf(tableKey.flushMark(key)),
          UpdateExpression: 'SET #through = :through, #ttl = :ttl',
          ConditionExpression: 'attribute_not_exists(#through) OR #through < :through',
          ExpressionAttributeNames: { '#through': 'through', '#ttl': TTL_ATTRIBUTE },
          ExpressionAttributeValues: { ':through': { N: String(through) }, ':ttl': ttlAfter(through + FLUSH_MARK_KEEP_MS) },
        }),
      ),
    );
  }

  /**
   * Two items in one strongly consistent BatchGetItem. DynamoDB may leave keys unprocessed (when
   * throttled: https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html);
   * those are read again one by one, so the answer is always both items.
   */
  private async getPair(first: string, second: string): Promise<[Item | undefined, Item | undefined]> {
    const table = this.options.tableName;
    const out = await tableCall(this.table, 'BatchGetItem', () =>
      this.options.client.send(new BatchGetItemCommand({ RequestItems: { [table]: { Keys: [keyOf(first), keyOf(second)], ConsistentRead: true } } })),
    );
    const found = new Map<string, Item>();
    for (const item of out.Responses?.[table] ?? []) {
      const pk = item[PARTITION_KEY]?.S;
      if (pk !== undefined) found.set(pk, item);
    }
    const unprocessed = new Set((out.UnprocessedKeys?.[table]?.Keys ?? []).map((k) => k[PARTITION_KEY]?.S));
    const read = (pk: string): Promise<Item | undefined> => (unprocessed.has(pk) ? this.getItem(pk) : Promise.resolve(found.get(pk)));
    return Promise.all([read(first), read(second)]);
  }

  private async getItem(pk: string): Promise<Item | undefined> {
    const out = await tableCall(this.table, 'GetItem', () =>
      this.options.client.send(
        new GetItemCommand({
          TableName: this.options.tableName,
          Key: keyOf(pk),
          // A waiter polls for the lease holder's write: an eventually consistent read could
          // miss it and send the waiter to the IdP (and a flush mark must be seen at once).
          ConsistentRead: true,
        }),
      ),
    );
    return out.Item;
  }

  /** An item not to be used: remembered for the next put to replace, counted and logged; a miss. */
  private refuse(key: string, item: Item, defect: RecordDefect, fields: Record<string, unknown> = {}): undefined {
    this.defective.delete(key);
    this.defective.set(key, item.sealedToken?.S ?? null);
    if (this.defective.size > DEFECTS_REMEMBERED) {
      const oldest = this.defective.keys().next();
      if (oldest.done !== true) this.defective.delete(oldest.value);
    }
    this.report(key, defect, fields);
    return undefined;
  }

  private report(key: string, defect: RecordDefect, fields: Record<string, unknown>): void {
    this.options.onDefect?.(defect);
    // The key is a hash and the fingerprint a digest: neither is a token (README, "The contract").
    this.options.log?.warn('Token item not used: it is not what the vendor wrote, or a flush removed it', { key, defect, ...fields });
  }

  async listTokens(): Promise<TokenRecord[]> {
    // Token items only; the table holds one item per distinct (client, audience, scopes).
    return (await this.scanContents('attribute_exists(sealedToken)')).tokens;
  }

  /**
   * What the table holds, for ops: token records (never the tokens), leases and back-offs, each
   * classified by its key (tokenTable.ts), from one strongly consistent, paged Scan.
   */
  inspect(): Promise<TableContents> {
    return this.scanContents();
  }

  private async scanContents(filter?: string): Promise<TableContents> {
    const contents: TableContents = { tokens: [], leases: [], backoffs: [] };
    for (const { key, item } of await scanTable(this.table, filter)) {
      if (key.kind === 'token') {
        const token = item.sealedToken?.S === undefined ? undefined : itemToRecord(key.key, item);
        if (token !== undefined) contents.tokens.push(token);
      } else if (key.kind === 'lease') {
        const lease = leaseFromItem(item);
        if (lease !== undefined) contents.leases.push({ name: key.name, until: lease.until });
      } else if (key.kind === 'backoff') {
        const backoff = itemToBackoff(item);
        if (backoff !== undefined) contents.backoffs.push({ clientKey: key.clientKey, ...backoff });
      }
    }
    return contents;
  }
}

function itemToBackoff(item: Item): Backoff | undefined {
  const until = Number(item.until?.N);
  return Number.isFinite(until) ? { until, reason: item.reason?.S ?? 'unknown' } : undefined;
}

function itemToRecord(key: string, item: Record<string, AttributeValue>): TokenRecord | undefined {
  const scope = item.scope?.S;
  const expiresAt = Number(item.expiresAt?.N);
  const fetchedAt = Number(item.fetchedAt?.N);
  const fingerprint = item.fingerprint?.S;
  const client = item.client?.S;
  const audience = item.audience?.S;
  const scopes = item.scopes?.S;
  const lastUsedAt = Number(item.lastUsedAt?.N);
  const clientId = item.clientId?.S;
  const origin = item.origin?.S;
  const organization = item.organization?.S;
  // A malformed item is a miss, not a crash: it will be overwritten by the next fetch.
  if (scope === undefined || fingerprint === undefined) return undefined;
  if (client === undefined || audience === undefined || scopes === undefined) return undefined;
  if (!Number.isFinite(expiresAt) || !Number.isFinite(fetchedAt)) return undefined;
  return {
    key,
    scope,
    expiresAt,
    fetchedAt,
    fingerprint,
    client,
    audience,
    scopes: scopes.split(' ').filter((s) => s !== ''),
    lastUsedAt: Number.isFinite(lastUsedAt) ? lastUsedAt : undefined,
    ...(clientId !== undefined ? { clientId } : {}),
    ...(origin !== undefined ? { origin } : {}),
    ...(organization !== undefined ? { organization } : {}),
  };
}

/** The sealed record: every field of a cached token the vendor serves or decides on, and the item's key. */
interface SealedRecord {
  readonly v: typeof RECORD_VERSION;
  readonly key: string;
  readonly accessToken: string;
  readonly scope: string;
  readonly expiresAt: number;
  readonly fetchedAt: number;
  readonly fingerprint: string;
  readonly client: string;
  readonly audience: string;
  readonly scopes: readonly string[];
  readonly clientId: string | null;
  readonly origin: string | null;
  /**
   * The Auth0 organization asked for (issue 12). Absent, not null, for a token without one, so that
   * such a record seals as it did before organizations existed and the records of an earlier
   * vendor (same version) still open.
   */
  readonly organization?: string;
}

function recordToSeal(token: CachedToken): string {
  const record: SealedRecord = {
    v: RECORD_VERSION,
    key: token.key,
    accessToken: token.accessToken,
    scope: token.scope,
    expiresAt: token.expiresAt,
    fetchedAt: token.fetchedAt,
    fingerprint: token.fingerprint,
    client: token.client,
    audience: token.audience,
    scopes: [...token.scopes],
    clientId: token.clientId ?? null,
    origin: token.origin ?? null,
    ...(token.organization !== undefined ? { organization: token.organization } : {}),
  };
  return JSON.stringify(record);
}

/** The token the seal holds, if it is a record of item `key` in this version's shape; `lastUsedAt` is the item's. */
function recordFromSeal(plaintext: string, key: string): Omit<CachedToken, 'lastUsedAt'> | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(plaintext);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const r = parsed as Partial<Record<keyof SealedRecord, unknown>>;
  const isString = (v: unknown): v is string => typeof v === 'string';
  const isTime = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  if (r.v !== RECORD_VERSION || r.key !== key) return undefined;
  if (!isString(r.accessToken) || r.accessToken === '' || !isString(r.scope) || !isString(r.fingerprint)) return undefined;
  if (!isTime(r.expiresAt) || !isTime(r.fetchedAt) || !isString(r.client) || !isString(r.audience)) return undefined;
  if (!Array.isArray(r.scopes) || !r.scopes.every(isString)) return undefined;
  if (!(r.clientId === null || isString(r.clientId)) || !(r.origin === null || isString(r.origin))) return undefined;
  if (r.organization !== undefined && (!isString(r.organization) || r.organization === '')) return undefined;
  return {
    key,
    accessToken: r.accessToken,
    scope: r.scope,
    expiresAt: r.expiresAt,
    fetchedAt: r.fetchedAt,
    fingerprint: r.fingerprint,
    client: r.client,
    audience: r.audience,
    scopes: r.scopes,
    ...(r.clientId !== null ? { clientId: r.clientId } : {}),
    ...(r.origin !== null ? { origin: r.origin } : {}),
    ...(r.organization !== undefined ? { organization: r.organization } : {}),
  };
}

/**
 * The unsealed attributes that say something else than the seal. They are what the refresher,
 * `ops status` and the write conditions read, so an edited one must not stand beside a seal that
 * is served: the item is refused instead, and replaced by the next fetch.
 */
function attributesDisagreeing(token: Omit<CachedToken, 'lastUsedAt'>, item: Item): string[] {
  const expected: Record<string, AttributeValue | undefined> = {
    scope: { S: token.scope },
    expiresAt: { N: String(token.expiresAt) },
    fetchedAt: { N: String(token.fetchedAt) },
    fingerprint: { S: token.fingerprint },
    client: { S: token.client },
    audience: { S: token.audience },
    scopes: { S: token.scopes.join(' ') },
    clientId: token.clientId === undefined ? undefined : { S: token.clientId },
    origin: token.origin === undefined ? undefined : { S: token.origin },
    organization: token.organization === undefined ? undefined : { S: token.organization },
  };
  return Object.entries(expected)
    .filter(([name, value]) => !sameAttribute(item[name], value))
    .map(([name]) => name);
}

function sameAttribute(actual: AttributeValue | undefined, expected: AttributeValue | undefined): boolean {
  if (expected === undefined || actual === undefined) return expected === actual;
  if (expected.S !== undefined) return actual.S === expected.S;
  // Numbers are compared as numbers: DynamoDB may normalise how one is written.
  return expected.N !== undefined && actual.N !== undefined && Number(actual.N) === Number(expected.N);
}
