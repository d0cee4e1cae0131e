import type { Kafka } from 'kafkajs';
import { LogUnavailableError, type ConsumerOptions, type Log, type LogProducer, type StartAt } from '../log.js';
import type { Logger } from '../logger.js';
import type { TopicRetention } from '../retention.js';
import { LazyAdmin, offsetsAt } from './admin.js';
import { createKafka, ensureTopics } from './client.js';
import { KafkaLogConsumer, type KafkaConsumerOptions } from './consumer.js';
import { KafkaLogProducer, type KafkaProducerOptions } from './producer.js';

export interface KafkaLogOptions {
  /** Comma-separated host:port list. */
  brokers: string;
  clientId: string;
  /** kafkajs's lines, and the consumers' failures and recoveries (unless a consumer names another). */
  logger: Logger;
  producer: KafkaProducerOptions;
  /** Creates the project's topics when missing, with these partitions, replicas and retention. */
  topics?: { partitions: number; replicationFactor: number; retention?: TopicRetention };
  /** Defaults of every consumer (a consumer's own options win). */
  consumers?: Partial<Pick<KafkaConsumerOptions, 'sessionTimeoutMs' | 'fetch' | 'retry' | 'transactionTimeoutMs'>>;
}

/**
 * The log port on Kafka: one kafkajs client per process, one micro-batching producer
 * (KafkaLogProducer, on kafkajs or on @platformatic/kafka: `producer.client`), consumer-group members (KafkaLogConsumer), and one admin client shared by
 * the offsets, the consumers' lag and their group set-up.
 */
export class KafkaLog implements Log {
  private readonly sharedProducer: KafkaLogProducer;
  /** The consumers' producer (transitions, dead letters), opened on first use; see `publisher`. */
  private publishing: { producer: KafkaLogProducer; connected: Promise<void> | null } | undefined;
  private readonly admin: LazyAdmin;
  private readonly consumers = new Set<KafkaLogConsumer>();

  constructor(
    readonly kafka: Kafka,
    private readonly opts: Omit<KafkaLogOptions, 'brokers' | 'clientId' | 'topics'>,
  ) {
    this.sharedProducer = new KafkaLogProducer(kafka, opts.producer);
    this.admin = new LazyAdmin(kafka);
  }

  /** Connects the producer (sends fail until it is). */
  async connect(): Promise<void> {
    await this.sharedProducer.connect();
  }

  producer(): KafkaLogProducer {
    return this.sharedProducer;
  }

  consumer(opts: ConsumerOptions & Pick<KafkaConsumerOptions, 'fetch'>): KafkaLogConsumer {
    const c = new KafkaLogConsumer(
      this.kafka,
      { logger: this.opts.logger, ...this.opts.consumers, ...opts },
      { admin: this.admin, producer: this.publisher() },
    );
    this.consumers.add(c);
    return c;
  }

  /**
   * What consumers publish with their commits goes through a producer of its own, not the one
   * ingest answers on: each producer has one request in flight (idempotence), so in a process
   * that runs both (`npm start`) the worker's transitions would otherwise wait behind ingest's
   * records and ingest's answers behind the transitions, on every click's way to its stage.
   * Connected on the first send, so a process without consumers that publish opens nothing.
   */
  private publisher(): LogProducer {
    const get = () => {
      this.publishing ??= { producer: new KafkaLogProducer(this.kafka, this.opts.producer), connected: null };
      const p = this.publishing;
      p.connected ??= p.producer.connect().catch((err: unknown) => {
        p.connected = null; // the next send tries again
        throw new LogUnavailableError(`could not connect the producer: ${(err as Error).message}`, { cause: err });
      });
      return p;
    };
    return {
      send: async (topic, messages) => {
        const p = get();
        await p.connected;
        await p.producer.send(topic, messages);
      },
      ready: () => this.publishing?.producer.ready() ?? this.sharedProducer.ready(),
      close: async () => {},
    };
  }

  async offsets(topic: string, at: StartAt): Promise<Map<number, string>> {
    return offsetsAt(await this.admin.get(), topic, at);
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.consumers].map((c) => c.stop()));
    this.consumers.clear();
    try {
      await Promise.all([this.sharedProducer.close(), this.publishing?.producer.close()]);
    } finally {
      await this.admin.close();
    }
  }
}

/** The process's Kafka log: client, topics (when `topics` is given), connected producer. */
export async function openKafkaLog(opts: KafkaLogOptions): Promise<KafkaLog> {
  const kafka = createKafka(opts.brokers, opts.clientId, opts.logger);
  if (opts.topics) await ensureTopics(kafka, opts.topics.partitions, opts.topics.replicationFactor, opts.topics.retention, opts.logger);
  // The platformatic producer opens its own connections: it needs the brokers and the client id.
  const log = new KafkaLog(kafka, { ...opts, producer: { brokers: opts.brokers, clientId: opts.clientId, ...opts.producer } });
  await log.connect();
  return log;
}
