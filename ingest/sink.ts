import type { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { DEAD_LETTER_EXCERPT, excerptOf, type DeadLetter } from '../contract/dead-letter.js';
import { TOPICS } from '../contract/raw-event.js';
import { LogUnavailableError, type LogMessage, type LogProducer } from '../lib/log.js';
import type { Logger } from '../lib/logger.js';
import { httpError, type Issue } from '../lib/http-errors.js';
import type { IngestMetrics } from './metrics.js';
import { tokenBuckets } from './rate-limit.js';
import { scrubExcerpt } from './scrub.js';

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
  /** The human explanation the sender got. */
  detail?: string;
}

export interface SinkOptions {
  producer: LogProducer;
  logger: Logger;
  metrics: IngestMetrics;
  retryAfterSeconds: number;
  /** Dead letters written per second by this process; past it they are only counted. Default 200; 0: count only. */
  deadLettersPerSecond?: number;
  /** Dead letters sent and not yet acknowledged, at most (Kafka slow or away); past it, only counted. Default 1,000. */
  maxPendingDeadLetters?: number;
  now?: () => number;
}

export interface Sink {
  /** Writes accepted events to `clicks.raw`; throws the 503 (with Retry-After) when Kafka cannot take them. */
  produce(ref: RequestRef, messages: LogMessage[]): Promise<void>;
  /**
   * Counts rejections, and writes them to `clicks.invalid` through the bounded path: never waits
   * for Kafka and never throws, so the sender's answer does not depend on the dead letter.
   */
  deadLetter(ref: RequestRef, rejections: Rejection[]): void;
  /** Dead-letters a request rejected as a whole and returns the exception that answers it. */
  reject(
    ref: RequestRef,
    status: ContentfulStatusCode,
    reason: string,
    message: string,
    extra?: { issues?: Issue[]; payload?: unknown; headers?: Record<string, string> },
  ): HTTPException;
  /** Counts events that are neither accepted nor dead-lettered (bots dropped by policy, rate limited). */
  skipped(route: string, reason: string, count: number): void;
  /** Resolves once every dead letter sent so far was acknowledged or failed (tests, shutdown). */
  settled(): Promise<void>;
}

export const DEFAULT_DEAD_LETTERS_PER_SECOND = 200;
const DEFAULT_MAX_PENDING_DEAD_LETTERS = 1000;
/** A failing dead-letter path logs at most this often (the failures are all counted). */
const FAILURE_LOG_INTERVAL_MS = 10_000;

/**
 * The one place ingest writes to Kafka: accepted events to `clicks.raw`, rejections with their
 * reason to `clicks.invalid`. Endpoints decide; this writes, times and counts.
 *
 * Dead letters share the producer (and its one queue) with real events, so they go through a
 * bounded path: a process-wide token bucket (`deadLettersPerSecond`) and a cap on those still
 * waiting for Kafka. A flood of junk therefore adds at most that many small records per second to
 * the produce requests that carry real events, and never holds up an answer; every refusal is
 * still counted by reason, written or not.
 */
