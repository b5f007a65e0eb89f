/**
 * The token table's schema, and the one place that knows it: the key attribute, the TTL
 * attribute, every kind of item and how its key is spelled, how a raw key is told back into its
 * kind, and how DynamoDB's failures become the domain's {@link StoreUnavailableError}. The fleet
 * lease ({@link DynamoLeaseStore}) lives here too. (One persistence layer per table, as Powertools
 * idempotency's `DynamoDBPersistenceLayer` owns its table's key and expiry attributes.)
 *
 * Items, by key (`pk`, a string; `ttl`, epoch seconds, is what DynamoDB TTL deletes by):
 *
 *   token          `<key>`                         the bare cache key (base64url: never a `#`);
 *                                                   its attributes are the token store's
 *   lease          `lease#<name>`                  { owner, leaseUntil (epoch ms), ttl }
 *   back-off       `backoff#<clientKey>`           the token store's { until, reason, ttl }
 *   quota count    `quota#<clientKey>#<hourMs>`    the token store's { fetches, ttl }
 *   flush mark     `flushed#<key>`                 the token store's { through (epoch ms), ttl }:
 *                                                   what `ops flush` leaves of a token key
 *
 * Earlier versions also kept the sealer's shared data keys here (`datakey#<id>`, and the pointer
 * `datakey#current`); each token now carries its own wrapped key, so those items are `unknown`:
 * the keys lapse by TTL, and the pointer (which had none) may be deleted by hand.
 *
 * An adapter owns the attributes of the items it writes (they appear in its condition
 * expressions); this module owns the keys, so no other file spells a prefix.
 */
