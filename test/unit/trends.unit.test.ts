import { describe, expect, it } from 'vitest';
import { bucketOf, DAY_MS, HOUR_MS, trendIncrements, trendSeries, type TrendIncrement } from '../../history/crm/trends.js';

const LADDER = ['intro', 'detail', 'purchase'];
const T0 = Date.UTC(2026, 10, 30, 9, 15);

/** Applies increments to a map, as a store's counters would. */
function store(increments: TrendIncrement[]) {
  const m = new Map<string, Map<string, number>>();
  for (const i of increments) {
    const k = `${i.topic}|${i.granularity}|${i.bucket}`;
    let c = m.get(k);
    if (!c) m.set(k, (c = new Map()));
    c.set(i.stage, (c.get(i.stage) ?? 0) + i.by);
  }
  return (topic: string, g: 'hour' | 'day') => (b: number) => m.get(`${topic}|${g}|${b}`);
}

describe('trends', () => {
  const transitions = [
    { topic: 'product:a', to: 'intro', at: T0 },
    { topic: 'product:a', to: 'intro', at: T0 + 1000 },
    { topic: 'product:a', to: 'detail', at: T0 + 2000 },
    { topic: 'product:a', to: 'detail', at: T0 + 2 * HOUR_MS },
    { topic: 'product:b', to: 'intro', at: T0 },
    { topic: 'product:a', to: 'purchase', at: T0 + DAY_MS },
  ];

  it('sums a batch into one increment per topic, stage and bucket', () => {
    const inc = trendIncrements(transitions);
    const hourly = inc.filter((i) => i.granularity === 'hour' && i.topic === 'product:a');
    expect(hourly.find((i) => i.stage === 'intro')).toMatchObject({ bucket: bucketOf(T0, 'hour'), by: 2 });
    expect(hourly).toHaveLength(4);
    expect(inc.filter((i) => i.granularity === 'day')).toHaveLength(4);
  });

  it('reads a series with every bucket present and the counts where they happened', () => {
    const read = store(trendIncrements(transitions));
    const hours = trendSeries('hour', T0 - HOUR_MS, T0 + 3 * HOUR_MS, T0 + 2 * DAY_MS, LADDER, read('product:a', 'hour'));
    expect(hours.map((p) => p.counts)).toEqual([
      [0, 0, 0],
      [2, 1, 0],
      [0, 0, 0],
      [0, 1, 0],
      [0, 0, 0],
    ]);
    expect(hours[1]!.start).toBe(Date.UTC(2026, 10, 30, 9));
    const days = trendSeries('day', T0, T0 + DAY_MS, T0 + DAY_MS, LADDER, read('product:a', 'day'));
    expect(days.map((p) => p.counts)).toEqual([
      [2, 2, 0],
      [0, 0, 1],
    ]);
  });

  it('never reads past what is kept, nor into the future, whatever range is asked', () => {
    const read = store(trendIncrements(transitions));
    const all = trendSeries('hour', 0, Number.MAX_SAFE_INTEGER, T0, LADDER, read('product:a', 'hour'));
    expect(all).toHaveLength(14 * 24);
    expect(all.at(-1)!.start).toBe(bucketOf(T0, 'hour') * HOUR_MS);
    expect(trendSeries('day', 0, Number.MAX_SAFE_INTEGER, T0, LADDER, read('product:a', 'day'))).toHaveLength(400);
  });
});
