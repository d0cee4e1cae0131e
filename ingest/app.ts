import { Hono, type Context } from 'hono';
import { SEGMENT_LIMITS } from '../contract/segment.js';
import type { LogProducer } from '../lib/log.js';
import type { Logger } from '../lib/logger.js';
import { collectRoute } from './collect.js';
import type { RouteDeps } from './context.js';
import { emailRoutes } from './email.js';
import { createUaParser } from './enrich.js';
import { onError } from '../lib/http-errors.js';
import { createIngestMetrics, metricsHandler, type IngestMetrics } from './metrics.js';
import { segmentRoutes } from './segment.js';
import { createSink } from './sink.js';
import { compileSites, DEMO_SITES, type SiteRegistry } from './sites.js';
import { visitorRoutes, type VisitorSource } from './me.js';
import { snippetRoute, stagesAddonRoute } from './snippet-route.js';

export interface IngestOptions {
  producer: LogProducer;
  logger: Logger;
  /** Largest /v1/collect body, bytes. */
  maxBodyBytes: number;
  retryAfterSeconds: number;
  clientIp?: (c: Context) => string | undefined;
  /**
   * Proxies in front of ingest (TRUST_PROXY, as `clientIp` counts them): the forwarded host and
   * scheme (`X-Forwarded-Host`, `X-Forwarded-Proto`) are read only behind one. Default 0.
   */
  trustProxy?: number;
  /** Sites, their origins, write keys, limits and bot policy; default: the demo site (`DEMO_SITES`). */
  sites?: SiteRegistry;
  /** Secret for e-mail click-link signatures; unset: only allow-listed redirect hosts. */
  linkSecret?: string | undefined;
  /** Largest /v1/batch body, bytes; default 512 KiB (Segment's limit is 500 KB). */
  batchMaxBodyBytes?: number;
  /**
   * Dead letters written to clicks.invalid per second (INGEST_DEAD_LETTERS_PER_SECOND); past it
   * refusals are only counted. Default 200.
   */
  deadLettersPerSecond?: number;
  /** Metrics on a registry of their own; default: a fresh one per app. */
  metrics?: IngestMetrics;
  now?: () => number;
  /**
   * The history, for the visitor's own stages (`GET /v1/me`, `/v1/me/stream`: ingest/me.ts);
   * without it those routes answer 404 (a process without a store).
   */
  visitor?: { source: VisitorSource; streamsPerPerson?: number; streamsPerProcess?: number };
}

/**
 * The ingest HTTP surface: the snippet's `/v1/collect`, the Segment-compatible API, the e-mail
 * pixel and redirect, health, readiness and metrics. I/O only through `producer`, so tests can
 * run it without a port.
 */
export function createIngestApp(opts: IngestOptions): Hono {
  const app = new Hono();
  app.onError(onError(opts.logger));
  const metrics = opts.metrics ?? createIngestMetrics();
  const deps: RouteDeps = {
    sink: createSink({
      producer: opts.producer,
      logger: opts.logger,
      metrics,
      retryAfterSeconds: opts.retryAfterSeconds,
      deadLettersPerSecond: opts.deadLettersPerSecond,
      now: opts.now,
    }),
    sites: opts.sites ?? compileSites(DEMO_SITES),
    logger: opts.logger,
    clientIp: oncePerRequest(opts.clientIp ?? (() => undefined)),
    trustProxy: opts.trustProxy ?? 0,
    parseUa: createUaParser(),
    now: opts.now ?? Date.now,
  };

  app.get('/healthz', (c) => c.json({ ok: true }));
  app.get('/readyz', (c) => (opts.producer.ready() ? c.json({ ready: true }) : c.json({ ready: false }, 503)));
  app.get('/metrics', metricsHandler(metrics));

  app.route('/', snippetRoute());
  app.route('/', stagesAddonRoute());
  if (opts.visitor) app.route('/', visitorRoutes({ sites: deps.sites, clientIp: deps.clientIp, ...opts.visitor }));

  app.route('/', collectRoute(deps, { metrics, maxBodyBytes: opts.maxBodyBytes }));
  app.route('/', segmentRoutes(deps, { metrics, batchMaxBodyBytes: opts.batchMaxBodyBytes ?? SEGMENT_LIMITS.batchBytes }));
  app.route('/', emailRoutes(deps, { metrics, linkSecret: opts.linkSecret }));
  return app;
}

/** Limits, enrichment and dead letters all ask for the address; resolve (and count fallbacks) once. */
function oncePerRequest(resolve: (c: Context) => string | undefined): (c: Context) => string | undefined {
  const seen = new WeakMap<Context, string | undefined>();
  return (c) => {
    if (seen.has(c)) return seen.get(c);
    const address = resolve(c);
    seen.set(c, address);
    return address;
  };
}
