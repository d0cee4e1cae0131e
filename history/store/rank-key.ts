/**
 * The needs ranking as one number per dialogue, written at fold time as the score of the stage index
 * (the same sorted set that answers "who stands at this stage"), so a page of the ranking is one
 * range read at any size and at any moment. Pure.
 *
 * Why a score written once can rank at every moment: the ranking is
 *   score(now) = intensity · 0.5^((now − last) / halfLife) = e^(ln intensity + last/τ − now/τ),  τ = halfLife / ln 2,
 * and `now` shifts every person's exponent by the same amount, so people are ordered by
 *   K = last + τ · ln(intensity)          (ms: the last activity, moved later by the intensity)
 * whatever `now` is. K is kept to the millisecond (δ below is floored), and beside it, in the low 12
 * bits, the weighted interactions w that intensity comes from:
 *   S = (K − EPOCH) · 4096 + w            an integer below 2^53: exact in a double, in Redis and in Lua
 * S orders by K, then by w. Both parts decode back exactly (last = K − δ(w)), which is what lets the
 * same index answer time windows on the last activity (stage counts, funnels): see `lastOf`.
 *
 * Two consequences, documented in the API: intensity saturates at w = 4095 (log2 4096 = 12), and two
 * people whose exact K differ by less than a millisecond (scores within 1 part in 3·10^8) are ordered
 * by w and then by id, as equal.
 */

export const NEED_HALF_LIFE_MS = 3 * 86_400_000;
/** τ: the time in which the score falls by a factor e. */
export const TAU_MS = NEED_HALF_LIFE_MS / Math.LN2;
/** The origin of K in the score (2020-01-01): scores stay exact for K within ±2^41 ms of it (1950 to 2089). */
export const RANK_EPOCH = Date.UTC(2020, 0, 1);
const W_BITS = 4096;
/** The weighted interactions the score keeps; more counts as this many. */
export const W_MAX = W_BITS - 1;
const K_LIMIT = 2 ** 41 - 1;

/** Weighted interactions: each interaction counts its stage's position (1, 2, 3 …), a step further along counts more. */
export function weightedInteractions(counts: readonly number[]): number {
  let w = 0;
  counts.forEach((n, i) => {
    w += n * (i + 1);
  });
  return w;
}

/** w as the index keeps it: at least 1 (a dialogue has had an interaction), at most W_MAX. */
export const clampW = (w: number): number => Math.min(W_MAX, Math.max(1, Math.floor(w)));

/** Intensity, log2(1 + w), with w as the index keeps it. */
export const intensityOf = (w: number): number => Math.log2(1 + clampW(w));

/** δ(w) = ⌊τ · ln(intensity)⌋ ms, from one table so every encode and decode agrees to the bit. */
const DELTA: readonly number[] = Array.from({ length: W_BITS }, (_, w) => (w === 0 ? 0 : Math.floor(TAU_MS * Math.log(Math.log2(1 + w)))));

/** The largest δ: K lies in [last, last + MAX_DELTA_MS]. */
export const MAX_DELTA_MS = DELTA[W_MAX]!;

export const deltaOf = (w: number): number => DELTA[clampW(w)]!;

/**
 * The index score of a dialogue. `boost`: what its open signals add to the weighted interactions
 * (the topic map's weights, negative lowers), clamped with them into w's 12 bits, so a signal moves
 * a person within the same one-number order.
 */
export function rankScore(last: number, counts: readonly number[], boost = 0): number {
  const w = clampW(weightedInteractions(counts) + boost);
  const k = Math.max(-K_LIMIT, Math.min(K_LIMIT, Math.floor(last) + DELTA[w]! - RANK_EPOCH));
  return k * W_BITS + w;
}

/** What a score holds: K (ms), w, and the last activity it was written for. */
export function decodeRank(score: number): { k: number; w: number; last: number } {
  const k = Math.floor(score / W_BITS);
  const w = score - k * W_BITS;
  return { k: k + RANK_EPOCH, w, last: k + RANK_EPOCH - DELTA[w]! };
}

export const lastOf = (score: number): number => decodeRank(score).last;

/** The lowest score with K at or after `t` (ms): `S >= floorOf(t)` ⟺ K >= t. */
export const floorOf = (t: number): number => Math.max(-K_LIMIT, Math.min(K_LIMIT, Math.ceil(t) - RANK_EPOCH)) * W_BITS;

/**
 * The score a dialogue ranks by at `now`: intensity · 0.5^((now − last)/halfLife), from its index
 * score. Not clamped for a last activity after `now` (a client clock ahead): clamping would reorder
 * people as time passes, which the index cannot do.
 */
export function scoreAt(score: number, now: number): { score: number; recency: number; intensity: number; last: number; w: number } {
  const { w, last } = decodeRank(score);
  const intensity = intensityOf(w);
  const recency = 0.5 ** ((now - last) / NEED_HALF_LIFE_MS);
  return { score: recency * intensity, recency, intensity, last, w };
}

/** The index order: higher score first, equal scores by the larger id (Redis's ZREVRANGE). */
export function compareRanked(a: { person: string; score: number }, b: { person: string; score: number }): number {
  return b.score - a.score || (a.person < b.person ? 1 : a.person > b.person ? -1 : 0);
}
