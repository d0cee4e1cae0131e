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
import { partitionKey, SegmentBook, UNBOUNDED, type RetentionFloor, type RetentionLimits } from './log-retention.js';

/**
 * Where an embedded log keeps its records: in memory (`MemoryRecords`, below) or in segment files
 * (`SegmentRecords`, lib/log-segments.ts). Offsets are contiguous per partition; the oldest kept
 * rises as retention drops whole segments.
 */
export interface EmbeddedRecords {
  /** Appends each partition's messages, in order, all with `timestamp` (one write for the lot). */
  append(topic: string, parts: ReadonlyMap<number, readonly LogMessage[]>, timestamp: number): void;
  /** The oldest offset kept. */
  start(topic: string, partition: number): number;
  /** The next offset to be written. */
  end(topic: string, partition: number): number;
  /** Up to `max` records from `from` on (`from` at or after start()). */
  read(topic: string, partition: number, from: number, max: number): ConsumedMessage[];
  /** The first offset appended at or after `timestamp`; end() when there is none. */
  seek(topic: string, partition: number, timestamp: number): number;
  /** Whether the log is past its bound (cheap: checked after every append). */
  over(now: number): boolean;
  /** Drops the oldest segments while past the bound, never a record at or after `floor`; answers whether the floor held one back. */
  trim(floor: RetentionFloor, now: number): { dropped: number; blocked: boolean };
  /** What is kept now. */
  size(): { events: number; bytes: number; segments: number };
  close(): void;
}

interface MemoryPartition {
  /** Offset of items[0]. */
  first: number;
  items: ConsumedMessage[];
}

/** The records of `npm start` without a data directory (and of the tests): arrays in memory. */
export class MemoryRecords implements EmbeddedRecords {
  private readonly parts = new Map<string, MemoryPartition>();
  private readonly book: SegmentBook;

  constructor(limits: RetentionLimits = UNBOUNDED) {
    this.book = new SegmentBook(limits);
  }

  private part(topic: string, partition: number): MemoryPartition {
    const key = partitionKey(topic, partition);
    let p = this.parts.get(key);
    if (!p) this.parts.set(key, (p = { first: 0, items: [] }));
    return p;
  }

  append(topic: string, parts: ReadonlyMap<number, readonly LogMessage[]>, timestamp: number): void {
    for (const [partition, messages] of parts) {
      const p = this.part(topic, partition);
      for (const m of messages) {
        if (this.book.shouldRoll(timestamp)) this.book.startSegment();
        const offset = p.first + p.items.length;
        p.items.push({ offset: String(offset), key: m.key, value: m.value, timestamp });
        this.book.add(topic, partition, offset, m.key.length + m.value.length, timestamp);
      }
    }
  }

  start(topic: string, partition: number): number {
    return this.part(topic, partition).first;
  }

  end(topic: string, partition: number): number {
    const p = this.part(topic, partition);
    return p.first + p.items.length;
  }

  read(topic: string, partition: number, from: number, max: number): ConsumedMessage[] {
    const p = this.part(topic, partition);
    const i = Math.max(0, from - p.first);
    return p.items.slice(i, i + max);
  }

  seek(topic: string, partition: number, timestamp: number): number {
    const p = this.part(topic, partition);
    // Append times only grow: the first record at or after the time.
    let lo = 0;
    let hi = p.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (p.items[mid]!.timestamp < timestamp) lo = mid + 1;
      else hi = mid;
    }
    return p.first + lo;
  }

  over(now: number): boolean {
    return this.book.over(now) || (this.book.limits.maxAgeMs < Infinity && this.book.shouldRoll(now));
  }

  trim(floor: RetentionFloor, now: number): { dropped: number; blocked: boolean } {
    // A quiet log's active segment ages too: it is rolled so that it can go in its turn.
    if (this.book.shouldRoll(now)) this.book.startSegment();
    const { dropped, blocked } = this.book.takeDroppable(floor, now);
    let n = 0;
    for (const s of dropped) {
      n += s.events;
      for (const [key, last] of s.last) {
        const p = this.parts.get(key)!;
        if (last < p.first) continue;
        p.items.splice(0, last + 1 - p.first);
        p.first = last + 1;
      }
    }
    return { dropped: n, blocked };
  }

  size(): { events: number; bytes: number; segments: number } {
    return { events: this.book.events, bytes: this.book.bytes, segments: this.book.segments.length };
  }

  close(): void {}
}

