/**
 * RFM scores from a site's own distribution, pure: each of recency, frequency and monetary value is
 * scored 1 to 5 by where the customer stands among the site's purchasers (quintiles), so a score
 * means "in the top fifth of this shop" whatever its prices and habits.
 *
 * Ties: most purchasers of most shops bought once, so frequency has a few values shared by many.
 * A value's standing is its mid-rank (those below it plus half of those equal, over all): every
 * customer with the same value gets the same score, and without ties the scores are the quintiles.
 * Recency is scored on the time of the last purchase (later is better), which does not move with
 * the clock: a scale computed at noon still means the same at midnight.
 */

export interface RfmSample {
  /** Last purchase, epoch ms. */
  last: number;
  count: number;
  total: number;
}

/** One dimension: the values seen, sorted ascending. */
export type Distribution = Float64Array;

export interface QuantileScale {
  /** Purchasers the scale was computed from. */
  n: number;
  last: Distribution;
  count: Distribution;
  total: Distribution;
}

/** The smallest sample a scale is computed from; below it callers keep their fixed thresholds. */
export const MIN_RFM_SAMPLE = 20;

export function quantileScale(samples: readonly RfmSample[]): QuantileScale {
  const sorted = (f: (s: RfmSample) => number) => Float64Array.from(samples, f).sort();
  return { n: samples.length, last: sorted((s) => s.last), count: sorted((s) => s.count), total: sorted((s) => s.total) };
}

/** First index whose value is >= v (or > v with `after`). */
function bound(xs: Distribution, v: number, after: boolean): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid]! < v || (after && xs[mid] === v)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** 1 to 5 by mid-rank: the fifth of the distribution the value stands in. */
export function quintile(xs: Distribution, v: number): number {
  if (xs.length === 0) return 1;
  const below = bound(xs, v, false);
  const equal = bound(xs, v, true) - below;
  const standing = (below + equal / 2) / xs.length;
  return Math.min(5, 1 + Math.floor(standing * 5));
}

export interface QuantileScores {
  recency: number;
  frequency: number;
  monetary: number;
  code: string;
}

export function quantileScores(scale: QuantileScale, s: RfmSample): QuantileScores {
  const recency = quintile(scale.last, s.last);
  const frequency = quintile(scale.count, s.count);
  const monetary = quintile(scale.total, s.total);
  return { recency, frequency, monetary, code: `${recency}${frequency}${monetary}` };
}

/**
 * The thresholds in use, for people to read: per dimension, the smallest value of the sample that
 * scores 2, 3, 4 and 5 (null where no value of the sample does).
 */
export function thresholdsOf(scale: QuantileScale): Record<'last' | 'count' | 'total', (number | null)[]> {
  const of = (xs: Distribution) => {
    const out: (number | null)[] = [null, null, null, null];
    // Scores only rise with the value, so one pass over the distinct values finds each step.
    for (let i = 0; i < xs.length; i = bound(xs, xs[i]!, true)) {
      const q = quintile(xs, xs[i]!);
      for (let k = 2; k <= q; k++) if (out[k - 2] === null) out[k - 2] = xs[i]!;
    }
    return out;
  };
  return { last: of(scale.last), count: of(scale.count), total: of(scale.total) };
}
