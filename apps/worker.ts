import { createWorkerHttpApp } from '../history/worker/http.js';
import { createWorkerMetrics } from '../history/worker/metrics.js';
import { compileTopicMap, foldOptionsOf } from '../history/fold/topic-map.js';
import { loadTopicMap } from '../history/fold/topic-map-file.js';
import { hasRedis } from '../lib/redis.js';
import { closeServer, listen } from '../lib/serve.js';
import { openBackends } from './shared/backends.js';
import { runProcess } from './shared/process.js';
import { createWorker } from './shared/worker.js';
import { crmJobOptions, openAutomation } from './shared/automation.js';

/**
 * The history worker as a process of its own (the real stack): one member of the consumer group on
 * `clicks.raw`. Run as many as there are partitions to share; Kafka balances them. Serves
 * /healthz, /readyz and /metrics on WORKER_PORT.
 */
await runProcess('worker', async (env, logger) => {
  if (!env.KAFKA_BROKERS || !hasRedis(env))
    throw new Error('the worker needs KAFKA_BROKERS and REDIS_URL or REDIS_CLUSTER_NODES (npm start runs everything embedded)');
  const topicMap = compileTopicMap(await loadTopicMap(env.TOPIC_MAP));
  // Refuses a Redis whose eviction policy could drop histories (lib/redis.ts checkEvictionPolicy).
  const backends = await openBackends(env, foldOptionsOf(topicMap), logger);
  const metrics = createWorkerMetrics({ process: true });
  const { registry } = await openAutomation(env, topicMap, backends, logger);
  const worker = createWorker(backends, {
    topicMap,
    logger,
    metrics,
    registry,
    crm: crmJobOptions(env),
  });

  // Probes first, so that /healthz answers and /readyz says "not running" while the group is joined.
  const { server, port } = await listen(createWorkerHttpApp({ metrics, readiness: worker.readiness, refresh: worker.refresh }), env.WORKER_PORT, env.HOST);
  logger.info({ port, url: `http://${env.HOST}:${port}` }, 'worker probes are listening (/healthz, /readyz, /metrics)');

  await worker.start();
  logger.info({ pid: process.pid, port }, 'worker is folding clicks.raw');
  // Stopping the consumer lets the batch in flight finish and commit; nothing is committed past Redis.
  // The probes drain meanwhile: a scrape in flight is answered, an idle or stuck connection does not hold the exit.
  return async () => {
    await Promise.all([
      closeServer(server, { graceMs: env.INGEST_SHUTDOWN_GRACE_MS, logger }),
      (async () => {
        await worker.stop();
        await registry.close();
        await backends.close();
      })(),
    ]);
  };
});
