import { intensityOf, NEED_HALF_LIFE_MS, weightedInteractions } from '../store/rank-key.js';

/**
 * How the needs list is ordered: who is most worth contacting first. This is the definition; the
 * stores keep the same order in their stage indexes, written at fold time (../store/rank-key.ts says
 * why one number per dialogue ranks correctly at every moment), and tests compare the two.
 *
 *   score = recency × intensity
 *   recency   = 0.5 ^ ((now − last interaction) / half-life)             1 just now, 0.5 after 3 days
 *   intensity = log2(1 + weighted interactions)                          diminishing returns, at most 12
 *   weighted interactions = Σ interactions at stage i × (i + 1)          a step further along counts more,
 *                                                                        counted from 1 up to 4095
 *
 * An open signal the topic map weighs (`signals.<name>.weight`: a complaint filed, an inquiry) adds
 * its weight to the weighted interactions while it is open (negative lowers them, never below 1).
 *
 * With the default ladder, one look at the intro weighs 1, one look at the details 2, one
 * purchase-page visit 3. A person seen an hour ago with 2 detail views (intensity log2 5 ≈ 2.3)
 * outranks one seen 4 days ago with 10 detail views (0.4 × log2 21 ≈ 1.7).
 * Ties (scores within a millisecond of recency of each other) go to the more intense, then to the
 * larger person id, as the index orders them.
 */

export { NEED_HALF_LIFE_MS, weightedInteractions };

export interface NeedCandidate {
  person: string;
  /** Last interaction on the topic, epoch ms. */
  last: number;
  /** Interactions per stage, ladder order. */
  counts: readonly number[];
  /** The weights of the dialogue's open signals (fold.ts openSignalWeight). */
  boost?: number | undefined;
}

export interface RankedNeed extends NeedCandidate {
  score: number;
  recency: number;
  intensity: number;
}

/**
 * The score at `now`. A last interaction after `now` (a client clock ahead) scores above its
 * intensity rather than being clamped: a clamp would make the order change as time passes.
 */
export function needScore(c: NeedCandidate, now: number, halfLifeMs = NEED_HALF_LIFE_MS): { score: number; recency: number; intensity: number } {
  const recency = 0.5 ** ((now - c.last) / halfLifeMs);
  const intensity = intensityOf(weightedInteractions(c.counts) + (c.boost ?? 0));
  return { score: recency * intensity, recency, intensity };
}

/** The candidates, best first, computed from the definition at `now` (passed in, never read from the clock). */
export function rankNeeds(candidates: readonly NeedCandidate[], now: number, halfLifeMs = NEED_HALF_LIFE_MS): RankedNeed[] {
  return candidates
    .map((c) => ({ ...c, ...needScore(c, now, halfLifeMs) }))
    .sort((a, b) => b.score - a.score || b.intensity - a.intensity || (a.person < b.person ? 1 : a.person > b.person ? -1 : 0));
}
