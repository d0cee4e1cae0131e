/**
 * Trends, pure: transitions per topic and stage per hour and per day, as counters. A batch's
 * transitions are summed first (one increment per topic, stage and bucket, not per transition), and
 * a series is read back with the empty buckets filled in, within the retention: a marketer can see
 * whether more people reached `detail` this week than last without a scan of anything.
 *
 * Buckets are UTC hours and days numbered from the epoch, so every process agrees on them.
 */
export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

export type Granularity = 'hour' | 'day';

export interface TrendRetention {
  /** Hourly buckets kept (default 14 days of them). */
  hours: number;
  /** Daily buckets kept (default 400). */
  days: number;
}

export const DEFAULT_TREND_RETENTION: TrendRetention = { hours: 14 * 24, days: 400 };

const width = (g: Granularity) => (g === 'hour' ? HOUR_MS : DAY_MS);

export const bucketOf = (at: number, g: Granularity) => Math.floor(at / width(g));

export interface TransitionLike {
  topic: string;
  to: string;
  at: number;
}

/** One increment per (topic, granularity, bucket, stage) for a batch of transitions. */
export interface TrendIncrement {
  topic: string;
  granularity: Granularity;
  bucket: number;
  stage: string;
  by: number;
}

export function trendIncrements(transitions: readonly TransitionLike[]): TrendIncrement[] {
  const sums = new Map<string, TrendIncrement>();
  for (const t of transitions) {
    for (const g of ['hour', 'day'] as const) {
      const bucket = bucketOf(t.at, g);
      const key = JSON.stringify([t.topic, g, bucket, t.to]);
      const s = sums.get(key);
      if (s) s.by++;
      else sums.set(key, { topic: t.topic, granularity: g, bucket, stage: t.to, by: 1 });
    }
  }
  return [...sums.values()];
}

/** The oldest bucket still kept at `now`. */
export function oldestKept(g: Granularity, now: number, retention: TrendRetention = DEFAULT_TREND_RETENTION): number {
  return bucketOf(now, g) - (g === 'hour' ? retention.hours : retention.days) + 1;
}

export interface TrendPoint {
  /** Start of the bucket, epoch ms. */
  start: number;
  /** Transitions into each stage in the bucket, ladder order. */
  counts: number[];
}

/**
 * The series between `from` and `to` (inclusive, clamped to what is kept at `now`), every bucket
 * present, zeros where nothing happened. `read(bucket)` gives the stored counts by stage name.
 */
export function trendSeries(
  g: Granularity,
  from: number,
  to: number,
  now: number,
  ladder: readonly string[],
  read: (bucket: number) => ReadonlyMap<string, number> | undefined,
  retention: TrendRetention = DEFAULT_TREND_RETENTION,
): TrendPoint[] {
  const first = Math.max(bucketOf(from, g), oldestKept(g, now, retention));
  const last = Math.min(bucketOf(to, g), bucketOf(now, g));
  const out: TrendPoint[] = [];
  for (let b = first; b <= last; b++) {
    const counts = read(b);
    out.push({ start: b * width(g), counts: ladder.map((s) => counts?.get(s) ?? 0) });
  }
  return out;
}
