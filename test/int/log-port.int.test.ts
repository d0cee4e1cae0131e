import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll } from 'vitest';
import { createTopicsReady } from '../../lib/kafka/admin.js';
import { openKafkaLog } from '../../lib/kafka/log.js';
import type { ProducerClient } from '../../lib/kafka/producer.js';
import { createLogger } from '../../lib/logger.js';
import { logContract } from '../support/log-contract.js';
import { kafkaBrokers } from '../support/services.js';

/** The log port on real Kafka: the suite the in-process log passes in test/unit/log-port.unit.test.ts. */
const admin = new Kafka({ clientId: 'log-port-test', brokers: kafkaBrokers().split(','), logLevel: logLevel.NOTHING }).admin();
let connected: Promise<void> | undefined;
afterAll(async () => {
  if (connected) await admin.disconnect();
});

/** `client`: the producer's (KAFKA_PRODUCER); consumers are kafkajs either way. */
async function make(client: ProducerClient = 'kafkajs') {
  connected ??= admin.connect();
  await connected;
  const topic = `log-port-${randomUUID().slice(0, 8)}`;
  const out = `${topic}-out`;
  await createTopicsReady(
    admin,
    [topic, out].map((t) => ({ topic: t, numPartitions: 2, replicationFactor: 1 })),
  );
  const log = await openKafkaLog({
    brokers: kafkaBrokers(),
    clientId: 'log-port-test',
    logger: createLogger('test', 'silent'),
    producer: { ackTimeoutMs: 5000, client },
    consumers: { sessionTimeoutMs: 10_000 },
  });
  return { log, topic, out, cleanup: () => admin.deleteTopics({ topics: [topic, out] }).catch(() => {}) };
}

logContract('Kafka', () => make(), { waitMs: 30_000 });
// The worker's consumer: publishAndCommit in one transaction per batch.
logContract('Kafka, transactional', () => make(), { waitMs: 30_000, consumer: { transactional: true } });
// The same suite with @platformatic/kafka producing (KAFKA_PRODUCER=platformatic): sends and publishAndCommit go through it.
logContract('Kafka, platformatic producer', () => make('platformatic'), { waitMs: 30_000 });
