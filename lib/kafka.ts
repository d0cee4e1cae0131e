import { connect as netConnect, isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { Kafka, logLevel, Partitioners, type Admin, type CompressionTypes, type Offsets, type Consumer, type ICustomPartitioner, type ISocketFactory, type LogEntry, type Producer, type ProducerConfig } from 'kafkajs';
import { TOPICS } from '../contract/raw-event.js';
import type { Logger } from './logger.js';
import { BatchRetries, LogUnavailableError, pause, type BatchHandler, type ConsumerHealth, type LogConsumer, type LogMessage, type LogProducer, type RetryLog, type RetryOptions } from './log.js';

export function createKafka(brokers: string, clientId: string, logger: Logger): Kafka {
  const log = logger.child({ component: 'kafkajs' });
  return new Kafka({
    clientId,
    brokers: brokers.split(',').map((b) => b.trim()).filter(Boolean),
    // kafkajs logs through pino, so every line of the process is JSON.
    logLevel: logLevel.WARN,
    logCreator:
      () =>
      ({ level, log: entry }: LogEntry) => {
        const { message, ...rest } = entry;
        if (level <= logLevel.ERROR) log.error(rest, message);
        else if (level === logLevel.WARN) log.warn(rest, message);
        else log.debug(rest, message);
      },
    retry: { initialRetryTime: 200, retries: 5 },
    socketFactory: noDelaySocket,
  });
}

/**
 * kafkajs's own socket factory, plus TCP_NODELAY. kafkajs leaves Nagle's algorithm on, so a small
 * produce or fetch request can sit in the kernel until the previous segment is acknowledged; with
 * the broker's delayed ACKs that is up to 40 ms per request (bench: send p99 ~50-70 ms at 100
 * sends/s with it, a few ms without).
 */
const noDelaySocket: ISocketFactory = ({ host, port, ssl, onConnect }) => {
  const socket = ssl ? tlsConnect({ host, port, ...(isIP(host) ? {} : { servername: host }), ...ssl }, onConnect) : netConnect({ host, port }, onConnect);
  socket.setKeepAlive(true, 60_000);
  socket.setNoDelay(true);
  return socket;
};

/** Creates the project's topics when missing, with the configured partitions and replication. */
export async function ensureTopics(kafka: Kafka, partitions: number, replicationFactor: number): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = Object.values(TOPICS).filter((t) => !existing.has(t));
    if (missing.length > 0) {
      await admin.createTopics({
        waitForLeaders: true,
        topics: missing.map((topic) => ({ topic, numPartitions: partitions, replicationFactor })),
      });
    }
  } finally {
    await admin.disconnect();
  }
}

export interface KafkaProducerOptions {
  /** Longest a send may wait for the acknowledgement before the caller is told the log is unavailable. */
  ackTimeoutMs: number;
  /**
   * How long a send waits for others to share its produce request when none is in flight.
   * Default 0: the request leaves on the next turn of the event loop. Under load, sends batch up
   * anyway while the previous request is in flight (group commit), so a linger only adds latency.
   */
  lingerMs?: number;
  /** Largest produce request, in key+value bytes; under the broker's message.max.bytes (1 MiB). Default 900 KB. */
  maxBatchBytes?: number;
  /**
   * Most messages waiting for a produce request; beyond it a send fails at once with
   * LogUnavailableError (ingest answers 503 + Retry-After instead of queueing without bound
   * while Kafka is slow or away). Default 200,000.
   */
  maxQueuedMessages?: number;
  /** Codec for produce requests (kafkajs has GZIP built in). Default none. */
  compression?: CompressionTypes;
}

/**
 * kafkajs's DefaultPartitioner (Java-compatible murmur2 of the key, so a person's records land
 * where any Kafka client would put them), remembering its answers: the hash is computed with
 * 64-bit Long objects, and was 5% of ingest's CPU (profile) although the ten events of a request
 * share one key. The answer depends only on the key and the partition count.
 */
export const memoizedDefaultPartitioner: ICustomPartitioner = () => {
  const partitioner = Partitioners.DefaultPartitioner();
  const memo = new Map<string, number>();
  return (args) => {
    const { message, partitionMetadata } = args;
    if ((message.partition !== undefined && message.partition !== null) || typeof message.key !== 'string') return partitioner(args);
    const k = `${partitionMetadata.length}:${message.key}`;
    let partition = memo.get(k);
    if (partition === undefined) {
      partition = partitioner(args);
      if (memo.size >= 100_000) memo.clear();
      memo.set(k, partition);
    }
    return partition;
  };
};