export function createSink(opts: SinkOptions): Sink {
  const { producer, logger, metrics } = opts;
  const now = opts.now ?? Date.now;
  const rate = opts.deadLettersPerSecond ?? DEFAULT_DEAD_LETTERS_PER_SECOND;
  const maxPending = opts.maxPendingDeadLetters ?? DEFAULT_MAX_PENDING_DEAD_LETTERS;
  const bucket = rate > 0 ? tokenBuckets({ perSecond: rate, burst: Math.max(1, Math.ceil(rate)), maxKeys: 1, now }) : () => 1;
  const pending = new Set<Promise<void>>();
  let pendingLetters = 0;
  let failuresSinceLog = 0;
  let lastFailureLog = -Infinity;

  // Children by label, made once: prom-client hashes a label object on every call otherwise.
  const timers = new Map<string, ReturnType<typeof metrics.produceSeconds.labels>>();
  const acceptedBy = new Map<string, ReturnType<typeof metrics.accepted.labels>>();
  const timedSend = async (topic: string, messages: LogMessage[]) => {
    let timer = timers.get(topic);
    if (!timer) timers.set(topic, (timer = metrics.produceSeconds.labels(topic)));
    const end = timer.startTimer();
    await producer.send(topic, messages);
    end();
  };

  const onFailure = (err: unknown, ref: RequestRef, count: number) => {
    metrics.deadLetterFailures.inc(count);
    failuresSinceLog += count;
    if (now() - lastFailureLog < FAILURE_LOG_INTERVAL_MS) return;
    logger.warn({ err: (err as Error).message, site: ref.site, rid: ref.rid, failed: failuresSinceLog }, 'could not write dead letters');
    lastFailureLog = now();
    failuresSinceLog = 0;
  };

  const deadLetter: Sink['deadLetter'] = (ref, rejections) => {
    const messages: LogMessage[] = [];
    for (const r of rejections) {
      metrics.rejected.inc({ route: ref.route, reason: r.reason });
      // The cap first: a token spent on a letter that is then dropped would be lost to the next one.
      if (pendingLetters + messages.length >= maxPending || bucket('all') > 0) {
        metrics.deadLettersSampledOut.inc({ reason: r.reason });
        continue;
      }
      metrics.deadLettersWritten.inc({ reason: r.reason });
      messages.push({ key: ref.site ?? '', value: JSON.stringify(toDeadLetter(ref, r)) });
    }
    if (messages.length === 0) return;
    pendingLetters += messages.length;
    const sent: Promise<void> = timedSend(TOPICS.invalid, messages)
      .catch((err: unknown) => onFailure(err, ref, messages.length))
      .finally(() => {
        pendingLetters -= messages.length;
        pending.delete(sent);
      });
    pending.add(sent);
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
      let accepted = acceptedBy.get(ref.route);
      if (!accepted) acceptedBy.set(ref.route, (accepted = metrics.accepted.labels(ref.route)));
      accepted.inc(messages.length);
    },

    reject(ref, status, reason, message, extra = {}) {
      deadLetter(ref, [{ reason, issues: extra.issues ?? [], payload: extra.payload, detail: message }]);
      logger.debug({ route: ref.route, site: ref.site, rid: ref.rid, status, reason }, message);
      return httpError(status, reason, message, { issues: extra.issues, headers: extra.headers });
    },

    skipped(route, reason, count) {
      if (count > 0) metrics.rejected.inc({ route, reason }, count);
    },

    async settled() {
      await Promise.allSettled([...pending]);
    },
  };
}

/** The shared dead-letter shape (contract/dead-letter.ts), as ingest fills it. */
function toDeadLetter(ref: RequestRef, r: Rejection): DeadLetter {
  return {
    stage: 'ingest',
    route: ref.route,
    site: ref.site,
    reason: r.reason,
    detail: r.detail === undefined ? undefined : excerptOf(r.detail, 2047),
    issues: r.issues,
    rid: ref.rid,
    index: r.index,
    rt: ref.rt,
    payload: r.payload === undefined ? undefined : excerpt(r.payload),
  };
}

/**
 * Secrets a body may carry: Segment's write key, and user-id signatures (a valid one lets whoever
 * reads it act as that user). Also when the excerpt ends inside the value.
 */
const SECRETS = /("(?:writeKey|sig)"\s*:\s*)"(?:[^"\\]|\\.)*(?:"|\\?$)/g;
/** The same sent as form fields (`writeKey=...&sig=...`), which a body that is not JSON may be. */
const FORM_SECRETS = /(^|[?&\s])((?:writeKey|sig)=)[^&\s]*/g;

/**
 * A bounded excerpt; survives what JSON.stringify cannot (cycles, thousands of nesting levels).
 * Secrets redacted, then scrubbed like an accepted event (ingest/scrub.ts `scrubExcerpt`): a refused
 * event must not leave on `clicks.invalid` what an accepted one would not leave on `clicks.raw`. Cut
 * to twice the excerpt before scrubbing, so a flood of large bodies costs bounded work per letter.
 */
function excerpt(payload: unknown): string {
  let s: string;
  try {
    s = typeof payload === 'string' ? payload : (JSON.stringify(payload) ?? String(payload));
  } catch {
    s = '[not serialisable]';
  }
  const head = s.slice(0, 2 * DEAD_LETTER_EXCERPT);
  return excerptOf(scrubExcerpt(head.replace(SECRETS, '$1"[redacted]"').replace(FORM_SECRETS, '$1$2[redacted]')), DEAD_LETTER_EXCERPT);
}
