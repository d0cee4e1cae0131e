import { randomUUID } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { registerLoopDelay } from '../lib/loop-delay.js';

/**
 * Ingest's Prometheus metrics, on a registry of its own (never prom-client's global one, so two
 * apps in one process, as in tests, do not share counters). Served as text on `GET /metrics`.
 *
 * Counting rules: `events_accepted_total` counts events Kafka acknowledged; `events_rejected_total`
 * counts each rejected event by reason, and a request rejected as a whole (malformed JSON,
 * unknown site, body too large, rate limited...) once. Each refusal that is dead-lettered is then
 * either written to clicks.invalid (`dead_letters_written_total`) or, past the process's dead-letter
 * rate, only counted (`dead_letters_sampled_out_total`), both by reason.
 */
export interface IngestMetrics {
  readonly registry: Registry;
  readonly requests: Counter<'route' | 'status'>;
  readonly inFlight: Gauge<'route'>;
  readonly accepted: Counter<'route'>;
  readonly rejected: Counter<'route' | 'reason'>;
  readonly produceSeconds: Histogram<'topic'>;
  readonly deadLetterFailures: Counter;
  readonly deadLettersWritten: Counter<'reason'>;
  readonly deadLettersSampledOut: Counter<'reason'>;
  /** Events kept as the anonymous visitor's because their user id was not signed (signed identify). */
  readonly unsignedUsers: Counter<'route'>;
  /** Requests whose X-Forwarded-For chain could not be used (the socket address was taken). */
  readonly forwardedFallbacks: Counter;
}

export interface MetricsOptions {
  /** Also export the process's CPU, memory, event-loop lag and GC metrics (main processes only). */
  process?: boolean;
}

export function createIngestMetrics(opts: MetricsOptions = {}): IngestMetrics {
  const registry = new Registry();
  if (opts.process) {
    collectDefaultMetrics({ register: registry });
    // The tail's cause: how long the loop was blocked (lib/loop-delay.ts), in buckets.
    registerLoopDelay(registry);
  }
  const registers = [registry];
  return {
    registry,
    requests: new Counter({ name: 'clickfold_ingest_requests_total', help: 'HTTP requests by route and status', labelNames: ['route', 'status'], registers }),
    inFlight: new Gauge({ name: 'clickfold_ingest_requests_in_flight', help: 'HTTP requests being handled', labelNames: ['route'], registers }),
    accepted: new Counter({
      name: 'clickfold_ingest_events_accepted_total',
      help: 'Events acknowledged by Kafka on clicks.raw',
      labelNames: ['route'],
      registers,
    }),
    rejected: new Counter({
      name: 'clickfold_ingest_events_rejected_total',
      help: 'Events (or whole requests) not accepted, by reason',
      labelNames: ['route', 'reason'],
      registers,
    }),
    produceSeconds: new Histogram({
      name: 'clickfold_ingest_produce_duration_seconds',
      help: 'Time from produce to Kafka acknowledgement',
      labelNames: ['topic'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    deadLetterFailures: new Counter({ name: 'clickfold_ingest_dead_letter_failures_total', help: 'Dead letters that could not be written', registers }),
    deadLettersWritten: new Counter({
      name: 'clickfold_ingest_dead_letters_written_total',
      help: 'Dead letters sent to clicks.invalid, by reason',
      labelNames: ['reason'],
      registers,
    }),
    deadLettersSampledOut: new Counter({
      name: 'clickfold_ingest_dead_letters_sampled_out_total',
      help: 'Refusals counted but not written to clicks.invalid (past INGEST_DEAD_LETTERS_PER_SECOND), by reason',
      labelNames: ['reason'],
      registers,
    }),
    unsignedUsers: new Counter({
      name: 'clickfold_ingest_unsigned_users_total',
      help: "Events kept as the anonymous visitor's because the site signs user ids and theirs was not signed",
      labelNames: ['route'],
      registers,
    }),
    forwardedFallbacks: new Counter({
      name: 'clickfold_ingest_forwarded_for_fallbacks_total',
      help: 'Requests whose X-Forwarded-For entries (within TRUST_PROXY hops) were not IP addresses; the socket address was used',
      registers,
    }),
  };
}

const SANE_ID = /^[\w.:-]{1,128}$/;

/**
 * The first middleware of every ingest endpoint: a request id (the sender's X-Request-Id when it
 * is sane, else a new one; echoed in the answer and carried by dead letters), and the request
 * counters under a fixed route label (bounded cardinality).
 */
export function instrument(metrics: IngestMetrics, route: string): MiddlewareHandler<{ Variables: { rid: string } }> {
  const inFlight = metrics.inFlight.labels(route);
  // The counter's children by status: a label object hashed per request was a measurable share of ingest's CPU.
  const byStatus = new Map<number, ReturnType<typeof metrics.requests.labels>>();
  return async (c, next) => {
    const given = c.req.header('x-request-id');
    const rid = given !== undefined && SANE_ID.test(given) ? given : randomUUID();
    c.set('rid', rid);
    // Set before the answer exists, it goes into the one the handler builds. Set after, on
    // @hono/node-server it makes the answer be built a second time as a web Response (with a
    // ReadableStream body): 1-2% of ingest's CPU in the bench's profile.
    c.header('x-request-id', rid);
    inFlight.inc();
    try {
      await next();
    } finally {
      inFlight.dec();
      const status = c.res.status;
      let counter = byStatus.get(status);
      if (!counter) byStatus.set(status, (counter = metrics.requests.labels(route, String(status))));
      counter.inc();
      // Answers built outside the context (an HTTPException's, a 4xx or 5xx) do not carry it yet.
      if (c.res.headers.get('x-request-id') === null) c.header('x-request-id', rid);
    }
  };
}

/** `GET /metrics`: the Prometheus text format. */
export function metricsHandler(metrics: IngestMetrics): MiddlewareHandler {
  return async (c) => c.body(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType });
}
