import { Partitioners, type CompressionTypes, type ICustomPartitioner, type Kafka, type Producer, type ProducerConfig } from 'kafkajs';
import { platformaticWire } from './producer-platformatic.js';
import { LogUnavailableError, type LogMessage, type LogProducer, type TopicMessages } from '../log.js';

/** The Kafka client a producer sends with (KAFKA_PRODUCER): @platformatic/kafka 1.x (the configuration's default) or kafkajs. */
export type ProducerClient = 'kafkajs' | 'platformatic';

/**
 * One client's produce path, below the micro-batching queue: KafkaLogProducer builds the requests
 * (one at a time, in order) and keeps every caller's promise; a wire only puts one request on the
 * wire (idempotent, acks=-1, keys hashed as Java's client does) and says whether it is connected.
 */
export interface ProduceWire {
  connect(): Promise<void>;
  /** Resolves once every in-sync replica has the records of this one request. */
  send(topicMessages: TopicMessages[], timeoutMs: number): Promise<void>;
  disconnect(): Promise<void>;
  /** Set by the wire when its connection comes and goes (for /readyz). */
  onConnected(listener: (connected: boolean) => void): void;
}

/** Makes a fresh wire (a new producer id): at start, and after a fatal idempotence error. */
export type WireFactory = () => ProduceWire;

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
  /** Codec for produce requests (kafkajs has GZIP built in; kafkajs only). Default none. */
  compression?: CompressionTypes;
  /**
   * The client under the queue. Default here kafkajs (KAFKA_PRODUCER's default, which the
   * processes pass, is platformatic). `platformatic` needs `brokers` (it opens its own
   * connections) and never carries transactions: those stay on kafkajs (lib/kafka/transactions.ts).
   */
  client?: ProducerClient;
  /** Comma-separated host:port list, for `client: 'platformatic'`. */
  brokers?: string;
  /** The client id of a `platformatic` producer. Default `clickfold`. */
  clientId?: string;
  /** A wire of the caller's (tests): replaces `client`. */
  wire?: WireFactory;
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
  /** Producers replaced after a fatal idempotence error. */
  replaced: number;
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
/**
 * Errors after which an idempotent producer never succeeds again: its producer id and sequence
 * numbers no longer match the broker's (seen here after a broker restart, as in kafkajs#598 and
 * librdkafka's "fatal" idempotence errors). The only way on is a new producer id.
 */
const FATAL_IDEMPOTENCE = new Set(['OUT_OF_ORDER_SEQUENCE_NUMBER', 'UNKNOWN_PRODUCER_ID', 'INVALID_PRODUCER_EPOCH', 'INVALID_PRODUCER_ID_MAPPING']);

/** Whether `err`, or an error it wraps (kafkajs wraps retried ones), is one of those. */
export function isFatalIdempotenceError(err: unknown, depth = 0): boolean {
  // kafkajs names the broker's error in `type`, @platformatic/kafka in `apiId`, and aggregates the
  // errors of a request sent to several brokers (or retried) in `errors`.
  const e = err as { type?: unknown; apiId?: unknown; cause?: unknown; originalError?: unknown; errors?: unknown } | null | undefined;
  if (!e || depth >= 5) return false;
  if (typeof e.type === 'string' && FATAL_IDEMPOTENCE.has(e.type)) return true;
  if (typeof e.apiId === 'string' && FATAL_IDEMPOTENCE.has(e.apiId)) return true;
  if (Array.isArray(e.errors) && e.errors.some((x) => isFatalIdempotenceError(x, depth + 1))) return true;
  return isFatalIdempotenceError(e.cause ?? e.originalError, depth + 1);
}

/** The kafkajs wire: a producer with PRODUCER_CONFIG, one `sendBatch` per request. */
export function kafkajsWire(kafka: Kafka, compression?: CompressionTypes): WireFactory {
  return () => {
    const producer: Producer = kafka.producer(PRODUCER_CONFIG);
    return {
      connect: () => producer.connect(),
      disconnect: () => producer.disconnect(),
      async send(topicMessages, timeoutMs) {
        await producer.sendBatch({ topicMessages, acks: -1, timeout: timeoutMs, compression });
      },
      onConnected(listener) {
        producer.on(producer.events.CONNECT, () => listener(true));
        producer.on(producer.events.DISCONNECT, () => listener(false));
      },
    };
  };
}