/**
 * The producer settings of every project producer (and of the raw-producer benchmark, so its
 * figure compares like with like). Idempotent: a produce retried by kafkajs after a lost
 * acknowledgement is written once; kafkajs then allows one request in flight per broker.
 */
export const PRODUCER_CONFIG = {
  idempotent: true,
  maxInFlightRequests: 1,
  createPartitioner: memoizedDefaultPartitioner,
  retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 2000 },
} satisfies ProducerConfig;

/** One caller's send, waiting for (or riding in) a produce request. */
interface PendingSend {
  topic: string;
  messages: LogMessage[];
  bytes: number;
  resolve: () => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | undefined;
  queuedAt: number;
  /** queued: not yet in a produce request; sent: in one; settled: its caller has the answer. */
  state: 'queued' | 'sent' | 'settled';
}

export interface ProducerStats {
  requests: number;
  messages: number;
  sends: number;
  largestRequest: number;
  timedOut: number;
  refused: number;
  /** Over the last 1,024 produce requests: time from leaving to the acknowledgement, ms. */
  requestMs: { p50: number; p99: number; max: number };
  /** Over the last 1,024 sends: time waiting for a request to leave, ms. */
  queuedMs: { p50: number; p99: number; max: number };
}

/** The last `size` samples, for percentiles in stats(). */
class Recent {
  private readonly values: number[] = [];
  private next = 0;
  constructor(private readonly size = 1024) {}
  add(v: number) {
    if (this.values.length < this.size) this.values.push(v);
    else this.values[this.next] = v;
    this.next = (this.next + 1) % this.size;
  }
  summary() {
    const s = [...this.values].sort((a, b) => a - b);
    const at = (q: number) => Math.round((s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0) * 100) / 100;
    return { p50: at(0.5), p99: at(0.99), max: at(1) };
  }
}

/**
 * Micro-batching producer. kafkajs serialises the requests of an idempotent producer on a lock
 * per broker, so one `producer.send` per HTTP request means one Kafka round trip per request, one
 * after the other. Instead, sends from concurrent callers queue here and leave together: one
 * produce request (all topics, `sendBatch`) at a time; while it is in flight the next callers
 * queue, and they all leave in the next request the moment its acknowledgement arrives (group
 * commit). Each caller's promise resolves on the acknowledgement (acks=-1) of the request that
 * carried its messages, or rejects with LogUnavailableError when that request fails or after
 * `ackTimeoutMs`. A send that times out before its request left is taken out of the queue, so
 * a 503 for it means it was not written. Order is kept: one request at a time, FIFO.
 */
export class KafkaLogProducer implements LogProducer {
  private readonly producer: Producer;
  private connected = false;
  private queue: PendingSend[] = [];
  private queuedMessages = 0;
  private queuedBytes = 0;
  private inFlight: Promise<void> | null = null;
  private flushScheduled = false;
  private readonly lingerMs: number;
  private readonly maxBatchBytes: number;
  private readonly maxQueuedMessages: number;
  private readonly counters = { requests: 0, messages: 0, sends: 0, largestRequest: 0, timedOut: 0, refused: 0 };
  private readonly requestMs = new Recent();
  private readonly queuedMs = new Recent();

  constructor(kafka: Kafka, private readonly opts: KafkaProducerOptions) {
    this.producer = kafka.producer(PRODUCER_CONFIG);
    this.producer.on(this.producer.events.CONNECT, () => (this.connected = true));
    this.producer.on(this.producer.events.DISCONNECT, () => (this.connected = false));
    this.lingerMs = opts.lingerMs ?? 0;
    this.maxBatchBytes = opts.maxBatchBytes ?? 900_000;
    this.maxQueuedMessages = opts.maxQueuedMessages ?? 200_000;
  }

  async connect(): Promise<void> {
    await this.producer.connect();
  }

  ready(): boolean {
    return this.connected;
  }

  /** Counters since start (for benchmarks and metrics): requests sent, messages, batching. */
  stats(): ProducerStats {
    return { ...this.counters, requestMs: this.requestMs.summary(), queuedMs: this.queuedMs.summary() };
  }

