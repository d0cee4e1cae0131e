import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll } from 'vitest';
import { openKafkaLog } from '../../lib/kafka/log.js';
import { createLogger } from '../../lib/logger.js';
import { logContract } from '../support/log-contract.js';
import { kafkaBrokers } from '../support/services.js';

/** The log port on real Kafka: the suite the in-process log passes in test/unit/log-port.unit.test.ts. */
const admin = new Kafka({ clientId: 'log-port-test', brokers: kafkaBrokers().split(','), logLevel: logLevel.NOTHING }).admin();
let connected: Promise<void> | undefined;
afterAll(async () => {
  if (connected) await admin.disconnect();
});

logContract(
  'Kafka',
  async () => {
    connected ??= admin.connect();
    await connected;
    const topic = `log-port-${randomUUID().slice(0, 8)}`;
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 2, replicationFactor: 1 }] });
    const log = await openKafkaLog({
      brokers: kafkaBrokers(),
      clientId: 'log-port-test',
      logger: createLogger('test', 'silent'),
      producer: { ackTimeoutMs: 5000 },
      consumers: { sessionTimeoutMs: 10_000 },
    });
    return { log, topic, cleanup: () => admin.deleteTopics({ topics: [topic] }).catch(() => {}) };
  },
  { waitMs: 30_000 },
);
