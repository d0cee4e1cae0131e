import { type RawEvent, TOPICS } from '../../contract/raw-event.js';
import type { LogMessage } from '../../lib/log.js';

/**
 * A tick: a record on `clicks.raw`, keyed by the person like their events, that makes the fold
 * re-evaluate the person's stalls and audiences at `rt`. Going through the log gives ticks what
 * events have: one owner per partition, the person's write with compare-and-set, the outbox, the
 * commit (exactly once for what they emit). A tick sent twice is harmless: what fired is marked.
 * The fold takes the earlier of `rt` and its own clock, so a tick forged on the topic cannot fire
 * anything before its time.
 */
export const TICK_SITE = '-';
export const TICK_CHANNEL = 'system';

export function tickRecord(person: string, at: number): RawEvent {
  return { v: 1, id: `tick.${at.toString(36)}`, site: TICK_SITE, person, channel: TICK_CHANNEL, type: 'tick', ts: at, rt: at };
}

export function tickMessage(person: string, at: number): LogMessage {
  return { key: person, value: JSON.stringify(tickRecord(person, at)) };
}

export const TICK_TOPIC = TOPICS.raw;
