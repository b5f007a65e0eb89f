/**
 * The fleet-wide cache tier: one DynamoDB table shared by every instance.
 *
 * Token item:   { pk, sealedToken, scope, expiresAt (epoch s), ttl (= expiresAt), fetchedAt (epoch ms),
 *                fingerprint, client, audience, scopes, lastUsedAt (epoch ms) }.
 *                The token is sealed (AES-256-GCM under a KMS data key, the item's key as associated
 *                data): read access to the table alone yields no usable token.
 * Lease item:   { pk: "lease#<key>", owner, leaseUntil (epoch ms), ttl }.
 * Back-off:     { pk: "backoff#<client key>", until (epoch ms), reason, ttl }.
 * Fetch count:  { pk: "quota#<client key>#<hour start ms>", fetches, ttl }.
 *
 * Writes are conditional, in the manner of Powertools' idempotency layer: a lease is taken only
 * if absent or expired, and a token only replaces one that expires sooner, so a stale item never
 * blocks a fresh one and a slow writer never clobbers a newer token.
 */
import {
  ConditionalCheckFailedException,
  DeleteItemCommand,
  GetItemCommand,
  PutItemCommand,
  ScanCommand,
  UpdateItemCommand,
  type AttributeValue,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import { StoreUnavailableError } from '../core/errors.js';
import type { Backoff, CachedToken, TokenRecord, TokenStore } from '../core/ports.js';
import { SealError, type TokenSealer } from '../core/sealing.js';

/** The table's partition key (string). */
export const PARTITION_KEY = 'pk';
/** The attribute DynamoDB TTL must be enabled on: epoch seconds. */
export const TTL_ATTRIBUTE = 'ttl';
const LEASE_PREFIX = 'lease#';
const BACKOFF_PREFIX = 'backoff#';
const QUOTA_PREFIX = 'quota#';
/** Abandoned lease items are garbage-collected by TTL this long after they lapse. */
const LEASE_GC_SECONDS = 3600;

export interface DynamoTokenStoreOptions {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  readonly sealer: TokenSealer;
  readonly now?: () => number;
}

export class DynamoTokenStore implements TokenStore {
  private readonly now: () => number;

  constructor(private readonly options: DynamoTokenStoreOptions) {
    this.now = options.now ?? Date.now;
  }

  async get(key: string): Promise<CachedToken | undefined> {
    const out = await this.call('GetItem', () =>
      this.options.client.send(
        new GetItemCommand({
          TableName: this.options.tableName,
          Key: { [PARTITION_KEY]: { S: key } },
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
    try {
      await this.options.client.send(
        new PutItemCommand({
          TableName: this.options.tableName,
          Item: {
            [PARTITION_KEY]: { S: token.key },
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
          },
          ConditionExpression: 'attribute_not_exists(#pk) OR #exp < :exp',
          ExpressionAttributeNames: { '#pk': PARTITION_KEY, '#exp': 'expiresAt' },
          ExpressionAttributeValues: { ':exp': { N: String(token.expiresAt) } },
        }),
      );
    } catch (error) {
      // A token that expires no sooner is already there: ours is still valid to serve.
      if (error instanceof ConditionalCheckFailedException) return;
      throw translate('PutItem', error);
    }
  }

  async acquireLease(key: string, owner: string, untilMs: number): Promise<boolean> {
    try {
      await this.options.client.send(
        new PutItemCommand({
          TableName: this.options.tableName,
          Item: {
            [PARTITION_KEY]: { S: LEASE_PREFIX + key },
            owner: { S: owner },
            leaseUntil: { N: String(untilMs) },
            [TTL_ATTRIBUTE]: { N: String(Math.ceil(untilMs / 1000) + LEASE_GC_SECONDS) },
          },
          ConditionExpression: 'attribute_not_exists(#pk) OR #until < :now',
          ExpressionAttributeNames: { '#pk': PARTITION_KEY, '#until': 'leaseUntil' },
          ExpressionAttributeValues: { ':now': { N: String(this.now()) } },
        }),
      );
      return true;
    } catch (error) {
      // Someone else holds the lease: not an error, the caller waits for their token.
      if (error instanceof ConditionalCheckFailedException) return false;
      throw translate('PutItem', error);
    }
  }

  async releaseLease(key: string, owner: string): Promise<void> {
    try {
      await this.options.client.send(
        new DeleteItemCommand({
          TableName: this.options.tableName,
          Key: { [PARTITION_KEY]: { S: LEASE_PREFIX + key } },
          ConditionExpression: '#owner = :owner',
          ExpressionAttributeNames: { '#owner': 'owner' },
          ExpressionAttributeValues: { ':owner': { S: owner } },
        }),
      );
    } catch (error) {
      // Our lease lapsed and someone else took it over: theirs to release.
      if (error instanceof ConditionalCheckFailedException) return;
      throw translate('DeleteItem', error);
    }
  }

  async touch(key: string, atMs: number): Promise<void> {
    try {
      await this.options.client.send(
        new UpdateItemCommand({
          TableName: this.options.tableName,
          Key: { [PARTITION_KEY]: { S: key } },
          UpdateExpression: 'SET #used = :at',
          // Only an existing token, and never backwards in time.
          ConditionExpression: 'attribute_exists(#pk) AND (attribute_not_exists(#used) OR #used < :at)',
          ExpressionAttributeNames: { '#pk': PARTITION_KEY, '#used': 'lastUsedAt' },
          ExpressionAttributeValues: { ':at': { N: String(atMs) } },
        }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return;
      throw translate('UpdateItem', error);
    }
  }

  async getBackoff(clientKey: string): Promise<Backoff | undefined> {
    const out = await this.call('GetItem', () =>
      this.options.client.send(
        new GetItemCommand({ TableName: this.options.tableName, Key: { [PARTITION_KEY]: { S: BACKOFF_PREFIX + clientKey } }, ConsistentRead: true }),
      ),
    );
    const until = Number(out.Item?.until?.N);
    return Number.isFinite(until) ? { until, reason: out.Item?.reason?.S ?? 'unknown' } : undefined;
  }

  async putBackoff(clientKey: string, backoff: Backoff): Promise<void> {
    try {
      await this.options.client.send(
        new PutItemCommand({
          TableName: this.options.tableName,
          Item: {
            [PARTITION_KEY]: { S: BACKOFF_PREFIX + clientKey },
            until: { N: String(backoff.until) },
            reason: { S: backoff.reason },
            [TTL_ATTRIBUTE]: { N: String(Math.ceil(backoff.until / 1000) + LEASE_GC_SECONDS) },
          },
          // Several instances may record one at once: the longest wins.
          ConditionExpression: 'attribute_not_exists(#pk) OR #until < :until',
          ExpressionAttributeNames: { '#pk': PARTITION_KEY, '#until': 'until' },
          ExpressionAttributeValues: { ':until': { N: String(backoff.until) } },
        }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return;
      throw translate('PutItem', error);
    }
  }

  async countFetch(clientKey: string, hourStartMs: number, cap: number): Promise<boolean> {
    try {
      await this.options.client.send(
        new UpdateItemCommand({
          TableName: this.options.tableName,
          Key: { [PARTITION_KEY]: { S: `${QUOTA_PREFIX}${clientKey}#${hourStartMs}` } },
          // Atomic across the fleet: the increment happens only while under the cap.
          UpdateExpression: 'ADD #n :one SET #ttl = :ttl',
          ConditionExpression: 'attribute_not_exists(#n) OR #n < :cap',
          ExpressionAttributeNames: { '#n': 'fetches', '#ttl': TTL_ATTRIBUTE },
          ExpressionAttributeValues: {
            ':one': { N: '1' },
            ':cap': { N: String(cap) },
            ':ttl': { N: String(Math.ceil(hourStartMs / 1000) + 2 * 3600) },
          },
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw translate('UpdateItem', error);
    }
  }

  async remove(key: string): Promise<void> {
    await this.call('DeleteItem', () =>
      this.options.client.send(new DeleteItemCommand({ TableName: this.options.tableName, Key: { [PARTITION_KEY]: { S: key } } })),
    );
  }

  async listTokens(): Promise<TokenRecord[]> {
    const tokens: TokenRecord[] = [];
    let startKey: Record<string, AttributeValue> | undefined;
    do {
      const page = await this.call('Scan', () =>
        this.options.client.send(
          new ScanCommand({
            TableName: this.options.tableName,
            // Token items only; the table holds one item per distinct (client, audience, scopes).
            FilterExpression: 'attribute_exists(sealedToken)',
            ConsistentRead: true,
            ...(startKey ? { ExclusiveStartKey: startKey } : {}),
          }),
        ),
      );
      for (const item of page.Items ?? []) {
        const key = item[PARTITION_KEY]?.S;
        const token = key === undefined ? undefined : itemToRecord(key, item);
        if (token !== undefined) tokens.push(token);
      }
      startKey = page.LastEvaluatedKey;
    } while (startKey !== undefined);
    return tokens;
  }

  private async call<T>(operation: string, send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (error) {
      throw translate(operation, error);
    }
  }
}

function translate(operation: string, error: unknown): StoreUnavailableError {
  const name = error instanceof Error ? error.name : 'Unknown';
  return new StoreUnavailableError(`DynamoDB ${operation} failed (${name})`, { cause: error });
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
  };
}
