import type { Kafka, Producer } from 'kafkajs';
import type { TopicMessages } from '../log.js';
import { crashPoint } from '../crash-points.js';
import { PRODUCER_CONFIG } from './producer.js';

export interface PartitionTransactionsOptions {
  group: string;
  topic: string;
  /**
   * The broker aborts a transaction left open this long (a member that died mid-transaction,
   * unless the partition's next owner fences it sooner). Readers of the topics it wrote to
   * (read_committed) wait for it, so it is short: a transaction opens only once the fold is durable.
   * Default 10 s.
   */
  timeoutMs?: number;
  /** Largest produce request within a transaction, key+value bytes. Default 512 KB. */
  maxRequestBytes?: number;
  /** The group's committed offset of a partition (the next record to read), undefined when none. */
  committed?: (partition: number) => Promise<bigint | undefined>;
}

/** The partition has another owner now: its transactional id was taken over (this producer is fenced). */
export class TransactionFenced extends Error {
  /** kafkajs rejoins the group on this type instead of retrying the fetch: the group says who owns what now. */
  readonly type = 'REBALANCE_IN_PROGRESS';
  constructor(partition: number, options?: { cause?: unknown }) {
    super(`the transactional producer of partition ${partition} was fenced: another member owns the partition now`, options);
    this.name = 'TransactionFenced';
  }
}

const FENCING = new Set(['INVALID_PRODUCER_EPOCH', 'PRODUCER_FENCED', 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED']);

function isFencing(err: unknown): boolean {
  let e = err as { type?: unknown; cause?: unknown; originalError?: unknown } | null | undefined;
  for (let depth = 0; e && depth < 5; depth++) {
    if (typeof e.type === 'string' && FENCING.has(e.type)) return true;
    e = (e.cause ?? e.originalError) as typeof e;
  }
  return false;
}

/**
 * Exactly-once publishing for a consumer group member: one transactional producer per owned
 * partition, with the transactional id `<group>.<topic>.<partition>`. Kafka (through 4.x, for
 * kafkajs's request versions) fences by transactional id: when the partition's next owner opens its
 * producer, the previous owner's open transaction is aborted and every later call of it fails. So a
 * batch's records and its offsets are committed together, by the one member that owns the
 * partition, or not at all.
 */
export class PartitionTransactions {
  private readonly producers = new Map<number, Promise<Producer>>();
  private readonly maxRequestBytes: number;

  constructor(
    private readonly kafka: Kafka,
    private readonly opts: PartitionTransactionsOptions,
  ) {
    this.maxRequestBytes = opts.maxRequestBytes ?? 512 * 1024;
  }

  transactionalId(partition: number): string {
    return `${this.opts.group}.${this.opts.topic}.${partition}`;
  }

  /**
   * Opens the partition's producer if this member has none: from then on the previous owner can
   * commit nothing. True when it was opened now (the caller then re-reads the committed offset:
   * a zombie may have committed just before it was fenced).
   */
  async claim(partition: number): Promise<boolean> {
    if (this.producers.has(partition)) {
      await this.producers.get(partition);
      return false;
    }
    const opening = (async () => {
      const producer = this.kafka.producer({
        ...PRODUCER_CONFIG,
        transactionalId: this.transactionalId(partition),
        transactionTimeout: this.opts.timeoutMs ?? 10_000,
        // A transaction begun right after a commit meets CONCURRENT_TRANSACTIONS until the commit
        // markers are written (a few ms): retried from 10 ms (Java's client: 20 ms), not from
        // PRODUCER_CONFIG's 100 ms, which the bench saw in every transaction's latency.
        retry: { retries: 8, initialRetryTime: 10, maxRetryTime: 2000 },
      });
      await producer.connect();
      try {
        // kafkajs takes the transactional id (InitProducerId: the fencing) at its first
        // transaction, not at connect(); an empty one ends without a request.
        await (await producer.transaction()).abort();
      } catch (err) {
        await producer.disconnect().catch(() => {});
        throw err;
      }
      return producer;
    })();
    this.producers.set(partition, opening);
    try {
      await opening;
    } catch (err) {
      this.producers.delete(partition);
      throw err;
    }
    return true;
  }

  /**
   * Writes `records` and commits the group's offset of `partition` to `nextOffset`, in one
   * transaction. On failure the transaction is aborted and the producer dropped (the next attempt
   * opens a new one); fencing is thrown as TransactionFenced.
   */
  async publishAndCommit(partition: number, records: TopicMessages[], nextOffset: string): Promise<void> {
    // A coordinator that is moving or still loading (the first transaction on a new broker) is
    // passing trouble: tried again at once in a new transaction, before the batch's own backoff.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.attempt(partition, records, nextOffset);
        return;
      } catch (err) {
        if (err instanceof TransactionFenced || (err as { retriable?: boolean }).retriable !== true || attempt >= 3) throw err;
      }
    }
  }

  private async attempt(partition: number, records: TopicMessages[], nextOffset: string): Promise<void> {
    if ((await this.claim(partition)) && this.opts.committed) {
      // A new producer: whatever transaction of this id came before is now committed or aborted
      // for good (InitProducerId waits for it). If one of them committed this batch (a commit whose
      // answer was lost, then retried), it is done: publishing it again would be a duplicate.
      const committed = await this.opts.committed(partition);
      if (committed !== undefined && committed >= BigInt(nextOffset)) return;
    }
    const producer = (await this.producers.get(partition))!;
    const txn = await producer.transaction();
    try {
      for (const request of this.requests(records)) await txn.sendBatch({ topicMessages: request, acks: -1 });
      await txn.sendOffsets({ consumerGroupId: this.opts.group, topics: [{ topic: this.opts.topic, partitions: [{ partition, offset: nextOffset }] }] });
      crashPoint('published');
      await txn.commit();
    } catch (err) {
      const fenced = isFencing(err);
      // After a failed abort the producer's state is unknown: a new one (the same id) takes over.
      const aborted =
        !fenced && txn.isActive()
          ? await txn.abort().then(
              () => true,
              () => false,
            )
          : !fenced;
      if (!aborted) await this.drop(partition);
      throw fenced ? new TransactionFenced(partition, { cause: err }) : err;
    }
  }

  /** Splits the records into produce requests under the broker's request size (messages keep their order). */
  private *requests(records: TopicMessages[]): Generator<TopicMessages[]> {
    let request: TopicMessages[] = [];
    let bytes = 0;
    for (const { topic, messages } of records) {
      let part: TopicMessages | undefined;
      for (const m of messages) {
        const size = m.key.length + m.value.length + 64;
        if (bytes > 0 && bytes + size > this.maxRequestBytes) {
          yield request;
          request = [];
          bytes = 0;
          part = undefined;
        }
        if (!part) request.push((part = { topic, messages: [] }));
        part.messages.push(m);
        bytes += size;
      }
    }
    if (request.length > 0) yield request;
  }

  /** Closes the producers of partitions this member no longer owns. */
  async keepOnly(owned: ReadonlySet<number>): Promise<void> {
    await Promise.all([...this.producers.keys()].filter((p) => !owned.has(p)).map((p) => this.drop(p)));
  }

  private async drop(partition: number): Promise<void> {
    const opening = this.producers.get(partition);
    this.producers.delete(partition);
    const producer = await opening?.catch(() => undefined);
    await producer?.disconnect().catch(() => {});
  }

  async close(): Promise<void> {
    await Promise.all([...this.producers.keys()].map((p) => this.drop(p)));
  }
}