  send(topic: string, messages: LogMessage[]): Promise<void> {
    if (messages.length === 0) return Promise.resolve();
    if (this.queuedMessages + messages.length > this.maxQueuedMessages) {
      this.counters.refused++;
      return Promise.reject(new LogUnavailableError(`Kafka is not keeping up: ${this.queuedMessages} messages are already waiting`));
    }
    return new Promise<void>((resolve, reject) => {
      let bytes = 0;
      for (const m of messages) bytes += Buffer.byteLength(m.key) + Buffer.byteLength(m.value);
      const p: PendingSend = { topic, messages, bytes, resolve, reject, timer: undefined, queuedAt: performance.now(), state: 'queued' };
      p.timer = setTimeout(() => this.expire(p), this.opts.ackTimeoutMs);
      this.queue.push(p);
      this.queuedMessages += messages.length;
      this.queuedBytes += bytes;
      this.counters.sends++;
      this.schedule();
    });
  }

  private expire(p: PendingSend): void {
    if (p.state === 'settled') return;
    if (p.state === 'queued') {
      const i = this.queue.indexOf(p);
      if (i >= 0) this.queue.splice(i, 1);
      this.queuedMessages -= p.messages.length;
      this.queuedBytes -= p.bytes;
    }
    p.state = 'settled';
    this.counters.timedOut++;
    p.reject(new LogUnavailableError(`no acknowledgement from Kafka within ${this.opts.ackTimeoutMs} ms`));
  }

  /** Sends now if nothing is in flight (after `lingerMs`, or on the next turn of the event loop). */
  private schedule(): void {
    if (this.inFlight || this.flushScheduled || this.queue.length === 0) return;
    this.flushScheduled = true;
    const run = () => {
      this.flushScheduled = false;
      this.flush();
    };
    if (this.lingerMs > 0 && this.queuedBytes < this.maxBatchBytes) setTimeout(run, this.lingerMs);
    else setImmediate(run);
  }

  private flush(): void {
    if (this.inFlight || this.queue.length === 0) return;
    // Whole sends, in order, up to the byte cap (at least one, whatever its size).
    let bytes = 0;
    let n = 0;
    while (n < this.queue.length && (n === 0 || bytes + this.queue[n]!.bytes <= this.maxBatchBytes)) bytes += this.queue[n++]!.bytes;
    const batch = this.queue.splice(0, n);
    const byTopic = new Map<string, LogMessage[]>();
    let messages = 0;
    const leftAt = performance.now();
    for (const p of batch) {
      p.state = 'sent';
      this.queuedMs.add(leftAt - p.queuedAt);
      messages += p.messages.length;
      const list = byTopic.get(p.topic);
      if (list) for (const m of p.messages) list.push(m);
      else byTopic.set(p.topic, p.messages.slice());
    }
    this.queuedMessages -= messages;
    this.queuedBytes -= bytes;
    this.counters.requests++;
    this.counters.messages += messages;
    if (messages > this.counters.largestRequest) this.counters.largestRequest = messages;

    const settle = (err?: Error) => {
      for (const p of batch) {
        if (p.state === 'settled') continue;
        p.state = 'settled';
        clearTimeout(p.timer);
        if (err) p.reject(err);
        else p.resolve();
      }
    };
    this.inFlight = this.producer
      .sendBatch({
        topicMessages: [...byTopic].map(([topic, msgs]) => ({ topic, messages: msgs })),
        acks: -1,
        timeout: this.opts.ackTimeoutMs,
        compression: this.opts.compression,
      })
      .then(
        () => {
          this.requestMs.add(performance.now() - leftAt);
          settle();
        },
        (err: Error) => settle(new LogUnavailableError(`Kafka did not take the events: ${err.message}`, { cause: err })),
      )
      .finally(() => {
        this.inFlight = null;
        this.schedule();
      });
  }

  async close(): Promise<void> {
    // Give what is queued its chance (each send is bounded by its own timeout), then disconnect.
    while (this.inFlight || this.queue.length > 0) {
      if (!this.inFlight) this.flush();
      await this.inFlight;
    }
    await this.producer.disconnect();
  }
}

export interface KafkaConsumerOptions {
  groupId: string;
  topic: string;
  /** Partitions folded at the same time by one worker process. */
  concurrency?: number;
  fromBeginning?: boolean;
  /** How long a silent member keeps its partitions before the group takes them back. */
  sessionTimeoutMs?: number;
  /** Fetch tuning (kafkajs names); defaults in KafkaLogConsumer. */
  fetch?: { maxWaitTimeInMs?: number; minBytes?: number; maxBytesPerPartition?: number; maxBytes?: number };
  /** Where handler failures and recoveries are reported; default: through kafkajs's logger (warnings only). */
  logger?: Logger;
  /** Backoff of a batch whose handler throws; defaults in BatchRetries (100 ms doubling to 5 s). */
  retry?: RetryOptions;
}

