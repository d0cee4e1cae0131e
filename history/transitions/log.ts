import { randomUUID } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import { TOPICS } from '../../contract/raw-event.js';
import { Transition } from '../../contract/transition.js';
import type { PartitionedLog } from '../../lib/log-memory.js';
import type { Logger } from '../../lib/logger.js';
import type { LiveFeed } from './live-feed.js';

/**
 * Reading `history.transitions` outside the worker: webhook delivery (a consumer group per URL,
 * committing only what was delivered) and the live feed of a standalone API process. On the real
 * stack a kafkajs consumer; in the embedded mode the in-process log's consumer. Either way the
 * worker only appends to the log: nothing here can slow the fold down.
 */
export interface LogRecord {
  offset: string;
  value: string;
}

export interface BatchControl {
  /** Keeps the consumer's group membership alive during a long wait (Kafka; a no-op embedded). */
  heartbeat(): Promise<void>;
  /** Commits everything up to and including `offset` of this batch's partition. */
  commit(offset: string): Promise<void>;
  /** True once the consumer stops or loses the partition: leave the batch uncommitted. */
  stopped(): boolean;
}

export type RecordsHandler = (records: LogRecord[], ctl: BatchControl) => Promise<void>;

export interface TransitionLog {
  /**
   * Runs one member of consumer group `group` on `history.transitions`. A new group starts at the
   * end of the log (what happens from now on); a known one where it committed.
   */
  consume(group: string, handler: RecordsHandler): Promise<{ stop(): Promise<void> }>;
}

/** Parses a record; a malformed one (never written by the worker) is logged and skipped. */
export function parseTransition(value: string, logger: Logger): Transition | null {
  try {
    const r = Transition.safeParse(JSON.parse(value));
    if (r.success) return r.data;
  } catch {
    // below
  }
  logger.warn({ record: value.slice(0, 200) }, 'skipping a record on history.transitions that is not a transition');
  return null;
}

/** The embedded log: each consumer is a group of its own, reading from the start of this process's log. */
export function embeddedTransitionLog(log: PartitionedLog): TransitionLog {
  return {
    consume: async (_group, handler) => {
      const consumer = log.consumer(TOPICS.transitions, 500);
      let stopped = false;
      await consumer.run(async (batch) => {
        // The embedded consumer commits a batch when the handler resolves; it throws when stopped.
        await handler(batch.messages, { heartbeat: async () => {}, commit: async () => {}, stopped: () => stopped });
        if (stopped) throw new Error('stopping');
      });
      return {
        stop: async () => {
          stopped = true;
          await consumer.stop();
        },
      };
    },
  };
}

/**
 * Sets a group that never committed to the current end of the topic, so that it starts with what
 * happens from now on, deterministically (kafkajs's `fromBeginning: false` resolves "latest" only
 * at its first fetch, which may miss records written in between).
 */
async function startAtEndIfNew(kafka: Kafka, groupId: string, topic: string, logger: Logger): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
    if (committed?.partitions.some((p) => Number(p.offset) >= 0)) return;
    const ends = await admin.fetchTopicOffsets(topic);
    await admin.setOffsets({ groupId, topic, partitions: ends.map((e) => ({ partition: e.partition, offset: e.high })) });
  } catch (err) {
    // Another member of the group is already running: it did this, or committed.
    logger.debug({ err, groupId }, 'could not set the start offsets of a new group');
  } finally {
    await admin.disconnect();
  }
}

export function kafkaTransitionLog(kafka: Kafka, logger: Logger, opts: { sessionTimeoutMs?: number } = {}): TransitionLog {
  return {
    consume: async (groupId, handler) => {
      const topic = TOPICS.transitions;
      await startAtEndIfNew(kafka, groupId, topic, logger);
      const sessionTimeout = opts.sessionTimeoutMs ?? 30_000;
      const consumer = kafka.consumer({ groupId, sessionTimeout, heartbeatInterval: Math.min(3000, Math.floor(sessionTimeout / 3)), maxWaitTimeInMs: 100 });
      let running = true;
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: false });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, heartbeat, isRunning, isStale, resolveOffset }) => {
          if (batch.messages.length === 0) return;
          await handler(
            batch.messages.map((m) => ({ offset: m.offset, value: m.value?.toString() ?? '' })),
            {
              heartbeat,
              stopped: () => !running || !isRunning() || isStale(),
              commit: async (offset) => {
                resolveOffset(offset);
                await consumer.commitOffsets([{ topic, partition: batch.partition, offset: (BigInt(offset) + 1n).toString() }]);
              },
            },
          );
        },
      });
      return {
        stop: async () => {
          running = false;
          await consumer.disconnect();
        },
      };
    },
  };
}

/**
 * A standalone API process's live feed: every transition on the log from now on, through a
 * consumer group of its own (each API process sees them all), removed again on stop.
 */
export async function feedFromKafka(kafka: Kafka, feed: LiveFeed, logger: Logger, groupPrefix: string): Promise<{ stop(): Promise<void> }> {
  const groupId = `${groupPrefix}-live-${randomUUID().slice(0, 12)}`;
  const running = await kafkaTransitionLog(kafka, logger).consume(groupId, async (records, ctl) => {
    feed.publish(records.flatMap((r) => parseTransition(r.value, logger) ?? []));
    await ctl.commit(records[records.length - 1]!.offset);
  });
  return {
    stop: async () => {
      await running.stop();
      const admin = kafka.admin();
      try {
        await admin.connect();
        await admin.deleteGroups([groupId]);
      } catch (err) {
        logger.debug({ err, groupId }, 'could not delete the live feed consumer group');
      } finally {
        await admin.disconnect().catch(() => {});
      }
    },
  };
}
