import { describe, expect, it } from 'vitest';
import { quantileScale, quantileScores, quintile, thresholdsOf, type RfmSample } from '../../history/crm/rfm-quantiles.js';

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 10, 30);

describe("RFM by the site's own quintiles", () => {
  it('splits distinct values into five equal fifths', () => {
    const xs = Float64Array.from({ length: 100 }, (_, i) => i + 1);
    const counts = [0, 0, 0, 0, 0];
    for (const v of xs) counts[quintile(xs, v) - 1]!++;
    expect(counts).toEqual([20, 20, 20, 20, 20]);
    expect(quintile(xs, 1)).toBe(1);
    expect(quintile(xs, 100)).toBe(5);
  });

  it('gives tied values one score, by their mid-rank', () => {
    // 70% bought once, 15% twice, 10% three times, 5% ten times.
    const counts = [...Array(70).fill(1), ...Array(15).fill(2), ...Array(10).fill(3), ...Array(5).fill(10)];
    const xs = Float64Array.from(counts).sort();
    expect(quintile(xs, 1)).toBe(2); // mid-rank 0.35
    expect(quintile(xs, 2)).toBe(4); // 0.775
    expect(quintile(xs, 3)).toBe(5); // 0.9
    expect(quintile(xs, 10)).toBe(5);
  });

  it('means the same for a cheap shop and a dear one: scores depend on standing, not on amounts', () => {
    const sample = (scale: number): RfmSample[] =>
      Array.from({ length: 500 }, (_, i) => ({ last: NOW - (i % 97) * DAY, count: 1 + (i % 7), total: scale * (1 + ((i * 37) % 500)) }));
    const cheap = quantileScale(sample(1));
    const dear = quantileScale(sample(1000));
    for (let i = 0; i < 500; i += 13) {
      const a = quantileScores(cheap, sample(1)[i]!);
      const b = quantileScores(dear, sample(1000)[i]!);
      expect(a).toEqual(b);
    }
    // With fixed thresholds (50, 200, 500, 1000) the dear shop's every customer would score 5.
    const monetary = sample(1000).map((s) => quantileScores(dear, s).monetary);
    expect(new Set(monetary)).toEqual(new Set([1, 2, 3, 4, 5]));
  });

  it('scores a later last purchase higher, and shows the thresholds in use', () => {
    const samples = Array.from({ length: 50 }, (_, i) => ({ last: NOW - i * DAY, count: 1, total: 10 * (i + 1) }));
    const scale = quantileScale(samples);
    expect(quantileScores(scale, samples[0]!).recency).toBe(5);
    expect(quantileScores(scale, samples[49]!).recency).toBe(1);
    const t = thresholdsOf(scale);
    // Ten values per fifth: 20, 30, ... the 11th, 21st, 31st, 41st smallest totals.
    expect(t.total).toEqual([110, 210, 310, 410]);
    expect(t.last).toEqual([NOW - 39 * DAY, NOW - 29 * DAY, NOW - 19 * DAY, NOW - 9 * DAY]);
    // All bought once: everyone stands in the middle, no value reaches 4 or 5.
    expect(t.count).toEqual([1, 1, null, null]);
    for (const [k, v] of t.total.entries()) expect(quantileScores(scale, { ...samples[0]!, total: v! }).monetary).toBe(k + 2);
  });
});
