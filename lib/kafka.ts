import { Kafka, logLevel, Partitioners, type Consumer, type Producer, type LogEntry } from 'kafkajs';
import { TOPICS } from '../contract/raw-event.js';
import type { Logger } from './logger.js';
import { LogUnavailableError, type BatchHandler, type LogConsumer, type LogMessage, type LogProducer } from './log.js';

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
  });
}

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
}

export class KafkaLogProducer implements LogProducer {
  private readonly producer: Producer;
  private connected = false;

  constructor(kafka: Kafka, private readonly opts: KafkaProducerOptions) {
    // Idempotent: a produce retried by kafkajs after a lost acknowledgement is written once.
    this.producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
      retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 2000 },
    });
    this.producer.on(this.producer.events.CONNECT, () => (this.connected = true));
    this.producer.on(this.producer.events.DISCONNECT, () => (this.connected = false));
  }

  async connect(): Promise<void> {
    await this.producer.connect();
  }

  ready(): boolean {
    return this.connected;
  }

  async send(topic: string, messages: LogMessage[]): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new LogUnavailableError(`no acknowledgement from Kafka within ${this.opts.ackTimeoutMs} ms`)), this.opts.ackTimeoutMs);
    });
    try {
      await Promise.race([this.producer.send({ topic, messages, acks: -1, timeout: this.opts.ackTimeoutMs }), timeout]);
    } catch (err) {
      if (err instanceof LogUnavailableError) throw err;
      throw new LogUnavailableError(`Kafka did not take the events: ${(err as Error).message}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    await this.producer.disconnect();
  }
}

export interface KafkaConsumerOptions {
  groupId: string;
  topic: string;
  /** Partitions folded at the same time by one worker process. */
  concurrency?: number;
  fromBeginning?: boolean;
}

/**
 * A consumer-group member that hands whole batches to the handler and commits a partition's offset
 * only after the handler resolved, i.e. after the fold is durable in Redis.
 */
export class KafkaLogConsumer implements LogConsumer {
  private readonly consumer: Consumer;

  constructor(kafka: Kafka, private readonly opts: KafkaConsumerOptions) {
    this.consumer = kafka.consumer({ groupId: opts.groupId, maxWaitTimeInMs: 50, minBytes: 1, sessionTimeout: 30_000, heartbeatInterval: 3000 });
  }

  async run(handler: BatchHandler): Promise<void> {
    await this.consumer.connect();
    await this.consumer.subscribe({ topic: this.opts.topic, fromBeginning: this.opts.fromBeginning ?? true });
    await this.consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.opts.concurrency ?? 3,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
        if (batch.messages.length === 0 || !isRunning() || isStale()) return;
        await handler({
          topic: batch.topic,
          partition: batch.partition,
          messages: batch.messages.map((m) => ({
            offset: m.offset,
            key: m.key ? m.key.toString() : null,
            value: m.value ? m.value.toString() : '',
            timestamp: Number(m.timestamp),
          })),
        });
        const last = batch.messages[batch.messages.length - 1]!.offset;
        resolveOffset(last);
        await this.consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: (BigInt(last) + 1n).toString() }]);
        await heartbeat();
      },
    });
  }

  async stop(): Promise<void> {
    await this.consumer.disconnect();
  }
}
