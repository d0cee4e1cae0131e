import type { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { TOPICS } from '../contract/raw-event.js';
import { LogUnavailableError, type LogMessage, type LogProducer } from '../lib/log.js';
import type { Logger } from '../lib/logger.js';
import { httpError, type Issue } from './errors.js';
import type { IngestMetrics } from './metrics.js';

/** Which request a rejection belongs to: it travels with the dead letter. */
export interface RequestRef {
  route: string;
  rt: number;
  /** X-Request-Id: the sender's when it gave a sane one, else ours. */
  rid: string;
  site?: string | undefined;
}

export interface Rejection {
  reason: string;
  issues: Issue[];
  /** The event's position in the batch, for event-level rejections. */
  index?: number;
  /** The rejected input (an event, or the body's text); cut to an excerpt. */
  payload?: unknown;
}

export interface SinkOptions {
  producer: LogProducer;
  logger: Logger;
  metrics: IngestMetrics;
  retryAfterSeconds: number;
}

export interface Sink {
  /** Writes accepted events to `clicks.raw`; throws the 503 (with Retry-After) when Kafka cannot take them. */
  produce(ref: RequestRef, messages: LogMessage[]): Promise<void>;
  /** Writes rejections to `clicks.invalid` and counts them. Never throws: the sender still gets its 4xx. */
  deadLetter(ref: RequestRef, rejections: Rejection[]): Promise<void>;
  /** Dead-letters a request rejected as a whole and returns the exception that answers it. */
  reject(ref: RequestRef, status: ContentfulStatusCode, reason: string, message: string, extra?: { issues?: Issue[]; payload?: unknown; headers?: Record<string, string> }): Promise<HTTPException>;
  /** Counts events that are neither accepted nor dead-lettered (bots dropped by policy, rate limited). */
  skipped(route: string, reason: string, count: number): void;
}

const EXCERPT = 2048;

/**
 * The one place ingest writes to Kafka: accepted events to `clicks.raw`, rejections with their
 * reason to `clicks.invalid`. Endpoints decide; this writes, times and counts.
 */
export function createSink(opts: SinkOptions): Sink {
  const { producer, logger, metrics } = opts;

  const timedSend = async (topic: string, messages: LogMessage[]) => {
    const end = metrics.produceSeconds.startTimer({ topic });
    await producer.send(topic, messages);
    end();
  };

  const deadLetter: Sink['deadLetter'] = async (ref, rejections) => {
    if (rejections.length === 0) return;
    for (const r of rejections) metrics.rejected.inc({ route: ref.route, reason: r.reason });
    const messages = rejections.map((r) => ({
      key: ref.site ?? '',
      value: JSON.stringify({
        stage: 'ingest',
        route: ref.route,
        site: ref.site,
        reason: r.reason,
        issues: r.issues,
        rid: ref.rid,
        index: r.index,
        rt: ref.rt,
        payload: r.payload === undefined ? undefined : excerpt(r.payload),
      }),
    }));
    try {
      await timedSend(TOPICS.invalid, messages);
    } catch (err) {
      metrics.deadLetterFailures.inc(messages.length);
      logger.warn({ err: (err as Error).message, site: ref.site, rid: ref.rid, reason: rejections[0]!.reason }, 'could not write dead letters');
    }
  };

  return {
    deadLetter,

    async produce(ref, messages) {
      if (messages.length === 0) return;
      try {
        await timedSend(TOPICS.raw, messages);
      } catch (err) {
        if (!(err instanceof LogUnavailableError)) throw err;
        metrics.rejected.inc({ route: ref.route, reason: 'unavailable' }, messages.length);
        logger.warn({ err: err.message, site: ref.site, rid: ref.rid, events: messages.length }, 'Kafka unavailable, answering 503');
        throw httpError(503, 'unavailable', 'events could not be stored right now; retry later', {
          headers: { 'retry-after': String(opts.retryAfterSeconds) },
        });
      }
      metrics.accepted.inc({ route: ref.route }, messages.length);
    },

    async reject(ref, status, reason, message, extra = {}) {
      await deadLetter(ref, [{ reason, issues: extra.issues ?? [], payload: extra.payload }]);
      logger.debug({ route: ref.route, site: ref.site, rid: ref.rid, status, reason }, message);
      return httpError(status, reason, message, { issues: extra.issues, headers: extra.headers });
    },

    skipped(route, reason, count) {
      if (count > 0) metrics.rejected.inc({ route, reason }, count);
    },
  };
}

/** A bounded excerpt; survives what JSON.stringify cannot (cycles, thousands of nesting levels). */
function excerpt(payload: unknown): string {
  let s: string;
  try {
    s = typeof payload === 'string' ? payload : (JSON.stringify(payload) ?? String(payload));
  } catch {
    s = '[not serialisable]';
  }
  // Segment bodies carry the write key: never copy it to a topic many people read.
  s = s.replace(/("writeKey"\s*:\s*)"(?:[^"\\]|\\.)*"/g, '$1"[redacted]"');
  return s.length > EXCERPT ? `${s.slice(0, EXCERPT)}…` : s;
}
