import { Hono } from 'hono';
import type { ConsumerHealth, LogConsumer } from '../../lib/log.js';
import type { RedisWatch } from '../../lib/redis.js';
import type { WorkerMetrics } from './metrics.js';

export interface WorkerReadiness {
  ready: boolean;
  /** Why not, for a person reading the probe's answer; absent when ready. */
  reason?: string;
  consumer?: ConsumerHealth;
}

export interface WorkerProbes {
  consumer: LogConsumer;
  /** The real stack's Redis; absent in the embedded mode. */
  redis?: RedisWatch | undefined;
  /** True once shutdown began: the worker is leaving its group. */
  stopping?: () => boolean;
  now?: () => number;
}

/**
 * Ready means: the consumer runs (it has not been stopped, kafkajs has not given up), its batches
 * get through (a handler that keeps throwing is being retried), and Redis is connected and has room.
 * A worker that is not ready folds nothing; the lag tells how far behind that leaves the histories.
 */
export function workerReadiness(p: WorkerProbes): WorkerReadiness {
  const now = p.now ?? Date.now;
  const reasons: string[] = [];
  const health = p.consumer.health?.();
  if (p.stopping?.()) reasons.push('shutting down');
  else if (health && !health.running) reasons.push('the clicks.raw consumer is not running');
  if (health?.failing) {
    const seconds = Math.round((now() - (health.since ?? now())) / 1000);
    reasons.push(`batches have been failing for ${seconds} s (${health.attempts} attempts, retried with backoff): ${health.lastError ?? 'unknown error'}`);
  }
  const redis = p.redis?.status();
  if (redis && !redis.ready) reasons.push(redis.reason ?? 'Redis is not ready');
  const r: WorkerReadiness = { ready: reasons.length === 0 };
  if (reasons.length > 0) r.reason = reasons.join('; ');
  if (health) r.consumer = health;
  return r;
}

/**
 * The worker's probes: `GET /healthz` (the process answers), `GET /readyz` (200 or 503 with the
 * reason as JSON), `GET /metrics` (Prometheus text of the worker's registry). Served by the
 * standalone worker on WORKER_PORT, and by `npm start` under `/worker`.
 */
export function createWorkerHttpApp(opts: { metrics: WorkerMetrics; readiness: () => WorkerReadiness; refresh?: () => Promise<void> }): Hono {
  const app = new Hono();
  app.get('/healthz', (c) => c.json({ ok: true }));
  app.get('/readyz', (c) => {
    const r = opts.readiness();
    return c.json(r, r.ready ? 200 : 503);
  });
  app.get('/metrics', async (c) => {
    if (opts.refresh) await beforeScrape(opts.refresh);
    return c.body(await opts.metrics.registry.metrics(), 200, { 'content-type': opts.metrics.registry.contentType });
  });
  return app;
}

/**
 * Freshens gauges polled in the background (the lag) before a scrape, but waits at most `maxMs`:
 * with Kafka away the scrape answers with the last figures instead of timing out.
 */
export async function beforeScrape(refresh: () => Promise<void>, maxMs = 1000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([refresh().catch(() => {}), new Promise<void>((r) => (timer = setTimeout(r, maxMs)))]);
  clearTimeout(timer);
}
