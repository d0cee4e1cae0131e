import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
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