import {
  ConditionalCheckFailedException,
  DeleteItemCommand,
  PutItemCommand,
  ScanCommand,
  UpdateItemCommand,
  type AttributeValue,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import { StoreUnavailableError } from '../core/errors.js';
import type { LeaseStore } from '../core/lease.js';

/** The table's partition key (string). */
export const PARTITION_KEY = 'pk';
/** The attribute DynamoDB TTL must be enabled on: epoch seconds. */
export const TTL_ATTRIBUTE = 'ttl';
/** Items that only matter until a moment (leases, back-offs) are garbage-collected by TTL this long after it. */
export const GC_GRACE_SECONDS = 3600;

const SEPARATOR = '#';
const LEASE_PREFIX = 'lease#';
const BACKOFF_PREFIX = 'backoff#';
const QUOTA_PREFIX = 'quota#';
const FLUSH_MARK_PREFIX = 'flushed#';

/** A raw item as the SDK returns it. */
export type Item = Record<string, AttributeValue>;

/** What an item's key says it is. */
export type TableKey =
  | { readonly kind: 'token'; readonly key: string }
  | { readonly kind: 'lease'; readonly name: string }
  | { readonly kind: 'backoff'; readonly clientKey: string }
  | { readonly kind: 'quota'; readonly clientKey: string; readonly hourStartMs: number }
  | { readonly kind: 'flush-mark'; readonly key: string }
  /** a key no version of this schema writes (or an older one's leftover): left alone, lapses by TTL */
  | { readonly kind: 'unknown'; readonly pk: string };

export type ItemKind = TableKey['kind'];

/** The key (`pk` value) of each kind of item. */
export const tableKey = {
  token(key: string): string {
    // A `#` would make a token key readable as another kind's.
    if (key === '' || key.includes(SEPARATOR)) throw new RangeError(`A token key must be non-empty and without "${SEPARATOR}"`);
    return key;
  },
  lease: (name: string): string => LEASE_PREFIX + name,
  backoff: (clientKey: string): string => BACKOFF_PREFIX + clientKey,
  quota: (clientKey: string, hourStartMs: number): string => `${QUOTA_PREFIX}${clientKey}${SEPARATOR}${hourStartMs}`,
  /** What a flush of token `key` leaves behind (dynamoTokenStore.ts): never a token key itself. */
  flushMark(key: string): string {
    return FLUSH_MARK_PREFIX + tableKey.token(key);
  },
} as const;

/** The kind of the item whose key is `pk`, and what the key names: the inverse of {@link tableKey}. */
export function classifyKey(pk: string): TableKey {
  if (pk !== '' && !pk.includes(SEPARATOR)) return { kind: 'token', key: pk };
  const rest = (prefix: string) => (pk.startsWith(prefix) && pk.length > prefix.length ? pk.slice(prefix.length) : undefined);
  const lease = rest(LEASE_PREFIX);
  if (lease !== undefined) return { kind: 'lease', name: lease };
  const backoff = rest(BACKOFF_PREFIX);
  if (backoff !== undefined) return { kind: 'backoff', clientKey: backoff };
  const quota = rest(QUOTA_PREFIX);
  if (quota !== undefined) {
    const at = quota.lastIndexOf(SEPARATOR);
    const hour = quota.slice(at + 1);
    if (at > 0 && /^\d+$/.test(hour)) return { kind: 'quota', clientKey: quota.slice(0, at), hourStartMs: Number(hour) };
  }
  const flushed = rest(FLUSH_MARK_PREFIX);
  if (flushed !== undefined && !flushed.includes(SEPARATOR)) return { kind: 'flush-mark', key: flushed };
  return { kind: 'unknown', pk };
}

/** The `Key` of a GetItem, UpdateItem or DeleteItem, or the key part of an item. */
export function keyOf(pk: string): Item {
  return { [PARTITION_KEY]: { S: pk } };
}

/** The TTL attribute's value for an item that matters until `untilMs` (epoch ms), kept a grace period after. */
export function ttlAfter(untilMs: number): AttributeValue {
  return { N: String(Math.ceil(untilMs / 1000) + GC_GRACE_SECONDS) };
}

/** The one translation of a DynamoDB failure: the shared tier is unavailable (the core carries on without it). */
export function storeUnavailable(operation: string, error: unknown): StoreUnavailableError {
  const name = error instanceof Error ? error.name : 'Unknown';
  return new StoreUnavailableError(`DynamoDB ${operation} failed (${name})`, { cause: error });
}

/** The table, and the deadline of each call to it when the client has none of its own. */
export interface TableRef {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  /**
   * Aborts each call after this long (the SDK's `abortSignal`, see the AWS Developer Tools blog
   * "AbortController in modular AWS SDK for JavaScript"); none when absent.
   */
  readonly callTimeoutMs?: number | undefined;
}

/** What {@link tableCall} hands to `client.send` as its second argument. */
export interface CallOptions {
  readonly abortSignal?: AbortSignal;
}

function callOptions(table: TableRef): CallOptions {
  return table.callTimeoutMs === undefined ? {} : { abortSignal: AbortSignal.timeout(table.callTimeoutMs) };
}

/** One call to the table: every failure becomes {@link StoreUnavailableError}. */
export async function tableCall<T>(table: TableRef, operation: string, send: (options: CallOptions) => Promise<T>): Promise<T> {
  try {
    return await send(callOptions(table));
  } catch (error) {
    throw storeUnavailable(operation, error);
  }
}

/**
 * One conditional write: true when written, false when its condition did not hold (a decision,
 * not a failure); every other failure becomes {@link StoreUnavailableError}.
 */
export async function conditionalWrite(table: TableRef, operation: string, send: (options: CallOptions) => Promise<unknown>): Promise<boolean> {
  try {
    await send(callOptions(table));
    return true;
  } catch (error) {
    if (error instanceof ConditionalCheckFailedException) return false;
    throw storeUnavailable(operation, error);
  }
}

/**
 * Every item of the table, each with what its key says it is: one strongly consistent Scan,
 * paged. `filter` is a FilterExpression on the items' own attributes.
 */
export async function scanTable(table: TableRef, filter?: string): Promise<Array<{ key: TableKey; item: Item }>> {
  const items: Array<{ key: TableKey; item: Item }> = [];
  let startKey: Item | undefined;
  do {
    const page = await tableCall(table, 'Scan', (options) =>
      table.client.send(
        new ScanCommand({
          TableName: table.tableName,
          ConsistentRead: true,
          ...(filter !== undefined ? { FilterExpression: filter } : {}),
          ...(startKey !== undefined ? { ExclusiveStartKey: startKey } : {}),
        }),
        options,
      ),
    );
    for (const item of page.Items ?? []) {
      const pk = item[PARTITION_KEY]?.S;
      if (pk !== undefined) items.push({ key: classifyKey(pk), item });
    }
    startKey = page.LastEvaluatedKey;
  } while (startKey !== undefined);
  return items;
}

/** A lease as its item records it. */
export interface LeaseItem {
  readonly owner: string;
  /** epoch ms */
  readonly until: number;
}

/** A lease item's attributes, or `undefined` when it is malformed. */
export function leaseFromItem(item: Item): LeaseItem | undefined {
  const owner = item.owner?.S;
  const until = Number(item.leaseUntil?.N);
  return owner !== undefined && Number.isFinite(until) ? { owner, until } : undefined;
}

export interface DynamoLeaseStoreOptions extends TableRef {
  /** epoch ms; default `Date.now` */
  readonly now?: () => number;
}

/**
 * The fleet lease's {@link LeaseStore} over the table: taken by a conditional PutItem only when
 * free or lapsed (`attribute_not_exists(#pk) OR #until < :now`, as Powertools idempotency's
 * `DynamoDBPersistenceLayer`), renewed by an UpdateItem and released by a DeleteItem, both
 * conditional on the owner, and garbage-collected by TTL if its holder died.
 */
export class DynamoLeaseStore implements LeaseStore {
  private readonly now: () => number;

  constructor(private readonly table: DynamoLeaseStoreOptions) {
    this.now = table.now ?? Date.now;
  }

  acquireLease(name: string, owner: string, untilMs: number): Promise<boolean> {
    // Someone else holding the lease is not an error: the caller waits for their result.
    return conditionalWrite(this.table, 'PutItem', (options) =>
      this.table.client.send(
        new PutItemCommand({
          TableName: this.table.tableName,
          Item: {
            ...keyOf(tableKey.lease(name)),
            owner: { S: owner },
            leaseUntil: { N: String(untilMs) },
            [TTL_ATTRIBUTE]: ttlAfter(untilMs),
          },
          ConditionExpression: 'attribute_not_exists(#pk) OR #until < :now',
          ExpressionAttributeNames: { '#pk': PARTITION_KEY, '#until': 'leaseUntil' },
          ExpressionAttributeValues: { ':now': { N: String(this.now()) } },
        }),
        options,
      ),
    );
  }

  renewLease(name: string, owner: string, untilMs: number): Promise<boolean> {
    // A failed condition: the lease is no longer ours (released, or lapsed and taken over). An
    // absent item has no owner, so a renewal never recreates a released lease.
    return conditionalWrite(this.table, 'UpdateItem', (options) =>
      this.table.client.send(
        new UpdateItemCommand({
          TableName: this.table.tableName,
          Key: keyOf(tableKey.lease(name)),
          UpdateExpression: 'SET #until = :until, #ttl = :ttl',
          ConditionExpression: '#owner = :owner',
          ExpressionAttributeNames: { '#owner': 'owner', '#until': 'leaseUntil', '#ttl': TTL_ATTRIBUTE },
          ExpressionAttributeValues: { ':owner': { S: owner }, ':until': { N: String(untilMs) }, ':ttl': ttlAfter(untilMs) },
        }),
        options,
      ),
    );
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    // A failed condition: our lease lapsed and someone else took it over, theirs to release.
    await conditionalWrite(this.table, 'DeleteItem', (options) =>
      this.table.client.send(
        new DeleteItemCommand({
          TableName: this.table.tableName,
          Key: keyOf(tableKey.lease(name)),
          ConditionExpression: '#owner = :owner',
          ExpressionAttributeNames: { '#owner': 'owner' },
          ExpressionAttributeValues: { ':owner': { S: owner } },
        }),
        options,
      ),
    );
  }
}
