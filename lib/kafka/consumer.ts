import type { Batch, Consumer, EachBatchPayload, Kafka, Offsets } from 'kafkajs';
import { crashPoint } from '../crash-points.js';
import {
  BatchRetries,
  pause,
  type BatchControl,
  type ConsumerHandler,
  type ConsumedMessage,
  type ConsumerHealth,
  type ConsumerOptions,
  type LogConsumer,
  type LogProducer,
  type RetryLog,
  type TopicMessages,
} from '../log.js';
import { committedOffset, deleteGroup, LazyAdmin, startNewGroupAt } from './admin.js';
import { KafkaLogProducer } from './producer.js';
import { PartitionTransactions, TransactionFenced } from './transactions.js';

export interface KafkaConsumerOptions extends ConsumerOptions {
  /** Fetch tuning (kafkajs names); defaults in KafkaLogConsumer. */
  fetch?: { maxWaitTimeInMs?: number; minBytes?: number; maxBytesPerPartition?: number; maxBytes?: number };
  /** With `transactional`: how long the broker lets a transaction stay open (see PartitionTransactions). */
  transactionTimeoutMs?: number;
}

/** What a consumer may share with the rest of its process (the Log adapter's). */
export interface SharedClients {
  admin?: LazyAdmin;
  /** Where `publishAndCommit` writes when not transactional; without it the consumer opens its own. */
  producer?: LogProducer;
}

/** A commit that failed inside a handler: it goes to kafkajs as it is (which rejoins), not into the batch retries. */
class CommitFailed extends Error {
  constructor(override readonly cause: unknown) {
    super('commit failed');
  }
}

