import { randomUUID } from 'node:crypto';
import { TOPICS } from '../../contract/raw-event.js';
import { HistoryEvent, isTransition, type Transition } from '../../contract/transition.js';
import type { BatchControl, ConsumerOptions, Log } from '../../lib/log.js';
import type { Logger } from '../../lib/logger.js';
import type { LiveFeed } from './live-feed.js';

/**
 * Reading `history.transitions` outside the worker: webhook delivery (a consumer group per URL,
 * committing only what was delivered) and the live feed of a standalone API process (a group of
 * its own, deleted on stop). Through the log port, so the same on Kafka and on the in-process log.
 * Either way the worker only appends to the log: nothing here can slow the fold down.
 */
export interface LogRecord {
  offset: string;
  value: string;
}

export type { BatchControl };

/**
 * Handles one batch of records of one partition. It may commit as it goes (`ctl.commit`); when it
 * resolves, the rest is committed unless `ctl.stopped()` (then it stays for the next member).
 */
export type RecordsHandler = (records: LogRecord[], ctl: BatchControl) => Promise<void>;

export interface TransitionLog {
  /**
   * Runs one member of consumer group `group` on `history.transitions`. A new group starts at the
   * end of the log (what happens from now on); a known one where it committed.
   */
  consume(group: string, handler: RecordsHandler, opts?: { ephemeral?: boolean }): Promise<{ stop(): Promise<void> }>;
}

/**
 * Parses a record: a stage transition, a stall, an audience entry or exit. Anything else (never
 * written by the worker: a hand-made record, another version's) is logged and skipped, so one bad
 * record never stops the readers behind it.
 */
export function parseHistoryEvent(value: string, logger: Logger): HistoryEvent | null {
  try {
    const r = HistoryEvent.safeParse(JSON.parse(value));
    if (r.success) return r.data;
  } catch {
    // below
  }
  logger.warn({ record: value.slice(0, 200) }, 'skipping a record on history.transitions that is no transition, stall or audience event');
  return null;
}

/** For readers that know only stage transitions: the other kinds are skipped without a word (they are not malformed). */
export function parseTransition(value: string, logger: Logger): Transition | null {
  const e = parseHistoryEvent(value, logger);
  return e && isTransition(e) ? e : null;
}

/** `history.transitions` on a log: one partition at a time per member, at most 500 records per batch. */
export function transitionLog(log: Log, defaults: Partial<Pick<ConsumerOptions, 'sessionTimeoutMs' | 'logger' | 'retry'>> = {}): TransitionLog {
  return {
    consume: async (group, handler, opts = {}) => {
      const consumer = log.consumer({ topic: TOPICS.transitions, group, startAt: 'end', maxBatch: 500, concurrency: 1, ...defaults, ...opts });
      await consumer.run((batch, ctl) => handler(batch.messages, ctl));
      return { stop: () => consumer.stop() };
    },
  };
}

/**
 * A standalone API process's live feed: every event on the log from now on, through a
 * consumer group of its own (each API process sees them all), deleted again on stop.
 */
export function followTransitions(log: Log, feed: LiveFeed, logger: Logger, groupPrefix: string): Promise<{ stop(): Promise<void> }> {
  const group = `${groupPrefix}-live-${randomUUID().slice(0, 12)}`;
  return transitionLog(log, { logger }).consume(group, async (records) => feed.publish(records.flatMap((r) => parseHistoryEvent(r.value, logger) ?? [])), {
    ephemeral: true,
  });
}
