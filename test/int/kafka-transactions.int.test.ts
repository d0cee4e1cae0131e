import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { committedOffset, createTopicsReady } from '../../lib/kafka/admin.js';
import { PartitionTransactions, TransactionFenced } from '../../lib/kafka/transactions.js';
import { eventually } from '../support/app.js';
import { readTopic } from '../support/kafka-read.js';
import { kafkaBrokers } from '../support/services.js';

/**
 * The worker's exactly-once step on a real broker: a batch's records and its offsets in one
 * transaction, a partition's previous owner fenced by its next one, aborted records invisible to
 * read_committed readers (every reader of `history.transitions` in the project).
 */
const kafka = new Kafka({ clientId: 'txn-test', brokers: kafkaBrokers().split(','), logLevel: logLevel.NOTHING });
const admin = kafka.admin();
/**
 * The group's committed offset of partition 0 once it is `want` (or what it is after 10 s): the
 * commit markers reach __consumer_offsets just after EndTxn answers (Kafka 3.9 shows the gap).
 */
async function committedSoon(group: string, topic: string, want: bigint): Promise<bigint | undefined> {
  let last: bigint | undefined;
  await eventually(async () => ((last = await committedOffset(admin, group, topic, 0)) === want ? true : undefined), 10_000, 'the committed offset').catch(
    () => {},
  );
  return last;
}
const only = (prefix: string) => (_k: string, v: string) => (v.startsWith(prefix) ? v : undefined);

describe('Kafka transactions (PartitionTransactions)', () => {
  let topic: string;
  let out: string;
  beforeAll(async () => {
    await admin.connect();
  });
  afterAll(async () => {
    await admin.disconnect();
  });
  const fresh = async () => {
    topic = `txn-in-${randomUUID().slice(0, 8)}`;
    out = `txn-out-${randomUUID().slice(0, 8)}`;
    await createTopicsReady(
      admin,
      [topic, out].map((t) => ({ topic: t, numPartitions: 1, replicationFactor: 1 })),
    );
  };

  it('commits the records and the group offset together', async () => {
    await fresh();
    const group = `g-${randomUUID().slice(0, 8)}`;
    const tx = new PartitionTransactions(kafka, { group, topic });
    try {
      await tx.publishAndCommit(
        0,
        [
          {
            topic: out,
            messages: [
              { key: 'p', value: 'one-a' },
              { key: 'p', value: 'one-b' },
            ],
          },
        ],
        '7',
      );
      expect(await committedSoon(group, topic, 7n)).toBe(7n);
      expect(await readTopic(out, only('one-'), (f) => f.length >= 2)).toEqual(['one-a', 'one-b']);
    } finally {
      await tx.close();
    }
  });

  it("fences the partition's previous owner: it can neither publish nor commit once the next one claimed it", async () => {
    await fresh();
    const group = `g-${randomUUID().slice(0, 8)}`;
    const zombie = new PartitionTransactions(kafka, { group, topic });
    const owner = new PartitionTransactions(kafka, { group, topic });
    try {
      expect(await zombie.claim(0)).toBe(true);
      expect(await zombie.claim(0)).toBe(false);
      expect(await owner.claim(0)).toBe(true);
      const late = zombie.publishAndCommit(0, [{ topic: out, messages: [{ key: 'p', value: 'fence-zombie' }] }], '100');
      await expect(late).rejects.toBeInstanceOf(TransactionFenced);
      await owner.publishAndCommit(0, [{ topic: out, messages: [{ key: 'p', value: 'fence-owner' }] }], '5');
      expect(await committedSoon(group, topic, 5n)).toBe(5n);
      expect(await readTopic(out, only('fence-'), (f) => f.includes('fence-owner'))).toEqual(['fence-owner']);
    } finally {
      await Promise.all([zombie.close(), owner.close()]);
    }
  });

  it('aborts the open transaction of an owner that died mid-way when the next one claims the partition', async () => {
    await fresh();
    const group = `g-${randomUUID().slice(0, 8)}`;
    const ids = new PartitionTransactions(kafka, { group, topic });
    // The dead owner: the same transactional id, records sent, never committed.
    const dead = kafka.producer({ transactionalId: ids.transactionalId(0), idempotent: true, maxInFlightRequests: 1 });
    await dead.connect();
    const txn = await dead.transaction();
    await txn.send({ topic: out, messages: [{ key: 'p', value: 'dead-1' }] });
    const next = new PartitionTransactions(kafka, { group, topic });
    try {
      await next.publishAndCommit(0, [{ topic: out, messages: [{ key: 'p', value: 'dead-after' }] }], '1');
      // A read_committed reader gets past the aborted record at once and never sees it.
      expect(await readTopic(out, only('dead-'), (f) => f.includes('dead-after'))).toEqual(['dead-after']);
    } finally {
      await next.close();
      await dead.disconnect().catch(() => {});
    }
  });
});
