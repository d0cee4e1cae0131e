import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { TOPICS } from '../../contract/raw-event.js';
import type { Transition } from '../../contract/transition.js';
import { RedisHistoryStore } from '../../history/store/redis.js';
import type { HistoryStore } from '../../history/store/store.js';
import { compileTopicMap, DEFAULT_TOPIC_MAP } from '../../history/fold/topic-map.js';
import { createBatchHandler } from '../../history/worker/batch.js';
import { createKafka, ensureTopics } from '../../lib/kafka/client.js';
import { KafkaLogConsumer } from '../../lib/kafka/consumer.js';
import { KafkaLogProducer } from '../../lib/kafka/producer.js';
import { createLogger } from '../../lib/logger.js';
import { eventually } from '../support/app.js';
import { readTopic } from '../support/kafka-read.js';
import { kafkaBrokers, redisUrl } from '../support/services.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';
import { rawPage } from '../support/raw-records.js';

describe('worker on real Kafka and Redis: a crash before the commit', () => {
  const redis = new Redis(redisUrl());
  const logger = createLogger('test', 'silent');
  const kafka = createKafka(kafkaBrokers(), 'redelivery-test', logger);
  afterAll(() => redis.disconnect());

  it('re-folds the redelivered records without counting them twice, and publishes each transition once', async () => {
    await ensureTopics(kafka, 3, 1);
    const person = `p-${randomUUID()}`;
    const now = Date.now();
    const raw = (i: number, url: string) => rawPage(person, i, url, now);
    const events = [raw(1, '/products/sku-5'), raw(2, '/products/sku-5/specs'), raw(3, '/products/sku-5'), raw(4, '/checkout/sku-5')];
    const producer = new Kafka({ brokers: kafkaBrokers().split(','), logLevel: logLevel.NOTHING }).producer({
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    await producer.connect();
    await producer.send({ topic: TOPICS.raw, acks: -1, messages: events.map((e) => ({ key: person, value: JSON.stringify(e) })) });
    await producer.disconnect();

    const real = new RedisHistoryStore(redis, FOLD_OPTIONS, `redeliver-${randomUUID().slice(0, 8)}:`);
    let crashes = 0;
    // The first batch that holds our person is folded into Redis, then the worker "dies" before
    // publishing and before committing: the next fold of those records is a redelivery.
    const crashing: HistoryStore = Object.assign(Object.create(real) as HistoryStore, {
      foldBatch: async (partition: string, records: Parameters<HistoryStore['foldBatch']>[1]) => {
        const outcome = await real.foldBatch(partition, records);
        if (crashes === 0 && records.some((r) => r.person === person)) {
          crashes++;
          throw new Error('simulated crash after the Redis write');
        }
        return outcome;
      },
    });
    const out = new KafkaLogProducer(kafka, { ackTimeoutMs: 5000 });
    await out.connect();
    const consumer = new KafkaLogConsumer(kafka, { group: `redeliver-${randomUUID()}`, topic: TOPICS.raw });
    await consumer.run(createBatchHandler({ store: crashing, topicMap: compileTopicMap(DEFAULT_TOPIC_MAP), producer: out, logger }));
    try {
      const view = await eventually(
        async () => {
          const p = await real.getPerson(person);
          return crashes === 1 && p?.dialogues[0]?.stage === 'purchase' ? p : undefined;
        },
        60_000,
        'the fold after the crash',
      );
      const transitions = await readTopic(
        TOPICS.transitions,
        (_k, v) => {
          const t = JSON.parse(v) as Transition;
          return t.person === person ? t : undefined;
        },
        (f) => f.length >= 3,
        { settleMs: 1500 },
      );
      expect(crashes).toBe(1);
      expect(view.dialogues[0]!.counts).toEqual({ intro: 2, detail: 1, purchase: 1 });
      expect(transitions.map((t) => `${t.from}>${t.to}`)).toEqual(['null>intro', 'intro>detail', 'detail>purchase']);
    } finally {
      await consumer.stop();
      await out.close();
    }
  });
});
