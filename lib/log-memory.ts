import { BatchRetries, type BatchHandler, type ConsumedMessage, type ConsumerHealth, type LogConsumer, type LogMessage, type LogProducer, type RetryOptions } from './log.js';
import type { Logger } from './logger.js';

/**
 * The embedded mode's stand-in for Kafka: topics of ordered partitions in memory, messages routed
 * by key, one consumer group with committed offsets. Enough for `npm start` and development; it
 * keeps nothing across restarts, which the README says.
 */
export class PartitionedLog {
  private readonly topics = new Map<string, ConsumedMessage[][]>();
  private readonly waiters = new Set<() => void>();

  constructor(readonly partitions = 4) {}

  private topic(name: string): ConsumedMessage[][] {
    let t = this.topics.get(name);
    if (!t) this.topics.set(name, (t = Array.from({ length: this.partitions }, () => [])));
    return t;
  }

  partitionOf(key: string): number {
    let h = 0x811c9dc5;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
    return (h >>> 0) % this.partitions;
  }

  append(topic: string, messages: LogMessage[]): void {
    const parts = this.topic(topic);
    const now = Date.now();
    for (const m of messages) {
      const p = parts[this.partitionOf(m.key)]!;
      p.push({ offset: String(p.length), key: m.key, value: m.value, timestamp: now });
    }
    for (const wake of this.waiters) wake();
    this.waiters.clear();
  }

  /** Every message of a topic, partition by partition (tests and the replay read it). */
  read(topic: string): ConsumedMessage[][] {
    return this.topic(topic);
  }

  waitForAppend(): Promise<void> {
    return new Promise((resolve) => this.waiters.add(resolve));
  }

  producer(): LogProducer {
    return {
      send: async (topic, messages) => this.append(topic, messages),
      ready: () => true,
      close: async () => {},
    };
  }

  consumer(topic: string, maxBatch = 1000, opts: EmbeddedConsumerOptions = {}): LogConsumer {
    return new EmbeddedConsumer(this, topic, maxBatch, opts);
  }
}

export interface EmbeddedConsumerOptions {
  /** Where failures of the batch handler are reported (at warn, not once per attempt). */
  logger?: Logger;
  retry?: RetryOptions;
}

/**
 * One consumer group of one member: batches of up to `maxBatch` records per partition, committed
 * when the handler resolves. A handler that throws is retried on the same batch with a growing
 * pause (see BatchRetries) while the other partitions go on, as Kafka's partitions would.
 */
class EmbeddedConsumer implements LogConsumer {
  private running = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private readonly committed: number[];
  /** Per partition: not before this time (epoch ms) after a failure. */
  private readonly retryAt: number[];
  private readonly retries: BatchRetries;

  constructor(
    private readonly log: PartitionedLog,
    private readonly topic: string,
    private readonly maxBatch: number,
    opts: EmbeddedConsumerOptions,
  ) {
    this.committed = new Array<number>(log.partitions).fill(0);
    this.retryAt = new Array<number>(log.partitions).fill(0);
    this.retries = new BatchRetries(topic, opts.logger, opts.retry);
  }

  async run(handler: BatchHandler): Promise<void> {
    if (this.running) throw new Error(`the ${this.topic} consumer is already running`);
    this.running = true;
    this.loop = this.consume(handler);
  }

  private async consume(handler: BatchHandler): Promise<void> {
    while (this.running) {
      let delivered = false;
      let nextRetry = Infinity;
      const parts = this.log.read(this.topic);
      for (let p = 0; p < parts.length && this.running; p++) {
        const from = this.committed[p]!;
        const messages = parts[p]!.slice(from, from + this.maxBatch);
        if (messages.length === 0) continue;
        if (this.retryAt[p]! > Date.now()) {
          nextRetry = Math.min(nextRetry, this.retryAt[p]!);
          continue;
        }
        try {
          await handler({ topic: this.topic, partition: p, messages });
          this.committed[p] = from + messages.length;
          this.retries.succeeded(p);
          delivered = true;
        } catch (err) {
          // A handler cut short by stop() has not failed: its batch simply comes again next time.
          if (!this.running) break;
          // Like Kafka: nothing is committed, the same batch comes again after the pause.
          this.retryAt[p] = Date.now() + this.retries.failed(p, err);
          nextRetry = Math.min(nextRetry, this.retryAt[p]!);
        }
      }
      if (!delivered && this.running) await this.idle(nextRetry);
    }
  }

  /** Waits for an append, stop(), or the next partition's retry time. */
  private async idle(until: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const waits: Promise<void>[] = [this.log.waitForAppend(), new Promise<void>((r) => (this.wake = r))];
    if (until < Infinity) waits.push(new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, until - Date.now())))));
    try {
      await Promise.race(waits);
    } finally {
      clearTimeout(timer);
      this.wake = null;
    }
  }

  health(): ConsumerHealth {
    return this.retries.health(this.running);
  }

  async lag(): Promise<Map<number, number>> {
    const parts = this.log.read(this.topic);
    return new Map(parts.map((messages, p) => [p, messages.length - this.committed[p]!]));
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
    this.retries.clear();
  }
}
