import { createBatchHandler } from './worker.js';
import { DEFAULT_SEEN_SIZE } from './store.js';
import { compileTopicMap } from './topic-map.js';
import { loadTopicMap } from './topic-map-file.js';
import { openBackends } from '../lib/backends.js';
import { parseEnv } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { hasRedis } from '../lib/redis.js';
import { onShutdown } from '../lib/serve.js';

/**
 * The history worker as a process of its own (the real stack): one member of the consumer group on
 * `clicks.raw`. Run as many as there are partitions to share; Kafka balances them.
 */
try {
  const env = parseEnv();
  const logger = createLogger('worker', env.LOG_LEVEL);
  if (!env.KAFKA_BROKERS || !hasRedis(env)) throw new Error('the worker needs KAFKA_BROKERS and REDIS_URL or REDIS_CLUSTER_NODES (npm start runs everything embedded)');
  const topicMap = compileTopicMap(await loadTopicMap(env.TOPIC_MAP));
  const backends = await openBackends(env, { ladder: topicMap.ladder, quietMs: topicMap.quietMs, seenSize: DEFAULT_SEEN_SIZE }, logger);
  const consumer = backends.rawConsumer();
  await consumer.run(createBatchHandler({ store: backends.store, topicMap, producer: backends.producer, logger }));
  logger.info({ pid: process.pid }, 'worker is folding clicks.raw');
  // Stopping the consumer lets the batch in flight finish and commit; nothing is committed past Redis.
  onShutdown(logger, async () => {
    await consumer.stop();
    await backends.close();
  });
} catch (err) {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
}
