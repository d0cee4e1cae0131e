import { TOPICS } from '../../contract/raw-event.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import type { FoldOptions } from '../../history/fold/fold.js';
import type { HistoryStore } from '../../history/store/store.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { activeNamespaceKey } from '../../history/worker/replay.js';
import { RedisHistoryStore } from '../../history/store/redis.js';
import type { Env } from '../../lib/config.js';
import { createKafka, ensureTopics, KafkaLogConsumer, KafkaLogProducer } from '../../lib/kafka.js';
import type { LogConsumer, LogProducer } from '../../lib/log.js';
import type { Logger } from '../../lib/logger.js';
import { checkEvictionPolicy, createRedis, hasRedis, RedisWatch } from '../../lib/redis.js';

/**
 * The one place that decides between the real stack (Kafka + Redis) and the embedded backends.
 * Both sides satisfy the same interfaces, so everything above is unaware of the choice.
 */
export interface Backends {
  mode: 'real' | 'embedded';
  /** The embedded mode's in-process log (tests and the replay read it); absent on the real stack. */
  log?: PartitionedLog;
  producer: LogProducer;
  /** A consumer-group member on `clicks.raw`; it reports failing batches to the logger given to openBackends. */
  rawConsumer(): LogConsumer;
  store: HistoryStore;
  /** The real stack's Redis connection and out-of-memory state, for /readyz and the metrics. */
  redis?: RedisWatch;
  close(): Promise<void>;
}

export async function openBackends(env: Env, fold: FoldOptions, logger: Logger): Promise<Backends> {
  if (!env.KAFKA_BROKERS !== !hasRedis(env)) {
    throw new Error('set both KAFKA_BROKERS and REDIS_URL (or REDIS_CLUSTER_NODES) for the real stack, or neither for the embedded mode');
  }
  if (!env.KAFKA_BROKERS || !hasRedis(env)) {
    const log = new PartitionedLog(env.KAFKA_PARTITIONS);
    const store = new MemoryHistoryStore(fold);
    return {
      mode: 'embedded',
      log,
      producer: log.producer(),
      rawConsumer: () => log.consumer(TOPICS.raw, undefined, { logger }),
      store,
      close: async () => {},
    };
  }

  // Keep retrying while Redis is away instead of failing commands: the worker must wait, not skip.
  const redis = createRedis(env);
  const watch = new RedisWatch(redis, logger.child({ component: 'redis' }));
  try {
    // Before anything else: a Redis that would evict histories is refused (worker, API, npm start).
    await checkEvictionPolicy(redis, logger);
  } catch (err) {
    redis.disconnect();
    throw err;
  }
  const kafka = createKafka(env.KAFKA_BROKERS, env.KAFKA_CLIENT_ID, logger);
  await ensureTopics(kafka, env.KAFKA_PARTITIONS, env.KAFKA_REPLICATION_FACTOR);
  const producer = new KafkaLogProducer(kafka, { ackTimeoutMs: env.INGEST_ACK_TIMEOUT_MS });
  await producer.connect();
  // A finished replay may have pointed the deployment at the namespace it built (npm run replay -- --switch).
  const active = await redis.get(activeNamespaceKey(env.REDIS_PREFIX));
  const { namespace, groupId } = active ? (JSON.parse(active) as { namespace: string; groupId: string }) : { namespace: env.REDIS_PREFIX, groupId: env.KAFKA_GROUP_ID };
  if (active) logger.info({ namespace, groupId }, 'using the namespace a replay switched to');
  const store = new RedisHistoryStore(redis, fold, namespace);
  const consumers: LogConsumer[] = [];
  return {
    mode: 'real',
    producer,
    rawConsumer: () => {
      const c = new KafkaLogConsumer(kafka, { groupId, topic: TOPICS.raw, sessionTimeoutMs: env.KAFKA_SESSION_TIMEOUT_MS, logger });
      consumers.push(c);
      return c;
    },
    store,
    redis: watch,
    close: async () => {
      for (const c of consumers) await c.stop();
      await producer.close();
      await store.close();
      redis.disconnect();
    },
  };
}
