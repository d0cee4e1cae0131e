import { describe, expect, it } from 'vitest';
import { countFollower, type Followers, pairsOfBatch, pairsOfPurchase, suggest } from '../../history/crm/cross-sell.js';
import { prng } from '../support/prng.js';

/** Counts a stream of people's purchase sequences as the fold would, one purchase at a time. */
function countStream(sequences: string[][], capacity: number) {
  const followers = new Map<string, Followers>();
  const buyers = new Map<string, number>();
  for (const seq of sequences) {
    const before: string[] = [];
    for (const y of seq) {
      if (before.includes(y)) continue;
      for (const [x] of pairsOfPurchase(before, y)) {
        let f = followers.get(x);
        if (!f) followers.set(x, (f = new Map()));
        countFollower(f, y, capacity);
      }
      buyers.set(y, (buyers.get(y) ?? 0) + 1);
      before.push(y);
    }
  }
  return { followers, buyers, followersOf: (t: string) => followers.get(t), buyersOf: (t: string) => buyers.get(t) ?? 0 };
}

describe('cross-selling', () => {
  it('suggests Y first to a buyer of X when buyers of X mostly go on to buy Y', () => {
    const u = prng(3);
    const catalogue = Array.from({ length: 200 }, (_, i) => `product:${i}`);
    const sequences: string[][] = [];
    for (let i = 0; i < 5000; i++) {
      const seq = [catalogue[Math.floor(u() * catalogue.length)]!];
      if (seq[0] === 'product:150' && u() < 0.7) seq.push('product:142');
      // Noise: popular products anyone may buy next, more often overall than product:142.
      for (let k = 0; k < 3; k++) if (u() < 0.5) seq.push(catalogue[Math.floor(u() ** 3 * 20)]!);
      sequences.push(seq);
    }
    const c = countStream(sequences, 16);
    const s = suggest(['product:150'], c.followersOf, c.buyersOf, 5);
    expect(s[0]!.topic).toBe('product:142');
    expect(s[0]!.support[0]).toMatchObject({ after: 'product:150' });
    expect(s[0]!.support[0]!.count / s[0]!.support[0]!.buyers).toBeGreaterThan(0.5);
    // Not what they already bought, and a buyer of something else is not told product:142 first.
    expect(suggest(['product:150', 'product:142'], c.followersOf, c.buyersOf, 5).map((x) => x.topic)).not.toContain('product:142');
    expect(suggest(['product:100'], c.followersOf, c.buyersOf, 5)[0]?.topic).not.toBe('product:142');
  });

  it('keeps at most `capacity` followers per topic, and never loses one followed more often than the smallest kept count', () => {
    const f: Followers = new Map();
    const u = prng(9);
    const truth = new Map<string, number>();
    for (let i = 0; i < 20_000; i++) {
      // A few heavy followers among thousands of one-offs.
      const y = u() < 0.3 ? `heavy:${Math.floor(u() * 4)}` : `rare:${Math.floor(u() * 5000)}`;
      truth.set(y, (truth.get(y) ?? 0) + 1);
      countFollower(f, y, 32);
      expect(f.size).toBeLessThanOrEqual(32);
    }
    const minKept = Math.min(...[...f.values()].map((c) => c.count));
    for (const [y, n] of truth) if (n > minKept) expect(f.has(y)).toBe(true);
    for (const [y, c] of f) {
      // Space-Saving's guarantee: the count overstates by at most its error, never understates.
      expect(c.count).toBeGreaterThanOrEqual(truth.get(y)!);
      expect(c.count - c.error).toBeLessThanOrEqual(truth.get(y)!);
    }
  });

  it('counts each pair of a purchase once, and a repeat purchase of the same topic not against itself', () => {
    expect(pairsOfPurchase(['a', 'b'], 'c')).toEqual([
      ['a', 'c'],
      ['b', 'c'],
    ]);
    expect(pairsOfPurchase(['a', 'b'], 'a')).toEqual([['b', 'a']]);
  });

  it('pairs a batch’s purchases with the ones before them: earlier batches whatever their time, the same batch only if earlier, the most recent first', () => {
    const bought = [
      { topic: 'old', at: 500 },
      { topic: 'a', at: 100 },
      { topic: 'b', at: 200 },
    ];
    // a and b bought in this batch, a first: one pair a→b, and `old` (an earlier batch, later clock) before both.
    expect(
      pairsOfBatch(bought, [
        { topic: 'a', at: 100 },
        { topic: 'b', at: 200 },
      ]),
    ).toEqual([
      ['old', 'a'],
      ['old', 'b'],
      ['a', 'b'],
    ]);
    const many = Array.from({ length: 20 }, (_, i) => ({ topic: `t${i}`, at: i }));
    const pairs = pairsOfBatch([...many, { topic: 'new', at: 99 }], [{ topic: 'new', at: 99 }], 16);
    expect(pairs.map(([x]) => x)).toEqual(
      many
        .slice(4)
        .reverse()
        .map((t) => t.topic),
    );
  });
});
