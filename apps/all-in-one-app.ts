import type { ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import { Registry } from 'prom-client';
import type { Transition } from '../contract/transition.js';
import { LiveFeed } from '../history/transitions/live-feed.js';
import { queryAppFromEnv } from './shared/query.js';
import { compileTopicMap, foldOptionsOf, type TopicMapConfig } from '../history/fold/topic-map.js';
import { createWebhookMetrics, type RunningWebhooks } from '../history/transitions/webhooks.js';
import { beforeScrape, createWorkerHttpApp, type WorkerReadiness } from '../history/worker/http.js';
import { createWorkerMetrics, type WorkerMetrics } from '../history/worker/metrics.js';
import { createIngestApp } from '../ingest/app.js';
import { createIngestMetrics } from '../ingest/metrics.js';
import { loadSites } from '../ingest/sites.js';
import type { Env } from '../lib/config.js';
import type { LogConsumer } from '../lib/log.js';
import type { Logger } from '../lib/logger.js';
import { closeServer, listen } from '../lib/serve.js';
import { createDemoShop } from './demo-shop.js';
import { openBackends, type Backends } from './shared/backends.js';
import { ingestOptionsFromEnv } from './shared/ingest-options.js';
import { createWorker } from './shared/worker.js';
import { crmJobOptions, openAutomation } from './shared/automation.js';
import { visitorOptionsFromEnv } from './shared/visitor.js';
import { startWebhooksFromEnv } from './shared/webhooks.js';

/**
 * Records read in one stretch by the all-in-one process's worker before HTTP gets a turn: reading
 * one (JSON.parse, checks, topic map) is a few µs, so a slice holds the loop for about a ms.
 */
export const FOLD_SLICE = 250;

export interface RunningApp {
  port: number;
  /** Live transitions, as the worker publishes them. */
  feed: LiveFeed;
  url: string;
  backends: Backends;
  app: Hono;
  /** The worker's metrics (also in `GET /metrics`) and readiness (`GET /worker/readyz`). */
  worker: { metrics: WorkerMetrics; readiness(): WorkerReadiness; consumer: LogConsumer };
  /** Stops accepting requests, then stops the worker (after its batch in flight), then the backends. */
  stop(): Promise<void>;
}

export interface AppOptions {
  onTransitions?: (t: Transition[]) => void;
  /** The embedded mode's folder when DATA_DIR is unset: `npm start` keeps its data; tests and the bench stay in memory. */
  defaultDataDir?: string;
  /** The sweeper's round, ms (default 1000). */
  sweepEveryMs?: number;
}

/**
 * The all-in-one process: ingest, worker, query API and demo shop on one port. Used by `npm start`
 * and by the end-to-end tests, on whichever backends the environment selects.
 */
export async function startApp(env: Env, topicMapConfig: TopicMapConfig, logger: Logger, opts: AppOptions = {}): Promise<RunningApp> {
  const topicMap = compileTopicMap(topicMapConfig);
  const sites = await loadSites(env.INGEST_SITES);
  const backends = await openBackends(env, foldOptionsOf(topicMap), logger, { defaultDataDir: opts.defaultDataDir });

  const ingestMetrics = createIngestMetrics({ process: true });
  // The process metrics (CPU, memory, event loop) are already in ingest's registry: once is enough.
  const workerMetrics = createWorkerMetrics();
  const webhookMetrics = createWebhookMetrics();
  const feed = new LiveFeed();
  // The fold shares the event loop with every HTTP answer: reading a batch in slices (FOLD_SLICE
  // records) keeps a large one (a catch-up after a restart) from holding answers back.
  // One registry for the worker and the API: a definition PUT here is in force when the answer goes out.
  const { stallRules, registry } = await openAutomation(env, topicMap, backends, logger).catch(async (err: unknown) => {
    await backends.close();
    throw err;
  });
  const worker = createWorker(backends, {
    topicMap,
    logger,
    metrics: workerMetrics,
    onTransitions: (t) => feed.publish(t),
    slice: FOLD_SLICE,
    registry,
    sweepEveryMs: opts.sweepEveryMs,
    crm: crmJobOptions(env),
  });

  const app = new Hono();
  // One scrape target per process: /metrics carries ingest's, the worker's and the webhooks' metrics (registered
  // before ingest's own /metrics, which it overrides). /readyz stays ingest's: a load balancer
  // routes events on it, and Kafka keeps them while the worker is failing; the worker's readiness,
  // for monitoring, is /worker/readyz (with /worker/healthz and /worker/metrics).
  app.get('/metrics', async (c) => {
    await beforeScrape(worker.refresh);
    const merged = Registry.merge([
      ingestMetrics.registry,
      workerMetrics.registry,
      webhookMetrics.registry,
      ...(backends.embeddedMetrics ? [backends.embeddedMetrics] : []),
    ]);
    return c.body(await merged.metrics(), 200, { 'content-type': merged.contentType });
  });
  app.route('/worker', createWorkerHttpApp({ metrics: workerMetrics, readiness: worker.readiness, refresh: worker.refresh }));
  app.route(
    '/',
    createIngestApp({
      ...ingestOptionsFromEnv(env, { producer: backends.producer, logger, metrics: ingestMetrics, sites }),
      visitor: visitorOptionsFromEnv(env, backends.store, feed),
    }),
  );
  app.route('/', queryAppFromEnv(env, { store: backends.store, logger, feed, registry, stallRules }));
  app.route('/', createDemoShop());

  if (opts.onTransitions) {
    const listener = opts.onTransitions;
    feed.subscribe({ kinds: ['stage'] }, (t) => listener([t]));
  }
  let server: ServerType | undefined;
  let webhooks: RunningWebhooks | undefined;
  try {
    await worker.start();
    if (env.WEBHOOK_URLS.length > 0) webhooks = await startWebhooksFromEnv(env, { backends, logger, metrics: webhookMetrics });
    const listening = await listen(app, env.PORT, env.HOST);
    server = listening.server;
    const port = listening.port;
    return {
      port,
      feed,
      url: `http://${env.HOST}:${port}`,
      backends,
      app,
      worker: { metrics: workerMetrics, readiness: worker.readiness, consumer: worker.consumer },
      stop: async () => {
        // Event streams end (the feed's first, then whatever stream is left), idle connections
        // close, requests in flight get the grace period.
        feed.close();
        await closeServer(listening.server, { graceMs: env.INGEST_SHUTDOWN_GRACE_MS, logger });
        await worker.stop();
        await webhooks?.stop();
        await registry.close();
        await backends.close();
      },
    };
  } catch (err) {
    feed.close();
    if (server) await closeServer(server);
    await webhooks?.stop().catch(() => {});
    await worker.stop().catch(() => {});
    await registry.close().catch(() => {});
    await backends.close().catch(() => {});
    throw err;
  }
}