/**
 * A consumer-group member that hands whole batches to the handler and commits a partition's offset
 * only after the handler resolved, i.e. after the fold is durable in Redis.
 *
 * A handler that throws has met an infrastructure failure (Kafka or Redis away, Redis out of
 * memory): the same batch is retried here, in place, with a growing pause, so kafkajs never sees the
 * error (it would log it, give up after its own retries and restart the whole consumer). While it
 * waits, and while a handler runs long (ioredis queues commands while Redis is away), the member
 * keeps heartbeating, so the group does not hand its partitions around because Redis is down.
 * A rebalance ends the wait: the batch, uncommitted, goes to whichever member owns the partition.
 */
export class KafkaLogConsumer implements LogConsumer {
  private readonly consumer: Consumer;
  private readonly retries: BatchRetries;
  private readonly heartbeatMs: number;
  private abort = new AbortController();
  /** run() was called and stop() was not. */
  private started = false;
  /** In the group since the last join, and kafkajs has not crashed since. */
  private joined = false;
  /** Partitions of the topic this member owns, from the last group join. */
  private owned = new Set<number>();
  private admin: Admin | undefined;
  private adminConnecting: Promise<Admin> | undefined;

  constructor(private readonly kafka: Kafka, private readonly opts: KafkaConsumerOptions) {
    const sessionTimeout = opts.sessionTimeoutMs ?? 30_000;
    const fetch = { maxWaitTimeInMs: 50, minBytes: 1, maxBytesPerPartition: 1 << 20, maxBytes: 10 << 20, ...opts.fetch };
    this.heartbeatMs = Math.min(3000, Math.floor(sessionTimeout / 3));
    this.consumer = kafka.consumer({ groupId: opts.groupId, ...fetch, sessionTimeout, heartbeatInterval: this.heartbeatMs });
    // Without a logger of its own (replay, benchmarks), failures still show, through kafkajs's.
    const kafkaLog = kafka.logger();
    const log: RetryLog = opts.logger ?? { warn: (fields, msg) => kafkaLog.warn(msg, fields), info: (fields, msg) => kafkaLog.info(msg, fields) };
    this.retries = new BatchRetries(opts.topic, log, opts.retry);
    const { GROUP_JOIN, CRASH } = this.consumer.events;
    this.consumer.on(GROUP_JOIN, ({ payload }) => {
      this.joined = true;
      this.owned = new Set(payload.memberAssignment[opts.topic] ?? []);
      this.retries.keepOnly(this.owned);
      this.retries.succeeded(-1);
    });
    this.consumer.on(CRASH, ({ payload }) => {
      this.joined = false;
      this.owned = new Set();
      this.retries.keepOnly(this.owned);
      if (!this.started) return;
      // kafkajs restarts the consumer after retriable errors (failing until it has rejoined); after
      // others it has given up for good, and only a new process helps.
      this.retries.failed(-1, payload.error);
      if (!payload.restart) {
        this.started = false;
        opts.logger?.error({ topic: opts.topic, err: payload.error.message }, `the ${opts.topic} consumer stopped for good after an error kafkajs does not retry`);
      }
    });
  }

