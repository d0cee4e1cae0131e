import { Hono } from 'hono';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { registerLoopDelay } from '../lib/loop-delay.js';
import { checkApiAccess } from '../history/query/auth.js';
import { queryAppFromEnv } from './shared/query.js';
import { compileTopicMap, foldOptionsOf } from '../history/fold/topic-map.js';
import { loadTopicMap } from '../history/fold/topic-map-file.js';
import { LiveFeed } from '../history/transitions/live-feed.js';
import { followTransitions } from '../history/transitions/log.js';
import { createWebhookMetrics } from '../history/transitions/webhooks.js';
import { hasRedis } from '../lib/redis.js';
import { closeServer, listen } from '../lib/serve.js';
import { openBackends } from './shared/backends.js';
import { runProcess } from './shared/process.js';
import { startWebhooksFromEnv } from './shared/webhooks.js';
import { openAutomation } from './shared/automation.js';

/**
 * The query API and dashboard as a process of their own (the real stack): `npx tsx apps/api.ts`.
 * Reads Redis (REDIS_URL or REDIS_CLUSTER_NODES); its live feed reads `history.transitions` through
 * a consumer group of its own per process (deleted on stop); with WEBHOOK_URLS it also delivers the
 * webhooks (groups shared by every API process, so each transition goes out once).
 * Refuses to start without API_KEYS.
 */
await runProcess('api', async (env, logger) => {
  if (!env.KAFKA_BROKERS || !hasRedis(env)) {
    throw new Error('the query API process needs KAFKA_BROKERS and REDIS_URL (or REDIS_CLUSTER_NODES); `npm start` runs everything embedded');
  }
  checkApiAccess(env, 'real');
  const topicMap = compileTopicMap(await loadTopicMap(env.TOPIC_MAP));
  const backends = await openBackends(env, foldOptionsOf(topicMap), logger);
  const feed = new LiveFeed();
  const metrics = new Registry();
  collectDefaultMetrics({ register: metrics });
  registerLoopDelay(metrics);
  const live = await followTransitions(backends.logPort, feed, logger, env.KAFKA_GROUP_ID);
  const webhooks = await startWebhooksFromEnv(env, { backends, logger, metrics: createWebhookMetrics(metrics) });

  // The API writes definitions and runs their backfills; the workers apply them (each watches the registry).
  const { stallRules, registry } = await openAutomation(env, topicMap, backends, logger);
  // Not folding here, but the store's erase takes people out of the stalled sets of the rules in force.
  const watch = await registry.watch(backends.store, stallRules);
  const app = new Hono();
  app.get('/healthz', (c) => c.json({ ok: true }));
  app.get('/metrics', async (c) => c.body(await metrics.metrics(), 200, { 'content-type': metrics.contentType }));
  app.route('/', queryAppFromEnv(env, { store: backends.store, logger, feed, registry, stallRules }));
  const { server, port } = await listen(app, env.PORT, env.HOST);
  const url = `http://${env.HOST}:${port}`;
  logger.info({ port, url, dashboard: `${url}/dashboard`, webhooks: env.WEBHOOK_URLS.length }, 'query API is listening');

  return async () => {
    feed.close();
    await closeServer(server, { graceMs: env.INGEST_SHUTDOWN_GRACE_MS, logger });
    await live.stop();
    await webhooks.stop();
    await watch.stop();
    await registry.close();
    await backends.close();
  };
});
