/**
 * RFM scores (recency, frequency, monetary value), each 1 (weakest) to 5 (strongest), from the RFM
 * inputs the fold keeps: last purchase, number of purchases, total value. Fixed thresholds rather
 * than quantiles of the customer base: a score then means the same thing for every customer and
 * every day, and computing it needs no scan of the people.
 *
 * | score | recency: days since the last purchase | frequency: purchases | monetary: total value |
 * | ----- | ------------------------------------- | -------------------- | --------------------- |
 * | 5     | 7 or fewer                            | 10 or more           | 1000 or more          |
 * | 4     | 8 to 30                               | 5 to 9               | 500 to 999.99         |
 * | 3     | 31 to 90                              | 3 or 4               | 200 to 499.99         |
 * | 2     | 91 to 180                             | 2                    | 50 to 199.99          |
 * | 1     | more than 180                         | 1                    | under 50              |
 *
 * The value is in whatever currency unit the site sends with its purchase events.
 */
import type { RfmScores } from '../../contract/query.js';

export interface RfmInputs {
  /** Epoch ms of the last purchase. */
  last: number;
  count: number;
  total: number;
}

/** Each 1 to 5, and `code`: the three digits, R then F then M ("545"). The API's shape (contract/query.ts). */
export type { RfmScores };

export interface RfmScale {
  /** Upper bounds in days for scores 5, 4, 3, 2 (older: 1). */
  recencyDays: readonly [number, number, number, number];
  /** Lower bounds for scores 2, 3, 4, 5. */
  frequency: readonly [number, number, number, number];
  /** Lower bounds for scores 2, 3, 4, 5. */
  monetary: readonly [number, number, number, number];
}

export const DEFAULT_RFM_SCALE: RfmScale = {
  recencyDays: [7, 30, 90, 180],
  frequency: [2, 3, 5, 10],
  monetary: [50, 200, 500, 1000],
};

const DAY = 86_400_000;

/** 1 + how many of the ascending lower bounds `v` reaches. */
const atLeast = (v: number, bounds: readonly number[]) => 1 + bounds.filter((b) => v >= b).length;

export function rfmScores(inputs: RfmInputs, now: number, scale: RfmScale = DEFAULT_RFM_SCALE): RfmScores {
  const days = Math.max(0, now - inputs.last) / DAY;
  const recency = 5 - scale.recencyDays.filter((b) => days > b).length;
  const frequency = atLeast(inputs.count, scale.frequency);
  const monetary = atLeast(inputs.total, scale.monetary);
  return { recency, frequency, monetary, code: `${recency}${frequency}${monetary}` };
}
