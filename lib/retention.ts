import { TOPICS } from '../contract/raw-event.js';

/**
 * How long each Kafka topic keeps what it holds, and what follows from that for erasures. One place,
 * so that the README's Privacy section can state exactly how long a raw click exists anywhere:
 * Kafka deletes whole segments once their newest record is older than `retention.ms`, and every
 * topic rolls a segment at least daily (`segment.ms`), so a record lives at most its retention plus
 * one day (plus the broker's retention check, every 5 minutes by default).
 */
export interface TopicRetention {
  /** `clicks.raw`: the raw events, what a replay rebuilds from. */
  rawMs: number;
  /** `clicks.invalid`: dead letters (refused events, excerpts scrubbed like the events). */
  invalidMs: number;
  /** `history.transitions`: stage changes (person id, topic, stages, time, channel). */
  transitionsMs: number;
  /** `history.webhooks.parked`: webhook requests a receiver refused, kept to be sent again. */
  parkedMs: number;
}

export const DAY_MS = 86_400_000;

export const DEFAULT_RETENTION: TopicRetention = {
  rawMs: 30 * DAY_MS,
  invalidMs: 7 * DAY_MS,
  transitionsMs: 7 * DAY_MS,
  parkedMs: 14 * DAY_MS,
};

/** Segments roll at least this often, so retention deletes a record at most this late. */
const SEGMENT_MS = DAY_MS;

/**
 * An erasure is needed as long as a raw record it covers may exist: `clicks.raw`'s retention, plus
 * a segment, plus a day of margin. `history.erasures` keeps its records that long (compacted as
 * well: the latest erasure of an id wins).
 */
export const erasureRecordMs = (r: TopicRetention) => r.rawMs + SEGMENT_MS + DAY_MS;

/**
 * A store's tombstone of an erased id outlives every erasure record on `history.erasures` (a record
 * lives at most erasureRecordMs plus a segment): a follower that meets an erasure record always
 * finds the tombstone of it (or a later one) and leaves a history begun after the erasure alone.
 */
export const tombstoneMs = (r: TopicRetention) => erasureRecordMs(r) + SEGMENT_MS + DAY_MS;

/** The configs each project topic is created with. */
export function topicConfigs(r: TopicRetention): Record<string, Record<string, string>> {
  const deleteAfter = (ms: number) => ({ 'cleanup.policy': 'delete', 'retention.ms': String(ms), 'segment.ms': String(Math.min(SEGMENT_MS, ms)) });
  return {
    [TOPICS.raw]: deleteAfter(r.rawMs),
    [TOPICS.invalid]: deleteAfter(r.invalidMs),
    [TOPICS.transitions]: deleteAfter(r.transitionsMs),
    [TOPICS.webhooksParked]: deleteAfter(r.parkedMs),
    [TOPICS.erasures]: {
      'cleanup.policy': 'compact,delete',
      'retention.ms': String(erasureRecordMs(r)),
      'segment.ms': String(SEGMENT_MS),
    },
  };
}