export interface PartitionedLogOptions {
  logger?: Logger | undefined;
  /** Where the records live; default: in memory, within `retention`. */
  records?: EmbeddedRecords;
  /** The bound of the default in-memory records (ignored with `records`). Default: unbounded. */
  retention?: RetentionLimits;
  /**
   * Consumer groups whose unread records retention never drops (the worker's on `clicks.raw`):
   * past the bound the log grows rather than lose a record not yet folded.
   */
  protect?: readonly { group: string; topic: string }[];
}

/**
 * The embedded mode's stand-in for Kafka: topics of ordered partitions, messages routed by key,
 * consumer groups with committed offsets per group name and Kafka's start semantics, and a bound
 * past which the oldest segments go. Enough for `npm start` and development; this class keeps its
 * records in memory (`DurableLog`, lib/log-durable.ts, keeps them in files across restarts).
 *
 * One member per group at a time (a second member of a running group is refused): one process
 * has no one to share partitions with.
 */
export class PartitionedLog implements Log {
  readonly records: EmbeddedRecords;
  private readonly waiters = new Set<() => void>();
  /** group → topic → per partition, the next offset to read (the committed offset). */
  protected readonly groups = new Map<string, Map<string, number[]>>();
  /** Groups deleted on stop: never part of a snapshot. */
  protected readonly ephemeralGroups = new Set<string>();
  /** The running member of each group. */
  private readonly members = new Map<string, EmbeddedConsumer>();
  private readonly consumers = new Set<EmbeddedConsumer>();
  private lastTimestamp = 0;
  private warnedBlockedAt = 0;
  protected readonly logger: Logger | undefined;
  protected readonly protect: readonly { group: string; topic: string }[];
  private readonly sharedProducer: LogProducer = {
    send: async (topic, messages) => this.send(topic, messages),
    ready: () => true,
    close: async () => {},
  };

  constructor(
    readonly partitions = 4,
    opts: PartitionedLogOptions = {},
  ) {
    this.records = opts.records ?? new MemoryRecords(opts.retention);
    this.logger = opts.logger;
    this.protect = opts.protect ?? [];
  }

  partitionOf(key: string): number {
    let h = 0x811c9dc5;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
    return (h >>> 0) % this.partitions;
  }

  /** What the producer's send does: here, append (the durable log also waits for the disk). */
  protected async send(topic: string, messages: LogMessage[]): Promise<void> {
    this.append(topic, messages);
  }

  append(topic: string, messages: readonly LogMessage[]): void {
    if (messages.length === 0) return;
    // Append times never go back (a clock step must not break the search by time).
    const now = (this.lastTimestamp = Math.max(this.lastTimestamp, Date.now()));
    const byPartition = new Map<number, LogMessage[]>();
    for (const m of messages) {
      const p = this.partitionOf(m.key);
      const list = byPartition.get(p);
      if (list) list.push(m);
      else byPartition.set(p, [m]);
    }
    this.records.append(topic, byPartition, now);
    for (const wake of this.waiters) wake();
    this.waiters.clear();
    if (this.records.over(now)) this.trim(now);
  }

  /** Drops what the bound no longer keeps; warns (once a minute) while a protected group holds it back. */
  protected trim(now = Date.now()): { dropped: number; blocked: boolean } {
    const r = this.records.trim((topic, p) => this.floor(topic, p), now);
    if (r.blocked && now - this.warnedBlockedAt > 60_000) {
      this.warnedBlockedAt = now;
      this.logger?.warn({ kept: this.records.size() }, 'the embedded log is past its bound: the worker has not folded its oldest records yet, so they stay');
    }
    return r;
  }

  /** The first offset retention must keep: the least committed offset of the protected groups. */
  protected floor(topic: string, partition: number): number | undefined {
    let floor: number | undefined;
    for (const g of this.protect) {
      if (g.topic !== topic) continue;
      // A protected group that never committed has read nothing: everything stays.
      const at = this.groups.get(g.group)?.get(topic)?.[partition] ?? this.records.start(topic, partition);
      floor = floor === undefined ? at : Math.min(floor, at);
    }
    return floor;
  }

  /** Every message kept of a topic, partition by partition (tests read it). */
  read(topic: string): ConsumedMessage[][] {
    return Array.from({ length: this.partitions }, (_, p) => this.records.read(topic, p, this.records.start(topic, p), Infinity));
  }

  waitForAppend(): Promise<void> {
    return new Promise((resolve) => this.waiters.add(resolve));
  }

