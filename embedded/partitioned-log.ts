import type { BatchHandler, ConsumedMessage, LogConsumer, LogMessage, LogProducer } from '../lib/log.js';

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

  consumer(topic: string, maxBatch = 1000): LogConsumer {
    return new EmbeddedConsumer(this, topic, maxBatch);
  }
}

class EmbeddedConsumer implements LogConsumer {
  private running = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private readonly committed: number[];

  constructor(private readonly log: PartitionedLog, private readonly topic: string, private readonly maxBatch: number) {
    this.committed = new Array<number>(log.partitions).fill(0);
  }

  async run(handler: BatchHandler): Promise<void> {
    this.running = true;
    this.loop = this.consume(handler);
  }

  private async consume(handler: BatchHandler): Promise<void> {
    while (this.running) {
      let delivered = false;
      const parts = this.log.read(this.topic);
      for (let p = 0; p < parts.length && this.running; p++) {
        const from = this.committed[p]!;
        const messages = parts[p]!.slice(from, from + this.maxBatch);
        if (messages.length === 0) continue;
        try {
          await handler({ topic: this.topic, partition: p, messages });
          this.committed[p] = from + messages.length;
        } catch {
          // Like Kafka: nothing is committed, the batch comes again after a pause.
          await new Promise((r) => setTimeout(r, 500));
        }
        delivered = true;
      }
      if (!delivered && this.running) {
        await Promise.race([this.log.waitForAppend(), new Promise<void>((r) => (this.wake = r))]);
      }
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
  }
}
