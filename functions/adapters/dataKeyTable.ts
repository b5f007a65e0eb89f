/**
 * The sealer's data keys as the token table stores them: the one module that reads and writes
 * their items and knows their attributes (tokenTable.ts spells their keys; kmsTokenSealer.ts
 * decides what goes in them and when). Apart from the sealer so that its DynamoDB side (the
 * attributes, the consistent reads, the conditions of a publish) is not mixed in with the
 * cryptography and KMS.
 *
 * Items (their keys are tokenTable.ts's):
 *   Data key:  { blob (B: KMS ciphertext of the key), createdAt (epoch ms), ttl }, by id (a digest
 *              of the blob, {@link dataKeyIdOf}): written before any pointer names it, read by id
 *              (`open`), deleted by TTL a retention period after the key's last seal.
 *   Pointer:   { dataKeyId, blob, createdAt }: the key to seal with now.
 *
 * The pointer is only ever replaced by a conditional write: in place of a missing or stale one,
 * or of a defective one matched exactly as it was read (a pointer changed since is left alone),
 * so of several instances rotating or repairing at once one wins and the others read its key.
 * Every read is strongly consistent: a key is read back just after another instance wrote it.
 */
import { createHash } from 'node:crypto';
import { GetItemCommand, PutItemCommand, type AttributeValue, type PutItemCommandInput } from '@aws-sdk/client-dynamodb';
import { PARTITION_KEY, TTL_ATTRIBUTE, conditionalWrite, keyOf, tableCall, tableKey, type CallOptions, type Item, type TableRef } from './tokenTable.js';

/** Length of a data key id: 96 bits of its blob's SHA-256, plenty to name a handful of keys. */
export const DATA_KEY_ID_LENGTH = 16;
/**
 * How long a data key stays readable after it was last used to seal: at least the longest token
 * lifetime, so no token outlives the key that opens it. Auth0 access tokens default to 24 h.
 */
const DATA_KEY_RETENTION_MS = 7 * 24 * 3600 * 1000;

/** Short, public name of a data key, its item's id: a digest of its KMS ciphertext, never of the key. */
export function dataKeyIdOf(blob: Uint8Array): string {
  return createHash('sha256').update(blob).digest('base64url').slice(0, DATA_KEY_ID_LENGTH);
}

/** A data key as stored (never the key itself): also what the pointer records of the key it names. */
export interface StoredDataKey {
  readonly id: string;
  /** the key's KMS ciphertext */
  readonly blob: Uint8Array;
  /** epoch ms, as the instance that generated it recorded */
  readonly createdAt: number;
}

/** The pointer item as read. */
export interface PointerRead {
  /** exactly as read: what a repair replaces ({@link PublishCondition}) */
  readonly item: Item;
  /** what it says, or `undefined` when it does not parse (never unwrap a half-read pointer: it is repaired) */
  readonly pointer: StoredDataKey | undefined;
  /** the data key it names, parsed or not (key ids are digests of wrapped keys: public names, for logs) */
  readonly dataKeyId: string | undefined;
}

/**
 * Which pointer a publish may replace: none, or one created at or before `staleBefore` (epoch
 * ms); or exactly the pointer `replacing` read, and nothing it has since become.
 */
export type PublishCondition = { readonly staleBefore: number } | { readonly replacing: PointerRead };

type Condition = Pick<PutItemCommandInput, 'ConditionExpression' | 'ExpressionAttributeNames' | 'ExpressionAttributeValues'>;

/** The pointer's attributes a reader looks at. */
const POINTER_ATTRIBUTES = ['dataKeyId', 'blob', 'createdAt'] as const;

/** The data key items and the pointer item of one table. */
export class DataKeyTable {
  constructor(private readonly table: TableRef) {}

  /** The pointer, or `undefined` when the table holds none. */
  async readPointer(): Promise<PointerRead | undefined> {
    const item = await this.getItem(tableKey.dataKeyPointer());
    if (item === undefined) return undefined;
    return { item, pointer: itemToPointer(item), dataKeyId: item.dataKeyId?.S };
  }

