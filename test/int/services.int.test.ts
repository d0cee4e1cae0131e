/**
 * The project's own service scripts give tests a REAL Kafka broker and a REAL
 * Redis: kafkajs and ioredis talk to them, and a broker survives stop/start
 * with its address and data.
 */
import { createTopicsReady } from '../../lib/kafka/admin.js';
import { randomUUID } from 'node:crypto';
import { Kafka, Partitioners, logLevel } from 'kafkajs';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { KafkaBroker } from '../../services/kafka.js';
import { RedisServer } from '../../services/redis.js';
import { kafkaBrokers, redisUrl } from '../support/services.js';

const quietKafka = (brokers: string) => new Kafka({ clientId: 'services-int-test', brokers: brokers.split(','), logLevel: logLevel.NOTHING });

describe('shared services from global-setup', () => {
  it('Kafka: idempotent producer (acks -1) to a new topic, read back by a consumer group', async () => {
    const kafka = quietKafka(kafkaBrokers());
    const topic = `services-int-${randomUUID()}`;
    const admin = kafka.admin();
    await admin.connect();
    try {
      expect(await createTopicsReady(admin, [{ topic, numPartitions: 3, replicationFactor: 1 }])).toBe(true);
    } finally {
      await admin.disconnect();
    }

    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    const value = `hello ${randomUUID()}`;
    try {
      const meta = await producer.send({ topic, acks: -1, messages: [{ key: 'person-1', value }] });
      expect(meta[0]?.errorCode).toBe(0);
    } finally {
      await producer.disconnect();
    }

    const consumer = kafka.consumer({ groupId: `services-int-${randomUUID()}` });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic, fromBeginning: true });
      const got = await new Promise<{ key: string; value: string }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no message consumed within 30s')), 30_000);
        void consumer
          .run({
            eachMessage: async ({ message }) => {
              clearTimeout(timer);
              resolve({ key: message.key?.toString() ?? '', value: message.value?.toString() ?? '' });
            },
          })
          .catch(reject);
      });
      expect(got).toEqual({ key: 'person-1', value });
    } finally {
      await consumer.disconnect();
    }
  });

  it('Redis: PING, SET, GET', async () => {
    const redis = new Redis(redisUrl(), { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
    try {
      expect(await redis.ping()).toBe('PONG');
      const key = `services-int:${randomUUID()}`;
      expect(await redis.set(key, 'v1', 'EX', 60)).toBe('OK');
      expect(await redis.get(key)).toBe('v1');
    } finally {
      redis.disconnect();
    }
  });
});

describe('service lifecycle', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterAll(async () => {
    await Promise.allSettled(cleanup.map((f) => f()));
  });

  it('KafkaBroker: stop() then start() keeps the address and the data', async () => {
    const broker = await KafkaBroker.start({ partitions: 2 });
    cleanup.push(() => broker.destroy());
    const address = broker.brokers;
    const kafka = quietKafka(address);
    const topic = `restart-${randomUUID()}`;

    const admin = kafka.admin();
    await admin.connect();
    await createTopicsReady(admin, [{ topic, numPartitions: 2, replicationFactor: 1 }]);
    await admin.disconnect();

    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    await producer.send({ topic, acks: -1, messages: [{ key: 'k', value: 'before-restart' }] });
    await producer.disconnect();

    await broker.stop();
    expect(broker.running).toBe(false);
    await broker.start();
    expect(broker.running).toBe(true);
    expect(broker.brokers).toBe(address);

    const admin2 = kafka.admin();
    await admin2.connect();
    try {
      expect(await admin2.listTopics()).toContain(topic);
      const offsets = await admin2.fetchTopicOffsets(topic);
      const total = offsets.reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
      expect(total).toBe(1);
    } finally {
      await admin2.disconnect();
    }
  });

  it('RedisServer: stop() then start() on the same port; destroy() frees it', async () => {
    const server = await RedisServer.start();
    cleanup.push(() => server.destroy());
    const url = server.url;
    await server.stop();
    expect(server.running).toBe(false);
    await server.start();
    expect(server.url).toBe(url);
    const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
    try {
      expect(await redis.ping()).toBe('PONG');
    } finally {
      redis.disconnect();
    }
    await server.destroy();
    expect(server.running).toBe(false);
  });
});
