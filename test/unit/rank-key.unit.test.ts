import { describe, expect, it } from 'vitest';
import { rankNeeds, type NeedCandidate } from '../../history/query/needs-rank.js';
import { compareRanked, decodeRank, deltaOf, floorOf, MAX_DELTA_MS, rankScore, scoreAt, TAU_MS, W_MAX } from '../../history/store/rank-key.js';
import { SortedIndex } from '../../history/store/sorted-index.js';

const T0 = Date.UTC(2026, 5, 1);
const DAY = 86_400_000;

/** A deterministic population: lasts over 60 days, ms apart at random, intensities from 1 to a few thousand. */
function population(n: number, seed = 7): NeedCandidate[] {
  let x = seed;
  const rnd = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  return Array.from({ length: n }, (_, i) => {
    const heavy = rnd() < 0.05;
    const counts = [1 + Math.floor(rnd() * 4), Math.floor(rnd() * (heavy ? 2000 : 5)), Math.floor(rnd() * 2)];
    return { person: `p-${i}`, last: T0 + Math.floor(rnd() * 60 * DAY), counts };
  });
}

describe('the needs ranking as an index score (rank-key.ts)', () => {
  it('decodes back to the last activity and the weighted interactions it was written for, exactly', () => {
    for (const c of population(5000)) {
      const s = rankScore(c.last, c.counts);
      expect(Number.isSafeInteger(s)).toBe(true);
      const d = decodeRank(s);
      expect(d.last).toBe(c.last);
      expect(d.w).toBe(Math.min(W_MAX, c.counts[0]! + 2 * c.counts[1]! + 3 * c.counts[2]!));
      expect(d.k).toBe(c.last + deltaOf(d.w));
    }
    expect(deltaOf(1)).toBe(0);
    expect(MAX_DELTA_MS).toBe(Math.floor(TAU_MS * Math.log(12)));
  });

  it('orders people exactly as the definition does, at every moment: a year before, during and a year after', () => {
    const people = population(20_000);
    const byIndex = people
      .map((c) => ({ person: c.person, score: rankScore(c.last, c.counts) }))
      .sort(compareRanked)
      .map((e) => e.person);
    for (const now of [T0 - 365 * DAY, T0, T0 + 30 * DAY, T0 + 61 * DAY, T0 + 365 * DAY]) {
      expect(byIndex).toEqual(rankNeeds(people, now).map((r) => r.person));
    }
  });

  it('answers the score of the definition from the index score', () => {
    for (const c of population(500)) {
      const at = scoreAt(rankScore(c.last, c.counts), T0 + 10 * DAY);
      const [def] = rankNeeds([c], T0 + 10 * DAY);
      expect(at.score).toBeCloseTo(def!.score, 12);
    }
  });

  it('floors by K: S >= floorOf(t) exactly when last + δ(w) >= t', () => {
    for (const c of population(2000)) {
      const s = rankScore(c.last, c.counts);
      const k = decodeRank(s).k;
      for (const t of [k - 1, k, k + 1]) expect(s >= floorOf(t)).toBe(k >= t);
    }
  });
});

describe('SortedIndex (the in-memory store’s sorted set)', () => {
  it('keeps the index order through inserts, updates and deletes, and reads after any position', () => {
    const idx = new SortedIndex();
    const model = new Map<string, number>();
    let x = 99;
    const rnd = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 20_000; i++) {
      const m = `m-${Math.floor(rnd() * 3000)}`;
      if (rnd() < 0.2) {
        idx.delete(m);
        model.delete(m);
      } else {
        // Few distinct scores: many ties, ordered by member.
        const s = Math.floor(rnd() * 500);
        idx.set(m, s);
        model.set(m, s);
      }
    }
    const expected = [...model].map(([person, score]) => ({ person, score })).sort(compareRanked);
    expect([...idx.from(undefined)]).toEqual(expected);
    expect(idx.size).toBe(model.size);
    for (const at of [0, 1, 17, 500, expected.length - 1]) expect([...idx.from(expected[at])]).toEqual(expected.slice(at + 1));
    // After a position no longer in the set: from where it would be.
    expect([...idx.from({ person: 'zzz', score: 250 })]).toEqual(expected.filter((e) => compareRanked({ person: 'zzz', score: 250 }, e) < 0));
    expect(idx.countFrom(250)).toBe(expected.filter((e) => e.score >= 250).length);
    expect([...idx.from(undefined, 400)]).toEqual(expected.filter((e) => e.score >= 400));
  });
});
