import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The worker's Prometheus metrics, on a registry of its own (as ingest's), served on `GET /metrics`
 * of the worker process and of `npm start`.
 *
 * Counting rules: every record consumed from `clicks.raw` ends in exactly one of
 * `records_total{outcome}`: `folded` (it reached the store), `unmatched` (no topic-map rule: stays in
 * Kafka, never reaches the history), `dead_lettered` (on `clicks.invalid`, by reason in
 * `dead_letters_total`). Hints the map does not allow are counted in `ignored_total{reason}` and the
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
  if (opts.process) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    records: new Counter({ name: 'clickfold_worker_records_total', help: 'Records consumed from clicks.raw, by outcome', labelNames: ['outcome'], registers }),
    deadLetters: new Counter({ name: 'clickfold_worker_dead_letters_total', help: 'Records written to clicks.invalid, by reason', labelNames: ['reason'], registers }),
    ignored: new Counter({ name: 'clickfold_worker_ignored_total', help: 'Parts of records ignored (hints the map does not allow), by reason', labelNames: ['reason'], registers }),
    transitions: new Counter({ name: 'clickfold_worker_transitions_total', help: 'Transitions published to history.transitions', registers }),
    batchSeconds: new Histogram({
      name: 'clickfold_worker_batch_duration_seconds',
      help: 'Time to fold one consumed batch (classify, fold, write, publish)',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    retries: new Counter({ name: 'clickfold_worker_batch_retries_total', help: 'Batches retried after an infrastructure failure, by reason', labelNames: ['reason'], registers }),
    redisErrors: new Counter({ name: 'clickfold_worker_redis_errors_total', help: 'Redis errors seen by the worker, by kind', labelNames: ['kind'], registers }),
    lag: new Gauge({ name: 'clickfold_worker_consumer_lag', help: 'Records of clicks.raw not yet folded, per partition', labelNames: ['partition'], registers }),
  };
}
