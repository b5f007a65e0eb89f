/**
 * The fleet-wide cache tier: one DynamoDB table shared by every instance. The table's keys, its
 * TTL attribute, its leases and its error translation are `tokenTable.ts`'s; the attributes of the
 * items below are this store's.
 *
 * Token item:   { pk, sealedToken, scope, expiresAt (epoch s), ttl (= expiresAt), fetchedAt (epoch ms),
 *                fingerprint, client, audience, scopes, lastUsedAt (epoch ms), clientId?, origin? }.
 *                The token is sealed (AES-256-GCM under a KMS data key, the item's key as associated
 *                data): read access to the table alone yields no usable token.
 * Back-off:     { until (epoch ms), reason, ttl }.
 * Fetch count:  { fetches, ttl }.
 *
 * Writes are conditional, in the manner of Powertools' idempotency layer: a lease is taken only
 * if absent or expired, and a token only replaces one fetched earlier or issued to another
 * client, so a stale item never blocks a fresh one and a slow writer never clobbers a newer token.
 */
import { DeleteItemCommand, GetItemCommand, PutItemCommand, UpdateItemCommand, type AttributeValue, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { StoreUnavailableError } from '../core/errors.js';
import type { Backoff, CachedToken, TokenRecord, TokenStore } from '../core/ports.js';
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

export interface DynamoTokenStoreOptions {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  readonly sealer: TokenSealer;
  readonly now?: () => number;
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

  constructor(private readonly options: DynamoTokenStoreOptions) {
    this.table = { client: options.client, tableName: options.tableName };
    this.leases = new DynamoLeaseStore({ ...this.table, now: options.now ?? Date.now });
  }

  async get(key: string): Promise<CachedToken | undefined> {
    const out = await tableCall(this.table, 'GetItem', () =>
      this.options.client.send(
        new GetItemCommand({
          TableName: this.options.tableName,
          Key: keyOf(tableKey.token(key)),
          // A waiter polls for the lease holder's write: an eventually consistent read could
          // miss it and send the waiter to the IdP.
          ConsistentRead: true,
        }),
      ),
    );
    const record = out.Item === undefined ? undefined : itemToRecord(key, out.Item);
    const sealed = out.Item?.sealedToken?.S;
    if (record === undefined || sealed === undefined) return undefined;
    try {
      return { ...record, accessToken: await this.options.sealer.open(sealed, key) };
    } catch (error) {
      // Tampered with, sealed under a retired data key, or written by an older version: a miss,
      // overwritten by the next fetch. KMS being unreachable is not this: it propagates.
      if (error instanceof SealError) return undefined;
      throw error;
    }
  }

  async put(token: CachedToken): Promise<void> {
    let sealedToken: string;
    try {
      sealedToken = await this.options.sealer.seal(token.accessToken, token.key);
    } catch (error) {
      // A data key that cannot be used (key changed, pointer damaged) makes the shared tier
      // unusable, not the request: the service carries on from memory, as without DynamoDB.
      if (error instanceof SealError) throw new StoreUnavailableError(`sealing failed (${error.code})`, { cause: error });
      throw error;
    }
    // The newest fetch wins: replace a token fetched earlier, whatever its expiry (a lifetime
    // lowered in Auth0 is adopted, not refetched on every refresh run), or one issued to another
    // client (a changed client must never be kept over by the old client's token). A failed
    // condition: a newer token of the same client is already there, and ours is still valid.
    const otherClient = token.clientId === undefined ? 'attribute_exists(#cid)' : '(attribute_not_exists(#cid) OR #cid <> :cid)';
    await conditionalWrite(this.table, 'PutItem', () =>
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
          },
          ConditionExpression: `attribute_not_exists(#pk) OR #fetched < :fetched OR ${otherClient}`,
          ExpressionAttributeNames: { '#pk': PARTITION_KEY, '#fetched': 'fetchedAt', '#cid': 'clientId' },
          ExpressionAttributeValues: {
            ':fetched': { N: String(token.fetchedAt) },
            ...(token.clientId !== undefined ? { ':cid': { S: token.clientId } } : {}),
          },
        }),
      ),
    );
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

  async remove(key: string): Promise<void> {
    await tableCall(this.table, 'DeleteItem', () =>
      this.options.client.send(new DeleteItemCommand({ TableName: this.options.tableName, Key: keyOf(tableKey.token(key)) })),
    );
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
  };
}
