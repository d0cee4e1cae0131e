import { whenReady } from '../../lib/kafka/admin.js';
import { Kafka, logLevel } from 'kafkajs';
import { TOPICS } from '../../contract/raw-event.js';
import { ensureTopics } from '../../lib/kafka/client.js';
import { kafkaBrokers } from './services.js';

/**
 * Points a new consumer group at the current end of clicks.raw, so that it folds what is written
 * from now on (this test's records, and whatever runs beside it), not the whole history of the
 * run's shared broker, which other test files keep growing.
 */
export async function startGroupAtEnd(group: string, brokers: string = kafkaBrokers(), topic: string = TOPICS.raw): Promise<void> {
  const kafka = new Kafka({ clientId: 'group-setup', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  await ensureTopics(kafka, 3, 1);
  const admin = kafka.admin();
  await admin.connect();
  try {
    const ends = await whenReady(() => admin.fetchTopicOffsets(topic));
    await admin.setOffsets({ groupId: group, topic, partitions: ends.map((p) => ({ partition: p.partition, offset: p.high })) });
  } finally {
    await admin.disconnect();
  }
}
