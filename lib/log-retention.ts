/**
 * The embedded logs' bound (`npm start`): records are grouped into segments in append order, over
 * every topic and partition, and past any limit the oldest whole segment goes, as Kafka's retention
 * drops whole log segments. Shared by the in-memory log (lib/log-memory.ts), where a segment is
 * only bookkeeping, and the durable one (lib/log-segments.ts), where it is a file.
 */
export interface RetentionLimits {
  /** Records kept, over all topics. */
  maxEvents: number;
  /** Bytes kept: key and value (in memory), or frames on disk (segment files). */
  maxBytes: number;
  /** A segment goes once its newest record is this old, ms. */
  maxAgeMs: number;
}

export const UNBOUNDED: RetentionLimits = { maxEvents: Infinity, maxBytes: Infinity, maxAgeMs: Infinity };

/** One segment: what it holds and, per partition it touched, its last offset there. */
export interface SegmentInfo {
  id: number;
  events: number;
  bytes: number;
  firstTs: number;
  lastTs: number;
  /** `partitionKey(topic, partition)` → the last offset of that partition in this segment. */
  last: Map<string, number>;
}

export const partitionKey = (topic: string, partition: number) => `${partition}\u0000${topic}`;

export function splitKey(key: string): { topic: string; partition: number } {
  const i = key.indexOf('\u0000');
  return { partition: Number(key.slice(0, i)), topic: key.slice(i + 1) };
}

/**
 * Where a drop must stop: per partition, the first offset that must stay (every record at or after
 * it is kept), or undefined when anything may go. The worker's group on `clicks.raw` sets it, so
 * that nothing it has not folded (or, durable, not yet covered by a snapshot) is ever dropped.
 */
export type RetentionFloor = (topic: string, partition: number) => number | undefined;

/**
 * The segments of a log, oldest first; the last one is the active segment (never dropped: it is
 * rolled first). A segment rolls at a sixteenth of each limit, so a drop frees about that much and
 * the log stays within its bound give or take one segment.
 */
export class SegmentBook {
  readonly segments: SegmentInfo[] = [];
  events = 0;
  bytes = 0;
  private readonly roll: { events: number; bytes: number; ageMs: number };

  constructor(
    readonly limits: RetentionLimits,
    firstId = 1,
    /** Largest segment in bytes whatever the limit (files stay a reasonable size). */
    maxSegmentBytes = 64 * 1024 * 1024,
  ) {
    this.roll = {
      events: Math.max(1, Math.floor(limits.maxEvents / 16)),
      bytes: Math.min(maxSegmentBytes, Math.max(4096, Math.floor(limits.maxBytes / 16))),
      ageMs: limits.maxAgeMs / 16,
    };
    this.segments.push(emptySegment(firstId));
  }

  get active(): SegmentInfo {
    return this.segments.at(-1)!;
  }

  /** Counts one record into the active segment. */
  add(topic: string, partition: number, offset: number, bytes: number, ts: number): void {
    const s = this.active;
    if (s.events === 0) s.firstTs = ts;
    s.events++;
    s.bytes += bytes;
    s.lastTs = ts;
    s.last.set(partitionKey(topic, partition), offset);
    this.events++;
    this.bytes += bytes;
  }

  /** Whether the active segment is full (or old) and the next record should start a new one. */
  shouldRoll(now: number): boolean {
    const s = this.active;
    return s.events > 0 && (s.events >= this.roll.events || s.bytes >= this.roll.bytes || now - s.firstTs >= this.roll.ageMs);
  }

  /** Starts a new active segment. */
  startSegment(id = this.active.id + 1): SegmentInfo {
    const s = emptySegment(id);
    this.segments.push(s);
    return s;
  }

  /** Adds a segment read back from disk (recovery), before the active one is chosen. */
  restore(s: SegmentInfo): void {
    if (this.segments.length === 1 && this.active.events === 0) this.segments.pop();
    this.segments.push(s);
    this.events += s.events;
    this.bytes += s.bytes;
  }

  /** Whether the log is past a limit now. */
  over(now: number): boolean {
    const oldest = this.segments[0]!;
    return this.events > this.limits.maxEvents || this.bytes > this.limits.maxBytes || (oldest.events > 0 && now - oldest.lastTs > this.limits.maxAgeMs);
  }

  /**
   * The oldest segments to drop now, in order, and whether `floor` held one back (the log then
   * stays past its bound until the floor moves). Removes them from the book.
   */
  takeDroppable(floor: RetentionFloor, now: number): { dropped: SegmentInfo[]; blocked: boolean } {
    const dropped: SegmentInfo[] = [];
    while (this.segments.length > 1 && this.over(now)) {
      const oldest = this.segments[0]!;
      for (const [key, last] of oldest.last) {
        const { topic, partition } = splitKey(key);
        const keep = floor(topic, partition);
        if (keep !== undefined && last >= keep) return { dropped, blocked: true };
      }
      this.segments.shift();
      this.events -= oldest.events;
      this.bytes -= oldest.bytes;
      dropped.push(oldest);
    }
    return { dropped, blocked: false };
  }
}

function emptySegment(id: number): SegmentInfo {
  return { id, events: 0, bytes: 0, firstTs: 0, lastTs: 0, last: new Map() };
}