/**
 * A consumer-group member that hands whole batches to the handler and commits a partition's offset
 * only after the handler resolved (or as the handler commits), i.e. after the fold is durable in Redis.
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
  private readonly admin: LazyAdmin;
  private readonly ownAdmin: boolean;
  private abort = new AbortController();
  /** run() was called and stop() was not. */
  private started = false;
  /** In the group since the last join, and kafkajs has not crashed since. */
  private joined = false;
  /** Partitions of the topic this member owns, from the last group join. */
  private owned = new Set<number>();
  private stopping: Promise<void> | undefined;
  private readonly transactions: PartitionTransactions | undefined;
  private ownProducer: KafkaLogProducer | undefined;

  /** `shared`: the process's admin client and producer; without them the consumer opens its own when needed. */
  constructor(
    private readonly kafka: Kafka,
    private readonly opts: KafkaConsumerOptions,
    private readonly shared: SharedClients = {},
  ) {
    const admin = shared.admin;
    const sessionTimeout = opts.sessionTimeoutMs ?? 30_000;
    const fetch = { maxWaitTimeInMs: 50, minBytes: 1, maxBytesPerPartition: 1 << 20, maxBytes: 10 << 20, ...opts.fetch };
    this.heartbeatMs = Math.min(3000, Math.floor(sessionTimeout / 3));
    // read_committed (kafkajs's default, stated): records of a transaction that was aborted (a
    // worker fenced or killed before its commit) are never handed over.
    this.consumer = kafka.consumer({ groupId: opts.group, ...fetch, sessionTimeout, heartbeatInterval: this.heartbeatMs, readUncommitted: false });
    this.admin = admin ?? new LazyAdmin(kafka);
    this.ownAdmin = !admin;
    // Without a logger of its own (benchmarks), failures still show, through kafkajs's.
    const kafkaLog = kafka.logger();
    const log: RetryLog = opts.logger ?? { warn: (fields, msg) => kafkaLog.warn(msg, fields), info: (fields, msg) => kafkaLog.info(msg, fields) };
    this.retries = new BatchRetries(opts.topic, log, opts.retry);
    if (opts.transactional)
      this.transactions = new PartitionTransactions(kafka, {
        group: opts.group,
        topic: opts.topic,
        timeoutMs: opts.transactionTimeoutMs,
        committed: async (partition) => committedOffset(await this.admin.get(), opts.group, opts.topic, partition),
      });
    const { GROUP_JOIN, CRASH } = this.consumer.events;
    this.consumer.on(GROUP_JOIN, ({ payload }) => {
      this.joined = true;
      this.owned = new Set(payload.memberAssignment[opts.topic] ?? []);
      this.retries.keepOnly(this.owned);
      this.retries.succeeded(-1);
      void this.transactions?.keepOnly(this.owned);
    });
    this.consumer.on(CRASH, ({ payload }) => {
      this.joined = false;
      this.owned = new Set();
      this.retries.keepOnly(this.owned);
      if (!this.started) return;
      // kafkajs restarts the consumer after retriable errors (failing until it has rejoined). After
      // others it gives up, among them passing trouble it has stopped retrying ("Failed to find
      // group coordinator" from a broker still loading its offsets topic): this member starts it
      // again after the backoff, for as long as run() stands; /readyz says it is failing meanwhile.
      const delayMs = this.retries.failed(-1, payload.error);
      if (!payload.restart) this.reviveAfter(delayMs);
    });
  }

  private reviveTimer: NodeJS.Timeout | undefined;
  private runConfig: Parameters<Consumer['run']>[0] | undefined;

  /** Runs the kafkajs consumer again after it gave up (see the CRASH listener). */
  private reviveAfter(delayMs: number): void {
    clearTimeout(this.reviveTimer);
    this.reviveTimer = setTimeout(async () => {
      if (!this.started || !this.runConfig) return;
      try {
        await this.consumer.connect();
        await this.consumer.run(this.runConfig);
      } catch (err) {
        if (this.started) this.reviveAfter(this.retries.failed(-1, err));
      }
    }, delayMs);
    this.reviveTimer.unref();
  }

  private get startAt() {
    return this.opts.startAt ?? 'beginning';
  }

  async run(handler: ConsumerHandler): Promise<void> {
    this.abort = new AbortController();
    this.stopping = undefined;
    this.started = true;
    try {
      if (this.startAt !== 'beginning')
        await startNewGroupAt(this.kafka, await this.admin.get(), this.opts.group, this.opts.topic, this.startAt, this.opts.logger);
      await this.consumer.connect();
      await this.consumer.subscribe({ topic: this.opts.topic, fromBeginning: this.startAt !== 'end' });
    } catch (err) {
      this.started = false;
      throw err;
    }
    this.runConfig = {
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.opts.concurrency ?? 3,
      eachBatch: (payload) => this.eachBatch(payload, handler),
    };
    await this.consumer.run(this.runConfig);
  }

  private async eachBatch(payload: EachBatchPayload, handler: ConsumerHandler): Promise<void> {
    const { batch, isRunning, isStale } = payload;
    if (batch.messages.length === 0 || !isRunning() || isStale()) return;
    let messages = batch.messages.map(
      (m): ConsumedMessage => ({
        offset: m.offset,
        key: m.key ? m.key.toString() : null,
        value: m.value ? m.value.toString() : '',
        timestamp: Number(m.timestamp),
      }),
    );
    if (this.transactions && (await this.transactions.claim(batch.partition))) {
      // Just took the partition's transactional id: the previous owner can commit nothing more, but
      // it may have committed past where this fetch started. What it committed is done.
      const committed = await committedOffset(await this.admin.get(), this.opts.group, batch.topic, batch.partition);
      if (committed !== undefined) {
        const done = messages.filter((m) => BigInt(m.offset) < committed);
        if (done.length > 0) {
          payload.resolveOffset(done.at(-1)!.offset);
          messages = messages.slice(done.length);
          if (messages.length === 0) return;
        }
      }
    }
    const size = this.opts.maxBatch ?? messages.length;
    for (let i = 0; i < messages.length; i += size) {
      // Returning without resolving leaves the rest uncommitted: kafkajs fetches it again, here or
      // at the partition's next owner.
      if (!(await this.handle(payload, messages.slice(i, i + size), handler))) return;
    }
  }

  /** One chunk of a batch: handled (retried until it gets through), then committed. False when the member stops or lost the partition. */
  private async handle(
    { batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale }: EachBatchPayload,
    messages: ConsumedMessage[],
    handler: ConsumerHandler,
  ): Promise<boolean> {
    const gone = () => this.abort.signal.aborted || !isRunning() || isStale();
    let committedTo = -1n;
    const commit = async (offset: string) => {
      resolveOffset(offset);
      await this.commit(commitOffsetsIfNecessary, batch, offset);
      if (BigInt(offset) > committedTo) committedTo = BigInt(offset);
    };
    const ctl: BatchControl = {
      heartbeat,
      stopped: gone,
      commit: (offset) => commit(offset).catch((err: unknown) => Promise.reject(new CommitFailed(err))),
      publishAndCommit: async (records, offset) => {
        const nonEmpty = records.filter((r) => r.messages.length > 0);
        if (nonEmpty.length === 0) return ctl.commit(offset);
        if (this.transactions) {
          try {
            await this.transactions.publishAndCommit(batch.partition, nonEmpty, (BigInt(offset) + 1n).toString());
          } catch (err) {
            // Another member owns the partition: kafkajs rejoins the group, the batch is theirs.
            if (err instanceof TransactionFenced) throw new CommitFailed(err);
            throw err;
          }
          resolveOffset(offset);
          if (BigInt(offset) > committedTo) committedTo = BigInt(offset);
          return;
        }
        await this.publish(nonEmpty);
        crashPoint('published');
        await ctl.commit(offset);
      },
    };
    for (;;) {
      const pending = committedTo < 0n ? messages : messages.filter((m) => BigInt(m.offset) > committedTo);
      if (pending.length === 0) break;
      try {
        await this.heartbeating(heartbeat, () => handler({ topic: batch.topic, partition: batch.partition, messages: pending }, ctl));
        break;
      } catch (err) {
        if (err instanceof CommitFailed) throw err.cause;
        if (gone()) return false;
        await this.wait(this.retries.failed(batch.partition, err), heartbeat);
        if (gone()) return false;
      }
    }
    this.retries.succeeded(batch.partition);
    const last = messages[messages.length - 1]!.offset;
    const commitNow = !gone() || (this.opts.commitOnStop === true && !isStale());
    if (commitNow && BigInt(last) > committedTo) await commit(last);
    if (gone()) return false;
    await heartbeat();
    return true;
  }

  /**
   * Commits through the batch's own commit (kafkajs's group, no retry wrapper), so that group
   * trouble reaches kafkajs as it is: `consumer.commitOffsets` wraps "the coordinator is not aware
   * of this member" (a member that was silent past its session) into a non-retriable error, on
   * which kafkajs stops the consumer for good, while the error itself makes it rejoin. Passing
   * trouble (the coordinator moving, a timeout) is retried here a few times first.
   */
  private async commit(commitOffsets: (offsets: Offsets) => Promise<void>, batch: Batch, offset: string): Promise<void> {
    const offsets = { topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: (BigInt(offset) + 1n).toString() }] }] };
    for (let attempt = 1; ; attempt++) {
      try {
        await commitOffsets(offsets);
        return;
      } catch (err) {
        const e = err as { type?: string; retriable?: boolean };
        const groupTrouble =
          e.type === 'UNKNOWN_MEMBER_ID' || e.type === 'REBALANCE_IN_PROGRESS' || e.type === 'NOT_COORDINATOR_FOR_GROUP' || e.type === 'ILLEGAL_GENERATION';
        if (groupTrouble || e.retriable !== true || attempt >= 5 || this.abort.signal.aborted) throw err;
        await pause(100 * 2 ** attempt, this.abort.signal);
      }
    }
  }

  /** Writes the records (acknowledged by every in-sync replica) through the process's producer. */
  private async publish(records: TopicMessages[]): Promise<void> {
    let producer = this.shared.producer;
    if (!producer) {
      if (!this.ownProducer) {
        this.ownProducer = new KafkaLogProducer(this.kafka, { ackTimeoutMs: 30_000 });
        await this.ownProducer.connect();
      }
      producer = this.ownProducer;
    }
    await Promise.all(records.map((r) => producer.send(r.topic, r.messages)));
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
   * (a group that never committed counts from where it starts).
   * Owned partitions only, so that summing every worker's lag counts each partition once.
   */
  async lag(): Promise<Map<number, number>> {
    const owned = this.owned;
    if (owned.size === 0) return new Map();
    const admin = await this.admin.get();
    const { topic, group } = this.opts;
    const [ends, committed] = await Promise.all([admin.fetchTopicOffsets(topic), admin.fetchOffsets({ groupId: group, topics: [topic] })]);
    const at = new Map((committed.find((t) => t.topic === topic)?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
    const lag = new Map<number, number>();
    for (const e of ends) {
      if (!owned.has(e.partition)) continue;
      const c = at.get(e.partition) ?? -1n;
      const from = c >= 0n ? c : this.startAt === 'end' ? BigInt(e.high) : BigInt(e.low);
      const behind = BigInt(e.high) - from;
      lag.set(e.partition, Number(behind > 0n ? behind : 0n));
    }
    return lag;
  }

  /** Leaves the group after the batches in flight; an ephemeral group is deleted then. Once, however often it is called. */
  stop(): Promise<void> {
    // Synchronously: a handler that resumes after this call sees stopped().
    this.started = false;
    this.joined = false;
    clearTimeout(this.reviveTimer);
    this.abort.abort();
    this.stopping ??= (async () => {
      await this.consumer.disconnect();
      if (this.opts.ephemeral)
        await this.admin.get().then(
          (admin) => deleteGroup(admin, this.opts.group, this.opts.logger),
          () => {},
        );
      if (this.ownAdmin) await this.admin.close();
      await this.transactions?.close();
      await this.ownProducer?.close();
      this.ownProducer = undefined;
      this.owned = new Set();
      this.retries.clear();
    })();
    return this.stopping;
  }
}