  async run(handler: BatchHandler): Promise<void> {
    this.abort = new AbortController();
    this.started = true;
    try {
      await this.consumer.connect();
      await this.consumer.subscribe({ topic: this.opts.topic, fromBeginning: this.opts.fromBeginning ?? true });
    } catch (err) {
      this.started = false;
      throw err;
    }
    await this.consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.opts.concurrency ?? 3,
      eachBatch: async ({ batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale }) => {
        if (batch.messages.length === 0 || !isRunning() || isStale()) return;
        const consumed = {
          topic: batch.topic,
          partition: batch.partition,
          messages: batch.messages.map((m) => ({
            offset: m.offset,
            key: m.key ? m.key.toString() : null,
            value: m.value ? m.value.toString() : '',
            timestamp: Number(m.timestamp),
          })),
        };
        // Returning without resolving leaves the batch uncommitted: kafkajs fetches it again, here or
        // at the partition's next owner.
        const gone = () => this.abort.signal.aborted || !isRunning() || isStale();
        for (;;) {
          try {
            await this.heartbeating(heartbeat, () => handler(consumed));
            break;
          } catch (err) {
            if (gone()) return;
            await this.wait(this.retries.failed(batch.partition, err), heartbeat);
            if (gone()) return;
          }
        }
        this.retries.succeeded(batch.partition);
        const last = batch.messages[batch.messages.length - 1]!.offset;
        resolveOffset(last);
        await this.commit(commitOffsetsIfNecessary, { topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: (BigInt(last) + 1n).toString() }] }] });
        await heartbeat();
      },
    });
  }

  /**
   * Commits through the batch's own commit (kafkajs's group, no retry wrapper), so that group
   * trouble reaches kafkajs as it is: `consumer.commitOffsets` wraps "the coordinator is not aware
   * of this member" (a member that was silent past its session) into a non-retriable error, on
   * which kafkajs stops the consumer for good, while the error itself makes it rejoin. Passing
   * trouble (the coordinator moving, a timeout) is retried here a few times first.
   */
  private async commit(commitOffsets: (offsets: Offsets) => Promise<void>, offsets: Offsets): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await commitOffsets(offsets);
        return;
      } catch (err) {
        const e = err as { type?: string; retriable?: boolean };
        const groupTrouble = e.type === 'UNKNOWN_MEMBER_ID' || e.type === 'REBALANCE_IN_PROGRESS' || e.type === 'NOT_COORDINATOR_FOR_GROUP' || e.type === 'ILLEGAL_GENERATION';
        if (groupTrouble || e.retriable !== true || attempt >= 5 || this.abort.signal.aborted) throw err;
        await pause(100 * 2 ** attempt, this.abort.signal);
      }
    }
  }

  /** Runs `work`, heartbeating meanwhile; a failed heartbeat shows at the commit, not here. */
  private async heartbeating<T>(heartbeat: () => Promise<void>, work: () => Promise<T>): Promise<T> {
    const timer = setInterval(() => heartbeat().catch(() => {}), this.heartbeatMs);
    try {
      return await work();
    } finally {
      clearInterval(timer);
    }
  }

  /**
   * The backoff pause, heartbeating meanwhile; ends early on stop(). A heartbeat that fails
   * (a rebalance, the coordinator away) is thrown to kafkajs, which rejoins or reconnects.
   */
  private async wait(ms: number, heartbeat: () => Promise<void>): Promise<void> {
    const until = Date.now() + ms;
    for (let left = ms; left > 0 && !this.abort.signal.aborted; left = until - Date.now()) {
      await pause(Math.min(left, this.heartbeatMs), this.abort.signal);
      if (!this.abort.signal.aborted) await heartbeat();
    }
  }

  health(): ConsumerHealth {
    return this.retries.health(this.started && this.joined);
  }

  /**
   * Per partition this member owns: the end of the partition minus the group's committed offset
   * (a group that never committed starts at the beginning, so the whole partition counts).
   * Owned partitions only, so that summing every worker's lag counts each partition once.
   */
  async lag(): Promise<Map<number, number>> {
    const owned = this.owned;
    if (owned.size === 0) return new Map();
    const admin = await this.connectedAdmin();
    const [ends, committed] = await Promise.all([admin.fetchTopicOffsets(this.opts.topic), admin.fetchOffsets({ groupId: this.opts.groupId, topics: [this.opts.topic] })]);
    const at = new Map((committed.find((t) => t.topic === this.opts.topic)?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
    const lag = new Map<number, number>();
    for (const e of ends) {
      if (!owned.has(e.partition)) continue;
      const c = at.get(e.partition) ?? -1n;
      const from = c >= 0n ? c : (this.opts.fromBeginning ?? true) ? BigInt(e.low) : BigInt(e.high);
      const behind = BigInt(e.high) - from;
      lag.set(e.partition, Number(behind > 0n ? behind : 0n));
    }
    return lag;
  }

  private connectedAdmin(): Promise<Admin> {
    if (this.admin) return Promise.resolve(this.admin);
    this.adminConnecting ??= (async () => {
      const admin = this.kafka.admin();
      try {
        await admin.connect();
      } catch (err) {
        this.adminConnecting = undefined;
        throw err;
      }
      this.admin = admin;
      return admin;
    })();
    return this.adminConnecting;
  }

  async stop(): Promise<void> {
    this.started = false;
    this.joined = false;
    this.abort.abort();
    await this.consumer.disconnect();
    const admin = this.admin ?? (await this.adminConnecting?.catch(() => undefined));
    this.admin = undefined;
    this.adminConnecting = undefined;
    await admin?.disconnect();
    this.owned = new Set();
    this.retries.clear();
  }
}
