import { closeProbeServer, createWorkerHttpApp, workerReadiness } from '../history/worker/http.js';
import { createWorkerMetrics, observeBatches, pollLag } from '../history/worker/metrics.js';
import { createBatchHandler } from '../history/worker/batch.js';
import { compileTopicMap, foldOptionsOf } from '../history/fold/topic-map.js';
import { loadTopicMap } from '../history/fold/topic-map-file.js';
import { openBackends } from './shared/backends.js';
import { parseEnv } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { hasRedis } from '../lib/redis.js';
import { listen, onShutdown } from '../lib/serve.js';

/**
 * The history worker as a process of its own (the real stack): one member of the consumer group on
 * `clicks.raw`. Run as many as there are partitions to share; Kafka balances them. Serves
 * /healthz, /readyz and /metrics on WORKER_PORT.
 */
try {
  const env = parseEnv();
  const logger = createLogger('worker', env.LOG_LEVEL);
  if (!env.KAFKA_BROKERS || !hasRedis(env)) throw new Error('the worker needs KAFKA_BROKERS and REDIS_URL or REDIS_CLUSTER_NODES (npm start runs everything embedded)');
  const topicMap = compileTopicMap(await loadTopicMap(env.TOPIC_MAP));
  // Refuses a Redis whose eviction policy could drop histories (lib/redis.ts checkEvictionPolicy).
  const backends = await openBackends(env, foldOptionsOf(topicMap), logger);
  const metrics = createWorkerMetrics({ process: true });
  backends.redis?.onError((kind) => metrics.redisErrors.inc({ kind }));
  const consumer = backends.rawConsumer();
  let stopping = false;
  let lag: { stop(): void; poll(): Promise<void> } | undefined;

  // Probes first, so that /healthz answers and /readyz says "not running" while the group is joined.
  const http = createWorkerHttpApp({
    metrics,
    readiness: () => workerReadiness({ consumer, redis: backends.redis, stopping: () => stopping }),
    refresh: async () => lag?.poll(),
  });
  const { server, port } = await listen(http, env.WORKER_PORT, env.HOST);
  logger.info({ port, url: `http://${env.HOST}:${port}` }, 'worker probes are listening (/healthz, /readyz, /metrics)');

  await consumer.run(observeBatches(createBatchHandler({ store: backends.store, topicMap, producer: backends.producer, logger, metrics }), metrics, backends.redis));
  lag = pollLag(consumer, metrics, { logger });
  logger.info({ pid: process.pid, port }, 'worker is folding clicks.raw');
  // Stopping the consumer lets the batch in flight finish and commit; nothing is committed past Redis.
  onShutdown(logger, async () => {
    stopping = true;
    lag?.stop();
    await consumer.stop();
    await backends.close();
    await closeProbeServer(server);
  });
} catch (err) {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
}
