import { randomUUID } from 'node:crypto';
import { Kafka, type KafkaMessage, logLevel } from 'kafkajs';
import { eventually } from './app.js';
import { kafkaBrokers } from './services.js';

/**
 * Reads a topic from the beginning with a fresh consumer group until `done(collected)` holds,
 * keeping the records `keep` selects; then waits `settleMs` more to catch any extra (duplicate) records.
 */
export async function readTopic<T>(
  topic: string,
  keep: (key: string, value: string) => T | undefined,
  done: (found: T[]) => boolean,
  { timeoutMs = 30_000, settleMs = 500, brokers = kafkaBrokers() } = {},
): Promise<T[]> {
  const kafka = new Kafka({ clientId: 'test-reader', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: `reader-${randomUUID()}`, maxWaitTimeInMs: 100 });
  const found: T[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const v = keep(message.key?.toString() ?? '', message.value?.toString() ?? '');
      if (v !== undefined) found.push(v);
    },
  });
  try {
    await eventually(async () => (done(found) ? true : undefined), timeoutMs, `records on ${topic}`);
    await new Promise((r) => setTimeout(r, settleMs));
  } finally {
    await consumer.disconnect();
  }
  return found;
}

/**
 * Reads `topics` from the beginning up to the ends they have now, handing every record to
 * `onMessage`. Where a partition ends is judged by the last offset of the batches kafkajs fetched,
 * which counts transaction markers: a topic the worker writes in transactions (`clicks.invalid`,
 * `history.transitions`) ends with a commit marker that no message stands for, so waiting for the
 * message at `end - 1` would wait forever.
 */
export async function readToEnd(
  topics: string[],
  onMessage: (topic: string, partition: number, message: KafkaMessage) => void,
  { brokers = kafkaBrokers(), timeoutMs = 120_000 } = {},
): Promise<void> {
  const kafka = new Kafka({ clientId: 'test-reader', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map<string, bigint>();
  try {
    for (const topic of topics) {
      for (const p of await admin.fetchTopicOffsets(topic)) if (BigInt(p.high) > BigInt(p.low)) ends.set(`${topic}/${p.partition}`, BigInt(p.high));
    }
  } finally {
    await admin.disconnect();
  }
  const consumer = kafka.consumer({ groupId: `reader-${randomUUID()}`, maxWaitTimeInMs: 100, maxBytes: 64 << 20 });
  const remaining = new Set(ends.keys());
  try {
    await consumer.connect();
    await consumer.subscribe({ topics, fromBeginning: true });
    const done = new Promise<void>((resolve) => {
      if (remaining.size === 0) return resolve();
      // Emitted for every batch, also one holding nothing but markers.
      consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
        const key = `${payload.topic}/${payload.partition}`;
        if (BigInt(payload.lastOffset) + 1n >= (ends.get(key) ?? 0n) && remaining.delete(key) && remaining.size === 0) resolve();
      });
    });
    await consumer.run({
      eachMessage: async ({ topic, partition, message }) => {
        if (BigInt(message.offset) < (ends.get(`${topic}/${partition}`) ?? 0n)) onMessage(topic, partition, message);
      },
    });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      done,
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`reading ${topics.join(', ')} to the end timed out; partitions left: ${[...remaining].join(', ')}`)),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
  } finally {
    await consumer.disconnect();
  }
}