  producer(): LogProducer {
    return this.sharedProducer;
  }

  /** A consumer-group member. */
  consumer(opts: ConsumerOptions): LogConsumer {
    const c = new EmbeddedConsumer(this, { logger: this.logger, ...opts });
    this.consumers.add(c);
    return c;
  }

  async offsets(topic: string, at: StartAt): Promise<Map<number, string>> {
    return new Map(Array.from({ length: this.partitions }, (_, p) => [p, String(this.positionOf(topic, p, at))]));
  }

  async close(): Promise<void> {
    for (const c of [...this.consumers]) await c.stop();
  }

  /** Where a group starting at `at` begins in one partition. */
  positionOf(topic: string, partition: number, at: StartAt): number {
    if (at === 'beginning') return this.records.start(topic, partition);
    if (at === 'end') return this.records.end(topic, partition);
    return this.records.seek(topic, partition, at.timestamp);
  }

  /** The group's committed offsets on `topic`, or where it would start (not recorded). */
  committed(group: string, topic: string, startAt: StartAt = 'beginning'): number[] {
    return this.groups.get(group)?.get(topic) ?? Array.from({ length: this.partitions }, (_, p) => this.positionOf(topic, p, startAt));
  }

  /** Makes `member` the group's running member; a group that never committed starts at `startAt`. */
  join(member: EmbeddedConsumer, group: string, topic: string, startAt: StartAt, ephemeral: boolean): number[] {
    const running = this.members.get(group);
    if (running && running !== member) throw new Error(`consumer group "${group}" already has a running member in the in-process log (one member per group)`);
    this.members.set(group, member);
    if (ephemeral) this.ephemeralGroups.add(group);
    let topics = this.groups.get(group);
    if (!topics) this.groups.set(group, (topics = new Map()));
    let offsets = topics.get(topic);
    if (!offsets) topics.set(topic, (offsets = this.committed(group, topic, startAt)));
    return offsets;
  }

  leave(member: EmbeddedConsumer, group: string, deleteGroup: boolean): void {
    if (this.members.get(group) === member) this.members.delete(group);
    if (deleteGroup) {
      this.groups.delete(group);
      this.ephemeralGroups.delete(group);
    }
    this.consumers.delete(member);
  }
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
    this.committed = this.log.join(this, this.opts.group, this.opts.topic, this.opts.startAt ?? 'beginning', this.opts.ephemeral ?? false);
    this.running = true;
    this.loop = this.consume(handler, this.committed);
  }

  private async consume(handler: ConsumerHandler, committed: number[]): Promise<void> {
    const stopped = () => !this.running;
    const { topic } = this.opts;
    const records = this.log.records;
    while (this.running) {
      let delivered = false;
      let nextRetry = Infinity;
      for (let p = 0; p < this.log.partitions && this.running; p++) {
        // Like Kafka's earliest reset: what retention dropped before this group read it is gone.
        const start = records.start(topic, p);
        if (committed[p]! < start) {
          this.opts.logger?.warn(
            { topic, partition: p, group: this.opts.group, dropped: start - committed[p]! },
            'the log dropped records this group had not read (past its bound)',
          );
          committed[p] = start;
        }
        const from = committed[p]!;
        if (from >= records.end(topic, p)) continue;
        if (this.retryAt[p]! > Date.now()) {
          nextRetry = Math.min(nextRetry, this.retryAt[p]!);
          continue;
        }
        const messages = records.read(topic, p, from, this.maxBatch);
        if (messages.length === 0) continue;
        const ctl: BatchControl = {
          heartbeat: async () => {},
          commit: async (offset) => {
            committed[p] = Number(offset) + 1;
          },
          stopped,
          // One process, no await between the appends and the commit: nothing sees one without the other.
          publishAndCommit: async (out, offset) => {
            for (const r of out) if (r.messages.length > 0) this.log.append(r.topic, r.messages);
            committed[p] = Math.max(committed[p]!, Number(offset) + 1);
          },
        };
        try {
          await handler({ topic, partition: p, messages }, ctl);
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
    const { topic } = this.opts;
    const committed = this.committed ?? this.log.committed(this.opts.group, topic, this.opts.startAt);
    return new Map(
      Array.from({ length: this.log.partitions }, (_, p) => {
        const end = this.log.records.end(topic, p);
        return [p, Math.max(0, end - Math.max(committed[p]!, this.log.records.start(topic, p)))];
      }),
    );
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
