import {
  BatchRetries,
  type BatchControl,
  type ConsumerHandler,
  type ConsumedMessage,
  type ConsumerHealth,
  type ConsumerOptions,
  type Log,
  type LogConsumer,
  type LogMessage,
  type LogProducer,
  type StartAt,
} from './log.js';
import type { Logger } from './logger.js';

/**
 * The embedded mode's stand-in for Kafka: topics of ordered partitions in memory, messages routed
 * by key, consumer groups with committed offsets per group name and Kafka's start semantics. Enough
 * for `npm start` and development; it keeps nothing across restarts, which the README says.
 *
 * One member per group at a time (a second member of a running group is refused): one process
 * has no one to share partitions with.
 */
export class PartitionedLog implements Log {
  private readonly topics = new Map<string, ConsumedMessage[][]>();
  private readonly waiters = new Set<() => void>();
  /** group → topic → per partition, the next offset to read (the committed offset). */
  private readonly groups = new Map<string, Map<string, number[]>>();
  /** The running member of each group. */
  private readonly members = new Map<string, EmbeddedConsumer>();
  private readonly consumers = new Set<EmbeddedConsumer>();
  private readonly sharedProducer: LogProducer = {
    send: async (topic, messages) => this.append(topic, messages),
    ready: () => true,
    close: async () => {},
  };

  constructor(
    readonly partitions = 4,
    private readonly opts: { logger?: Logger } = {},
  ) {}

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

  /** Every message of a topic, partition by partition (tests read it). */
  read(topic: string): ConsumedMessage[][] {
    return this.topic(topic);
  }

  waitForAppend(): Promise<void> {
    return new Promise((resolve) => this.waiters.add(resolve));
  }

  producer(): LogProducer {
    return this.sharedProducer;
  }

  /** A consumer-group member. */
  consumer(opts: ConsumerOptions): LogConsumer {
    const c = new EmbeddedConsumer(this, { logger: this.opts.logger, ...opts });
    this.consumers.add(c);
    return c;
  }

  async offsets(topic: string, at: StartAt): Promise<Map<number, string>> {
    return new Map(this.topic(topic).map((messages, p) => [p, String(positionOf(messages, at))]));
  }

  async close(): Promise<void> {
    for (const c of [...this.consumers]) await c.stop();
  }

  /** The group's committed offsets on `topic`, or where it would start (not recorded). */
  committed(group: string, topic: string, startAt: StartAt = 'beginning'): number[] {
    return this.groups.get(group)?.get(topic) ?? this.topic(topic).map((messages) => positionOf(messages, startAt));
  }

  /** Makes `member` the group's running member; a group that never committed starts at `startAt`. */
  join(member: EmbeddedConsumer, group: string, topic: string, startAt: StartAt): number[] {
    const running = this.members.get(group);
    if (running && running !== member) throw new Error(`consumer group "${group}" already has a running member in the in-process log (one member per group)`);
    this.members.set(group, member);
    let topics = this.groups.get(group);
    if (!topics) this.groups.set(group, (topics = new Map()));
    let offsets = topics.get(topic);
    if (!offsets) topics.set(topic, (offsets = this.committed(group, topic, startAt)));
    return offsets;
  }

  leave(member: EmbeddedConsumer, group: string, deleteGroup: boolean): void {
    if (this.members.get(group) === member) this.members.delete(group);
    if (deleteGroup) this.groups.delete(group);
    this.consumers.delete(member);
  }
}

/** Where a group starting at `at` begins in one partition. */
function positionOf(messages: readonly ConsumedMessage[], at: StartAt): number {
  if (at === 'beginning') return 0;
  if (at === 'end') return messages.length;
  // Append times only grow: the first record at or after the time.
  let lo = 0;
  let hi = messages.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (messages[mid]!.timestamp < at.timestamp) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * One member of a consumer group: batches of up to `maxBatch` records per partition, committed when
 * the handler resolves (see ConsumerHandler). A handler that throws is retried on the same batch with
 * a growing pause (see BatchRetries) while the other partitions go on, as Kafka's partitions would.
 */
class EmbeddedConsumer implements LogConsumer {
  private running = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  /** The group's committed offsets, shared with the log; set while running. */
  private committed: number[] | null = null;
  /** Per partition: not before this time (epoch ms) after a failure. */
  private readonly retryAt: number[];
  private readonly retries: BatchRetries;
  private readonly maxBatch: number;

  constructor(
    private readonly log: PartitionedLog,
    private readonly opts: ConsumerOptions,
  ) {
    this.retryAt = new Array<number>(log.partitions).fill(0);
    this.retries = new BatchRetries(opts.topic, opts.logger, opts.retry);
    this.maxBatch = opts.maxBatch ?? 1000;
  }

  async run(handler: ConsumerHandler): Promise<void> {
    if (this.running) throw new Error(`the ${this.opts.topic} consumer is already running`);
    this.committed = this.log.join(this, this.opts.group, this.opts.topic, this.opts.startAt ?? 'beginning');
    this.running = true;
    this.loop = this.consume(handler, this.committed);
  }

  private async consume(handler: ConsumerHandler, committed: number[]): Promise<void> {
    const stopped = () => !this.running;
    while (this.running) {
      let delivered = false;
      let nextRetry = Infinity;
      const parts = this.log.read(this.opts.topic);
      for (let p = 0; p < parts.length && this.running; p++) {
        const from = committed[p]!;
        const messages = parts[p]!.slice(from, from + this.maxBatch);
        if (messages.length === 0) continue;
        if (this.retryAt[p]! > Date.now()) {
          nextRetry = Math.min(nextRetry, this.retryAt[p]!);
          continue;
        }
        const ctl: BatchControl = {
          heartbeat: async () => {},
          commit: async (offset) => {
            committed[p] = Number(offset) + 1;
          },
          stopped,
          // One process, no await between the appends and the commit: nothing sees one without the other.
          publishAndCommit: async (records, offset) => {
            for (const r of records) if (r.messages.length > 0) this.log.append(r.topic, r.messages);
            committed[p] = Math.max(committed[p]!, Number(offset) + 1);
          },
        };
        try {
          await handler({ topic: this.opts.topic, partition: p, messages }, ctl);
          if (this.running || this.opts.commitOnStop) committed[p] = Math.max(committed[p]!, from + messages.length);
          this.retries.succeeded(p);
          delivered = true;
        } catch (err) {
          // A handler cut short by stop() has not failed: its batch simply comes again next time.
          if (!this.running) break;
          // Like Kafka: nothing is committed past what the handler committed, the rest comes again after the pause.
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
    const parts = this.log.read(this.opts.topic);
    const committed = this.committed ?? this.log.committed(this.opts.group, this.opts.topic, this.opts.startAt);
    return new Map(parts.map((messages, p) => [p, Math.max(0, messages.length - committed[p]!)]));
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
    this.loop = null;
    this.retries.clear();
    this.log.leave(this, this.opts.group, this.opts.ephemeral ?? false);
    if (this.opts.ephemeral) this.committed = null;
  }
}
