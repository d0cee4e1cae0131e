/**
 * How the needs list is ordered: who is most worth contacting first. Pure, so that the order is
 * the same in every store and can be tested without one.
 *
 *   score = recency × intensity
 *   recency   = 0.5 ^ (time since the last interaction / half-life)     1 just now, 0.5 after 3 days
 *   intensity = log2(1 + weighted interactions)                         diminishing returns
 *   weighted interactions = Σ interactions at stage i × (i + 1)         a step further along counts more
 *
 * With the default ladder, one look at the intro weighs 1, one look at the details 2, one
 * purchase-page visit 3. A person seen an hour ago with 2 detail views (intensity log2 5 ≈ 2.3)
 * outranks one seen 4 days ago with 10 detail views (0.4 × log2 21 ≈ 1.7).
 * Ties (equal scores) go to the more recent, then to the smaller person id: a total order, so pages
 * of the same ranking never disagree.
 */

export interface NeedCandidate {
  person: string;
  /** Last interaction on the topic, epoch ms. */
  last: number;
  /** Interactions per stage, ladder order. */
  counts: readonly number[];
}

export interface RankedNeed extends NeedCandidate {
  score: number;
  recency: number;
  intensity: number;
}

export const NEED_HALF_LIFE_MS = 3 * 86_400_000;

export function weightedInteractions(counts: readonly number[]): number {
  let w = 0;
  counts.forEach((n, i) => {
    w += n * (i + 1);
  });
  return w;
}

export function needScore(c: NeedCandidate, now: number, halfLifeMs = NEED_HALF_LIFE_MS): { score: number; recency: number; intensity: number } {
  const age = Math.max(0, now - c.last);
  const recency = 0.5 ** (age / halfLifeMs);
  const intensity = Math.log2(1 + weightedInteractions(c.counts));
  return { score: recency * intensity, recency, intensity };
}

/** The candidates, best first. `now` is passed in (not read from the clock): the same input ranks the same. */
export function rankNeeds(candidates: readonly NeedCandidate[], now: number, halfLifeMs = NEED_HALF_LIFE_MS): RankedNeed[] {
  return candidates
    .map((c) => ({ ...c, ...needScore(c, now, halfLifeMs) }))
    .sort((a, b) => b.score - a.score || b.last - a.last || (a.person < b.person ? -1 : a.person > b.person ? 1 : 0));
}
