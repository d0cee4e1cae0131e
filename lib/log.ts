import type { Logger } from './logger.js';

/**
 * The partitioned log as the rest of the code sees it: Kafka (kafkajs, `lib/kafka/`) on the real
 * stack, the in-process `PartitionedLog` (`lib/log-memory.ts`) in the embedded mode. Ingest, the
 * worker, the transition readers (live feed, webhooks) and the replay depend only on this; no file
 * outside lib/ imports a Kafka client.
 */
export interface LogMessage {
  key: string;
  value: string;
}

/** Messages for one topic: what a batch publishes with its commit. */
export interface TopicMessages {
  topic: string;
  messages: LogMessage[];
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

/**
 * Where a consumer group that never committed starts, per partition: the oldest record kept, the
 * end of the log at the moment the consumer starts (what happens from then on), or the first record
 * appended at or after an epoch-ms time (the end when there is none). A group that has committed
 * always continues where it committed.
 */
export type StartAt = 'beginning' | 'end' | { timestamp: number };

export interface ConsumerOptions {
  topic: string;
  /** The consumer group: members share the partitions, and the group keeps its committed offsets. */
  group: string;
  /** Where the group starts when it never committed. Default 'beginning'. */
  startAt?: StartAt;
  /** Most records per handler call. Default: the in-process log 1000; Kafka whatever one fetch brings. */
  maxBatch?: number;
  /** Partitions handled at the same time by this member (Kafka). Default 3. */
  concurrency?: number;
  /** How long a silent member keeps its partitions before the group takes them back (Kafka). Default 30 s. */
  sessionTimeoutMs?: number;
  /** Deletes the group (and its committed offsets) on stop(): a process's own live feed. */
  ephemeral?: boolean;
  /**
   * Commits a batch whose handler resolves after stop() was called, as long as this member still
   * owns the partition. For handlers that are done with a batch when they resolve (the worker: its
   * effects are durable then). Default false: a handler that resolves once `stopped()` may have
   * given up part way (webhooks), so its batch is left uncommitted and comes again.
   */
  commitOnStop?: boolean;
  /** Where failures of the handler and recoveries are reported (default: the log's own logger). */
  logger?: Logger;
  /** Backoff of a batch whose handler throws; defaults in BatchRetries (100 ms doubling to 5 s). */
  retry?: RetryOptions;
  /**
   * `BatchControl.publishAndCommit` in Kafka transactions (one transactional producer per owned
   * partition, so that a zombie is fenced). Kafka only; the in-process log is atomic anyway.
   * Default false.
   */
  transactional?: boolean;
}

/** What a handler may do with its batch besides resolving. */
export interface BatchControl {
  /** Keeps the member in its group during a long wait (Kafka; a no-op in the in-process log). */
  heartbeat(): Promise<void>;
  /**
   * Commits everything up to and including `offset` of this batch's partition now (a handler that
   * finishes its batch in parts). If the handler fails afterwards, only the records after it come again.
   */
  commit(offset: string): Promise<void>;
  /** True once stop() was called or this member lost the partition: give up, leave the rest uncommitted. */
  stopped(): boolean;
  /**
   * Writes `records` and commits this batch's partition through `offset`, as one step. On a
   * transactional Kafka consumer (`ConsumerOptions.transactional`) in one Kafka transaction: a
   * read_committed reader sees the records exactly when the offsets are committed, and a member
   * that lost the partition is fenced and can do neither. Otherwise the records are acknowledged,
   * then the offset committed (a crash in between writes them again when the batch comes again).
   */
  publishAndCommit(records: TopicMessages[], offset: string): Promise<void>;
}

/**
 * The control of a batch handed to a handler outside any consumer (a test, the bench, the replay's
 * own loop): `publishAndCommit` sends through `producer` and leaves the commit to the caller.
 */
export function uncommittedControl(producer: LogProducer): BatchControl {
  return {
    heartbeat: async () => {},
    commit: async () => {},
    stopped: () => false,
    publishAndCommit: async (records) => {
      await Promise.all(records.filter((r) => r.messages.length > 0).map((r) => producer.send(r.topic, r.messages)));
    },
  };
}

/**
 * Handles one batch of one partition. When it resolves the consumer commits the batch's last
 * offset, unless `ctl.stopped()` (see `ConsumerOptions.commitOnStop`). A handler that throws has met
 * an infrastructure failure (bad records are the handler's business): the same batch (past what it
 * committed itself) comes again after a growing pause (BatchRetries), nothing is committed past it,
 * and the other partitions go on. A throw once `stopped()` is not a failure: the batch simply stays
 * uncommitted.
 */
export type ConsumerHandler = (batch: ConsumedBatch, ctl: BatchControl) => Promise<void>;

/**
 * A handler that can also run outside a consumer (tests, the bench): without a control it
 * publishes through its own producer and leaves the commit to the caller. Every one is a ConsumerHandler.
 */
export type BatchHandler = (batch: ConsumedBatch, ctl?: BatchControl) => Promise<void>;

export interface LogConsumer {
  /** Joins the group and starts handing batches to `handler`; resolves once running. */
  run(handler: ConsumerHandler): Promise<void>;
  /** Leaves the group after the batches in flight (their handlers see `stopped()`). */
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
 * One log for the whole process: its producer, consumers of any topic and group, and the offsets
 * of a topic (replay: where to start, where the end is). Both adapters implement it.
 */
export interface Log {
  /** The process's producer (one, shared: the Kafka adapter batches concurrent sends into one request). */
  producer(): LogProducer;
  consumer(opts: ConsumerOptions): LogConsumer;
  /**
   * Per partition, the offset of the first record at `at`: the oldest kept ('beginning'), the next
   * to be written ('end'), the first appended at or after a time (the end when there is none).
   */
  offsets(topic: string, at: StartAt): Promise<Map<number, string>>;
  /** Stops every consumer still running, then closes the producer. */
  close(): Promise<void>;
}

/** Records between two offset maps, summed over partitions (replay's total, a lag). */
export function recordsBetween(from: ReadonlyMap<number, string>, to: ReadonlyMap<number, string>): number {
  let n = 0n;
  for (const [p, end] of to) {
    const d = BigInt(end) - BigInt(from.get(p) ?? end);
    if (d > 0n) n += d;
  }
  return Number(n);
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
