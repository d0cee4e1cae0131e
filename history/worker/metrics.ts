import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { registerLoopDelay } from '../../lib/loop-delay.js';
import { LogUnavailableError, type BatchHandler, type LogConsumer } from '../../lib/log.js';
import type { Logger } from '../../lib/logger.js';
import { redisErrorKind, type RedisWatch } from '../../lib/redis.js';

/**
 * The worker's Prometheus metrics, on a registry of its own (as ingest's), served on `GET /metrics`
 * of the worker process and of `npm start`.
 *
 * Counting rules: every record consumed from `clicks.raw` ends in exactly one of
 * `records_total{outcome}`: `folded` (it reached the store), `unmatched` (no topic-map rule: stays in
 * Kafka, never reaches the history), `erased` (an id it belongs to was erased after ingest received
 * it: skipped for good), `dead_lettered` (on `clicks.invalid`, by reason in `dead_letters_total`). Hints the map does not allow are counted in `ignored_total{reason}` and the
 * record goes on by its URL.
 */
export interface WorkerMetrics {
  readonly registry: Registry;
  readonly records: Counter<'outcome'>;
  readonly deadLetters: Counter<'reason'>;
  readonly ignored: Counter<'reason'>;
  readonly transitions: Counter;
  readonly batchSeconds: Histogram;
  /** Infrastructure failures (Kafka or Redis unreachable, out of memory): the batch is retried. */
  readonly retries: Counter<'reason'>;
  readonly redisErrors: Counter<'kind'>;
  /** Records behind the end of `clicks.raw`, per partition this process owns. */
  readonly lag: Gauge<'partition'>;
}

export function createWorkerMetrics(opts: { process?: boolean } = {}): WorkerMetrics {
  const registry = new Registry();
  if (opts.process) {
    collectDefaultMetrics({ register: registry });
    // The tail's cause: how long the loop was blocked (lib/loop-delay.ts), in buckets.
    registerLoopDelay(registry);
  }
  const registers = [registry];
  return {
    registry,
    records: new Counter({ name: 'clickfold_worker_records_total', help: 'Records consumed from clicks.raw, by outcome', labelNames: ['outcome'], registers }),
    deadLetters: new Counter({
      name: 'clickfold_worker_dead_letters_total',
      help: 'Records written to clicks.invalid, by reason',
      labelNames: ['reason'],
      registers,
    }),
    ignored: new Counter({
      name: 'clickfold_worker_ignored_total',
      help: 'Parts of records ignored (hints the map does not allow), by reason',
      labelNames: ['reason'],
      registers,
    }),
    transitions: new Counter({ name: 'clickfold_worker_transitions_total', help: 'Transitions published to history.transitions', registers }),
    batchSeconds: new Histogram({
      name: 'clickfold_worker_batch_duration_seconds',
      help: 'Time to fold one consumed batch (classify, fold, write, publish)',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    retries: new Counter({
      name: 'clickfold_worker_batch_retries_total',
      help: 'Batches retried after an infrastructure failure, by reason',
      labelNames: ['reason'],
      registers,
    }),
    redisErrors: new Counter({
      name: 'clickfold_worker_redis_errors_total',
      help: 'Redis errors seen by the worker, by kind',
      labelNames: ['kind'],
      registers,
    }),
    lag: new Gauge({
      name: 'clickfold_worker_consumer_lag',
      help: 'Records of clicks.raw not yet folded, per partition',
      labelNames: ['partition'],
      registers,
    }),
  };
}

/** Why a batch failed, as the `reason` label of `batch_retries_total`: a short, bounded set. */
export type FailureReason = 'redis_oom' | 'redis' | 'kafka' | 'other';

export function failureReason(err: unknown): FailureReason {
  const kind = redisErrorKind(err);
  if (kind === 'oom') return 'redis_oom';
  if (kind) return 'redis';
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof LogUnavailableError || e.name.startsWith('KafkaJS')) return 'kafka';
  }
  return 'other';
}

/**
 * Wraps the batch handler: every throw is an infrastructure failure the consumer will retry, so it
 * is counted by reason, and told to the Redis watch (out of memory turns /readyz to 503 until a
 * batch gets through again).
 */
export function observeBatches(handler: BatchHandler, metrics: WorkerMetrics, redis?: RedisWatch): BatchHandler {
  return async (batch, ctl) => {
    try {
      await handler(batch, ctl);
    } catch (err) {
      metrics.retries.inc({ reason: failureReason(err) });
      redis?.commandFailed(err);
      throw err;
    }
    redis?.writeSucceeded();
  };
}

/**
 * Keeps `consumer_lag{partition}` current: asks the consumer every `intervalMs` and drops the
 * partitions it no longer reports (moved to another worker), so that summing the gauge over every
 * worker counts each partition once. A failed poll keeps the last figures and is logged at debug
 * (the consumer's own health says when Kafka is away).
 */
export function pollLag(
  consumer: LogConsumer,
  metrics: WorkerMetrics,
  opts: { intervalMs?: number; logger?: Logger } = {},
): { stop(): void; poll(): Promise<void> } {
  const lagOf = consumer.lag?.bind(consumer);
  let shown = new Set<number>();
  let inFlight: Promise<void> | undefined;
  const update = async () => {
    try {
      const lag = await lagOf!();
      for (const [partition, n] of lag) metrics.lag.set({ partition: String(partition) }, n);
      for (const p of shown) if (!lag.has(p)) metrics.lag.remove({ partition: String(p) });
      shown = new Set(lag.keys());
    } catch (err) {
      opts.logger?.debug({ err: err instanceof Error ? err.message : String(err) }, 'could not read the consumer lag');
    }
  };
  // One query at a time: a slow Kafka must not pile them up.
  const poll = (): Promise<void> => {
    if (!lagOf) return Promise.resolve();
    inFlight ??= update().finally(() => (inFlight = undefined));
    return inFlight;
  };
  const timer = setInterval(() => void poll(), opts.intervalMs ?? 5000);
  timer.unref();
  void poll();
  return { stop: () => clearInterval(timer), poll };
}