export class KafkaLogProducer implements LogProducer {
  private producer: ProduceWire;
  private readonly makeWire: WireFactory;
  /** A replacement producer being connected after a fatal idempotence error, if any. */
  private replacing: Promise<void> | null = null;
  private connected = false;
  private queue: PendingSend[] = [];
  private queuedMessages = 0;
  private queuedBytes = 0;
  private inFlight: Promise<void> | null = null;
  private flushScheduled = false;
  private readonly lingerMs: number;
  private readonly maxBatchBytes: number;
  private readonly maxQueuedMessages: number;
  private readonly counters = { requests: 0, messages: 0, sends: 0, largestRequest: 0, timedOut: 0, refused: 0, replaced: 0 };
  private readonly requestMs = new Recent();
  private readonly queuedMs = new Recent();

  constructor(
    kafka: Kafka,
    private readonly opts: KafkaProducerOptions,
  ) {
    this.makeWire = opts.wire ?? (opts.client === 'platformatic' ? platformaticWire(opts) : kafkajsWire(kafka, opts.compression));
    this.producer = this.create();
    this.lingerMs = opts.lingerMs ?? 0;
    this.maxBatchBytes = opts.maxBatchBytes ?? 900_000;
    this.maxQueuedMessages = opts.maxQueuedMessages ?? 200_000;
  }

  /** Which client carries the requests (for the bench's and the metrics' labels). */
  get client(): ProducerClient {
    return this.opts.client ?? 'kafkajs';
  }

  async connect(): Promise<void> {
    await this.producer.connect();
    // A wire may connect lazily without an event (platformatic connects on its first request).
    this.connected = true;
  }

  private create(): ProduceWire {
    const wire = this.makeWire();
    wire.onConnected((up) => {
      if (wire === this.producer || up) this.connected = up;
    });
    return wire;
  }

  /**
   * Swaps in a new producer (a new producer id) after a fatal idempotence error. The request that
   * failed was not written, so its senders got LogUnavailableError and retry; nothing leaves until
   * the new producer is connected.
   */
  private replace(): Promise<void> {
    this.replacing ??= (async () => {
      this.counters.replaced++;
      const old = this.producer;
      this.producer = this.create();
      this.connected = false;
      await old.disconnect().catch(() => {});
      for (let pause = 100; ; pause = Math.min(pause * 2, 2000)) {
        try {
          await this.producer.connect();
          this.connected = true;
          return;
        } catch {
          await new Promise((r) => setTimeout(r, pause));
        }
      }
    })().finally(() => {
      this.replacing = null;
    });
    return this.replacing;
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
    // A send larger than one produce request (a batch of dead letters, say) goes as several, in
    // order: the broker refuses a request over its message.max.bytes, and would refuse it every time.
    const chunks: { messages: LogMessage[]; bytes: number }[] = [];
    let current: { messages: LogMessage[]; bytes: number } = { messages: [], bytes: 0 };
    for (const m of messages) {
      const size = Buffer.byteLength(m.key) + Buffer.byteLength(m.value);
      if (current.messages.length > 0 && current.bytes + size > this.maxBatchBytes) {
        chunks.push(current);
        current = { messages: [], bytes: 0 };
      }
      current.messages.push(m);
      current.bytes += size;
    }
    chunks.push(current);
    if (chunks.length === 1) return this.enqueue(topic, current.messages, current.bytes);
    return Promise.all(chunks.map((c) => this.enqueue(topic, c.messages, c.bytes))).then(() => {});
  }

  private enqueue(topic: string, messages: LogMessage[], bytes: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
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
      .send(
        [...byTopic].map(([topic, msgs]) => ({ topic, messages: msgs })),
        this.opts.ackTimeoutMs,
      )
      .then(
        () => {
          this.requestMs.add(performance.now() - leftAt);
          settle();
        },
        async (err: Error) => {
          settle(new LogUnavailableError(`Kafka did not take the events: ${err.message}`, { cause: err }));
          // platformatic: after any failure (lib/kafka/producer-platformatic.ts says why).
          if (isFatalIdempotenceError(err) || this.client === 'platformatic') await this.replace();
        },
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
