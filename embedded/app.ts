import type { ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import type { Transition } from '../contract/transition.js';
import { apiKeysFromEnv } from '../history/api-auth.js';
import { LiveFeed } from '../history/live-feed.js';
import { createQueryApp } from '../history/query-api.js';
import { DEFAULT_SEEN_SIZE } from '../history/store.js';
import { compileTopicMap, type TopicMapConfig } from '../history/topic-map.js';
import { embeddedTransitionLog, kafkaTransitionLog } from '../history/transition-log.js';
import { startWebhooks, type RunningWebhooks } from '../history/webhooks.js';
import { createBatchHandler } from '../history/worker.js';
import { createIngestApp } from '../ingest/app.js';
import { createIngestMetrics } from '../ingest/metrics.js';
import { compileSites, loadSites } from '../ingest/sites.js';
import { openBackends, type Backends } from '../lib/backends.js';
import type { Env } from '../lib/config.js';
import { createKafka } from '../lib/kafka.js';
import type { LogConsumer } from '../lib/log.js';
import type { Logger } from '../lib/logger.js';
import { clientIpResolver, closeServer, listen } from '../lib/serve.js';
import { createDemoShop } from './demo-shop.js';

export interface RunningApp {
  port: number;
  /** Live transitions, as the worker publishes them. */
  feed: LiveFeed;
  url: string;
  backends: Backends;
  app: Hono;
  /** Stops accepting requests, then stops the worker (after its batch in flight), then the backends. */
  stop(): Promise<void>;
}

export interface AppOptions {
  onTransitions?: (t: Transition[]) => void;
}

/**
 * The all-in-one process: ingest, worker, query API and demo shop on one port. Used by `npm start`
 * and by the end-to-end tests, on whichever backends the environment selects.
 */
export async function startApp(env: Env, topicMapConfig: TopicMapConfig, logger: Logger, opts: AppOptions = {}): Promise<RunningApp> {
  const topicMap = compileTopicMap(topicMapConfig);
  const sites = compileSites(await loadSites(env.INGEST_SITES));
  const backends = await openBackends(env, { ladder: topicMap.ladder, quietMs: topicMap.quietMs, seenSize: DEFAULT_SEEN_SIZE }, logger);

  const app = new Hono();
  app.route(
    '/',
    createIngestApp({
      producer: backends.producer,
      logger,
      maxBodyBytes: env.INGEST_MAX_BODY,
      retryAfterSeconds: env.INGEST_RETRY_AFTER_S,
      clientIp: clientIpResolver(env.TRUST_PROXY),
      sites,
      linkSecret: env.INGEST_LINK_SECRET,
      batchMaxBodyBytes: env.INGEST_BATCH_MAX_BODY,
      metrics: createIngestMetrics({ process: true }),
    }),
  );
  const feed = new LiveFeed();
  app.route('/', createQueryApp({ store: backends.store, logger, feed, keys: apiKeysFromEnv(env) }));
  app.route('/', createDemoShop());

  if (opts.onTransitions) {
    const listener = opts.onTransitions;
    feed.subscribe({}, (t) => listener([t]));
  }
  let consumer: LogConsumer | undefined;
  let server: ServerType | undefined;
  let webhooks: RunningWebhooks | undefined;
  try {
    consumer = backends.rawConsumer();
    await consumer.run(createBatchHandler({ store: backends.store, topicMap, producer: backends.producer, logger, onTransitions: (t) => feed.publish(t) }));
    if (env.WEBHOOK_URLS.length > 0) {
      // Webhooks read history.transitions with consumers of their own: the fold never waits for a receiver.
      const log = backends.log ? embeddedTransitionLog(backends.log) : kafkaTransitionLog(createKafka(env.KAFKA_BROKERS!, `${env.KAFKA_CLIENT_ID}-webhooks`, logger), logger);
      webhooks = await startWebhooks(log, { urls: env.WEBHOOK_URLS, secret: env.WEBHOOK_SECRET ?? '', retryMaxMs: env.WEBHOOK_RETRY_MAX_MS, groupPrefix: env.KAFKA_GROUP_ID, logger });
    }
    const listening = await listen(app, env.PORT, env.HOST);
    server = listening.server;
    const port = listening.port;
    return {
      port,
      feed,
      url: `http://${env.HOST}:${port}`,
      backends,
      app,
      stop: async () => {
        // Open event streams would hold the server open: end them first.
        feed.close();
        await closeServer(listening.server);
        await consumer?.stop();
        await webhooks?.stop();
        await backends.close();
      },
    };
  } catch (err) {
    feed.close();
    if (server) await closeServer(server);
    await webhooks?.stop().catch(() => {});
    await consumer?.stop().catch(() => {});
    await backends.close().catch(() => {});
    throw err;
  }
}
