/**
 * The partitioned log as the rest of the code sees it. Kafka (kafkajs) in the real stack, the
 * in-process `PartitionedLog` in the embedded mode; ingest and the worker depend only on this.
 */
export interface LogMessage {
  key: string;
  value: string;
}

export interface LogProducer {
  /** Resolves once the log has acknowledged every message (Kafka: all in-sync replicas). */
  send(topic: string, messages: LogMessage[]): Promise<void>;
  /** Whether the producer believes the log is reachable (for /readyz). */
  ready(): boolean;
  close(): Promise<void>;
}

export interface ConsumedMessage {
  offset: string;
  key: string | null;
  value: string;
  /** Log append time, epoch ms. */
  timestamp: number;
}

export interface ConsumedBatch {
  topic: string;
  partition: number;
  messages: ConsumedMessage[];
}

/** The handler resolves only when the batch's effects are durable; the consumer commits after it. */
export type BatchHandler = (batch: ConsumedBatch) => Promise<void>;

export interface LogConsumer {
  run(handler: BatchHandler): Promise<void>;
  stop(): Promise<void>;
  /** Whether the consumer runs and its batches get through; cheap, for /readyz. */
  health?(): ConsumerHealth;
  /**
   * Records not yet committed, per partition this member owns (all partitions in the embedded
   * log), queried now. Empty before the member has joined its group.
   */
  lag?(): Promise<Map<number, number>>;
}

/**
 * A consumer's health. A handler that throws is an infrastructure failure (bad records are the
 * handler's business): the same batch is retried with backoff, nothing is committed past it, and
 * `failing` stays true until a batch of that partition gets through.
 */
export interface ConsumerHealth {
  /** run() has started and stop() was not called; on Kafka also: the member is in its group and kafkajs has not given up. */
  running: boolean;
  failing: boolean;
  /** The latest failure's message (kept after recovery, for the operator). */
  lastError?: string;
  /** When the current failure began (epoch ms); absent when not failing. */
  since?: number;
  /** Failed attempts since then. */
  attempts: number;
}

export interface RetryOptions {
  /** First pause after a failure, ms; doubles with each failure of the same partition. Default 100. */
  initialMs?: number;
  /** Longest pause, ms. Default 5000. */
  maxMs?: number;
  /** A failure is logged at warn the first time, then every this many attempts. Default 10. */
  logEvery?: number;
}

/** What BatchRetries logs through: a pino logger, or an adapter to another client's. */
export interface RetryLog {
  warn(fields: object, msg: string): void;
  info(fields: object, msg: string): void;
}

interface Failure {
  since: number;
  attempts: number;
  error: string;
}

/**
 * The retry state both consumers share: per partition (or -1 for the client itself), the failure
 * streak, the next pause (exponential, with jitter so that the members of a group do not hammer a
 * recovering Redis in step), and the warnings: the first failure, every `logEvery`-th, a changed
 * reason, and the recovery, rather than one line per attempt.
 */
export class BatchRetries {
  private readonly failures = new Map<number, Failure>();
  private lastError: string | undefined;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly logEvery: number;

  constructor(
    private readonly topic: string,
    private readonly logger: RetryLog | undefined,
    opts: RetryOptions = {},
    private readonly now: () => number = Date.now,
  ) {
    this.initialMs = opts.initialMs ?? 100;
    this.maxMs = opts.maxMs ?? 5000;
    this.logEvery = opts.logEvery ?? 10;
  }

  /** Records a failure of `partition` and answers how long to wait before the next attempt. */
  failed(partition: number, err: unknown): number {
    const error = errorMessage(err);
    const f = this.failures.get(partition) ?? { since: this.now(), attempts: 0, error };
    f.attempts++;
    const changed = f.error !== error;
    f.error = error;
    this.failures.set(partition, f);
    this.lastError = error;
    const ceiling = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(f.attempts - 1, 30));
    // "Equal jitter": at least half the ceiling, so the pause still grows.
    const delayMs = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    if (f.attempts === 1 || f.attempts % this.logEvery === 0 || changed) {
      this.logger?.warn(
        { topic: this.topic, partition, attempt: f.attempts, failingForMs: this.now() - f.since, retryInMs: delayMs, err: error },
        partition < 0 ? `the ${this.topic} consumer crashed` : `a batch of ${this.topic} failed; retrying the same batch (nothing is committed past it)`,
      );
    }
    return delayMs;
  }

  /** A batch of `partition` got through: its failure streak (if any) ends. */
  succeeded(partition: number): void {
    const f = this.failures.get(partition);
    if (!f) return;
    this.failures.delete(partition);
    this.logger?.info({ topic: this.topic, partition, attempts: f.attempts, failedForMs: this.now() - f.since }, `${this.topic} is getting through again`);
  }

  /** Forgets partitions this member no longer owns (their failures are the new owner's now). */
  keepOnly(partitions: ReadonlySet<number>): void {
    for (const p of this.failures.keys()) if (p >= 0 && !partitions.has(p)) this.failures.delete(p);
  }

  clear(): void {
    this.failures.clear();
  }

  health(running: boolean): ConsumerHealth {
    let since: number | undefined;
    let attempts = 0;
    for (const f of this.failures.values()) {
      if (since === undefined || f.since < since) since = f.since;
      attempts = Math.max(attempts, f.attempts);
    }
    const h: ConsumerHealth = { running, failing: since !== undefined, attempts };
    if (this.lastError !== undefined) h.lastError = this.lastError;
    if (since !== undefined) h.since = since;
    return h;
  }
}

function errorMessage(err: unknown): string {
  if (err instanceof Error) return `${err.name === 'Error' ? '' : `${err.name}: `}${err.message}`.slice(0, 500);
  return String(err).slice(0, 500);
}

/** A pause that ends early when `signal` aborts (stop() must not wait out a 5 s backoff). */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** Thrown by producers when the log cannot take messages now; ingest answers 503 with Retry-After. */
export class LogUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LogUnavailableError';
  }
}