  /** The blob of data key `id`, or `undefined` when the table holds none (expired, or never published). */
  async readBlob(id: string): Promise<Uint8Array | undefined> {
    // Consistent: the item was written just before the first value sealed under it may be read.
    const item = await this.getItem(tableKey.dataKey(id));
    return item?.blob?.B;
  }

  /**
   * Store `key`'s own item, which the sealer seals under until `sealsUntilMs` (epoch ms): TTL
   * deletes it once every token sealed under it has expired.
   */
  async putDataKey(key: StoredDataKey, sealsUntilMs: number): Promise<void> {
    await tableCall(this.table, 'PutItem', (callOptions) =>
      this.putItem(
        {
          ...keyOf(tableKey.dataKey(key.id)),
          blob: { B: key.blob },
          createdAt: { N: String(key.createdAt) },
          [TTL_ATTRIBUTE]: { N: String(Math.ceil((sealsUntilMs + DATA_KEY_RETENTION_MS) / 1000)) },
        },
        {},
        callOptions,
      ),
    );
  }

  /** Point at `key`, if `condition` holds: true when published, false when another pointer stands. */
  publishPointer(key: StoredDataKey, condition: PublishCondition): Promise<boolean> {
    const expression: Condition =
      'replacing' in condition
        ? sameAs(condition.replacing.item)
        : {
            ConditionExpression: 'attribute_not_exists(#pk) OR #createdAt <= :staleBefore',
            ExpressionAttributeNames: { '#pk': PARTITION_KEY, '#createdAt': 'createdAt' },
            ExpressionAttributeValues: { ':staleBefore': { N: String(condition.staleBefore) } },
          };
    return conditionalWrite(this.table, 'PutItem', (callOptions) =>
      this.putItem(
        {
          ...keyOf(tableKey.dataKeyPointer()),
          dataKeyId: { S: key.id },
          blob: { B: key.blob },
          createdAt: { N: String(key.createdAt) },
        },
        expression,
        callOptions,
      ),
    );
  }

  private getItem(pk: string): Promise<Item | undefined> {
    return tableCall(this.table, 'GetItem', async (callOptions) => {
      const out = await this.table.client.send(
        new GetItemCommand({ TableName: this.table.tableName, Key: keyOf(pk), ConsistentRead: true }),
        callOptions,
      );
      return out.Item;
    });
  }

  private putItem(item: Item, condition: Condition, callOptions: CallOptions): Promise<unknown> {
    return this.table.client.send(new PutItemCommand({ TableName: this.table.tableName, Item: item, ...condition }), callOptions);
  }
}

/** The pointer's attributes, or `undefined` when it does not parse. */
function itemToPointer(item: Item): StoredDataKey | undefined {
  const id = item.dataKeyId?.S;
  const blob = item.blob?.B;
  const createdAt = Number(item.createdAt?.N);
  if (id === undefined || blob === undefined || !Number.isFinite(createdAt)) return undefined;
  return { id, blob, createdAt };
}

/**
 * A condition that holds only while the pointer is still `item` as read: each attribute a reader
 * looks at equal to what was read, or still absent. A pointer changed since (another instance's
 * repair) fails it, so two repairs converge on one key.
 */
function sameAs(item: Item): Condition {
  const names: Record<string, string> = { '#pk': PARTITION_KEY };
  const values: Record<string, AttributeValue> = {};
  const clauses = ['attribute_exists(#pk)'];
  for (const [i, attribute] of POINTER_ATTRIBUTES.entries()) {
    names[`#a${i}`] = attribute;
    const read = item[attribute];
    if (read === undefined) {
      clauses.push(`attribute_not_exists(#a${i})`);
    } else {
      values[`:a${i}`] = read;
      clauses.push(`#a${i} = :a${i}`);
    }
  }
  return {
    ConditionExpression: clauses.join(' AND '),
    ExpressionAttributeNames: names,
    ...(Object.keys(values).length > 0 ? { ExpressionAttributeValues: values } : {}),
  };
}
