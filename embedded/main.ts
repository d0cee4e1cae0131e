import { Hono } from 'hono';
import { createBatchHandler } from '../history/worker.js';
import { createQueryApp } from '../history/query-api.js';
import { DEFAULT_SEEN_SIZE } from '../history/store.js';
import { compileTopicMap } from '../history/topic-map.js';
import { loadTopicMap } from '../history/topic-map-file.js';
import { createIngestApp } from '../ingest/app.js';
import { openBackends } from '../lib/backends.js';
import { parseEnv } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { clientIpResolver, closeServer, listen, onShutdown } from '../lib/serve.js';
import { createDemoShop } from './demo-shop.js';

/**
 * `npm start`: ingest, worker, query API and the demo shop in one process. With nothing set it runs
 * on the embedded log and store; with KAFKA_BROKERS and REDIS_URL it runs the same parts on the real stack.
 */
export async function main(): Promise<void> {
  const env = parseEnv();
  const logger = createLogger('clickfold', env.LOG_LEVEL);
  const topicMap = compileTopicMap(await loadTopicMap(env.TOPIC_MAP));
  const backends = await openBackends(env, { ladder: topicMap.ladder, quietMs: topicMap.quietMs, seenSize: DEFAULT_SEEN_SIZE }, logger);

  const app = new Hono();
  app.route('/', createIngestApp({
    producer: backends.producer,
    logger,
    maxBodyBytes: env.INGEST_MAX_BODY,
    retryAfterSeconds: env.INGEST_RETRY_AFTER_S,
    clientIp: clientIpResolver(env.TRUST_PROXY),
  }));
  app.route('/', createQueryApp({ store: backends.store, logger }));
  app.route('/', createDemoShop());

  const consumer = backends.rawConsumer();
  await consumer.run(createBatchHandler({ store: backends.store, topicMap, producer: backends.producer, logger }));
  const { server, port } = await listen(app, env.PORT, env.HOST);
  logger.info({ mode: backends.mode, url: `http://${env.HOST}:${port}/` }, `clickfold is running (${backends.mode} backends) on http://${env.HOST}:${port}/`);

  onShutdown(logger, async () => {
    await closeServer(server);
    await consumer.stop();
    await backends.close();
  });
}

await main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
