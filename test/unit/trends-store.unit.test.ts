import { describe, expect, it } from 'vitest';
import { bucketOf } from '../../history/crm/trends.js';
import { restoreStore, storeLines } from '../../history/store/memory-snapshot.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';
import { trendContract } from '../support/trend-contract.js';

trendContract('in-memory', async (clock) => new MemoryHistoryStore(FOLD_OPTIONS, clock));

describe('trend counters in the embedded snapshot', () => {
  const NOW = Date.UTC(2026, 10, 30, 9);
  const folded = async () => {
    const store = new MemoryHistoryStore(FOLD_OPTIONS, () => NOW);
    const ev = (n: number, stage: number) => ({ id: `s-${n}`, ts: NOW - n * 60_000, channel: 'web', topic: 'product:a', stage });
    await (
      await store.foldBatch('clicks.raw/0', [
        { offset: 0, person: 'a', event: ev(3, 0) },
        { offset: 1, person: 'a', event: ev(2, 1) },
        { offset: 2, person: 'b', event: ev(1, 0) },
      ])
    ).published();
    return store;
  };

  it('keeps the counters and the latest transitions across a snapshot', async () => {
    const store = await folded();
    const restored = new MemoryHistoryStore(FOLD_OPTIONS, () => NOW);
    restoreStore(restored, [...storeLines(store)]);
    const h = bucketOf(NOW, 'hour');
    expect(await restored.trend('product:a', 'hour', h - 1, h)).toEqual([
      [2, 1, 0],
      [0, 0, 0],
    ]);
    expect(await restored.recentTransitions(10)).toEqual(await store.recentTransitions(10));
    expect((await restored.recentTransitions(10)).map((t) => t.person)).toEqual(['b', 'a', 'a']);
  });

  it('restores a snapshot written before trends with none', async () => {
    const lines = [...storeLines(await folded())].filter((l) => !l.startsWith('["tr"') && !l.startsWith('["rt"'));
    const restored = new MemoryHistoryStore(FOLD_OPTIONS, () => NOW);
    expect(restoreStore(restored, lines)).toEqual({ people: 2 });
    expect(await restored.trend('product:a', 'day', bucketOf(NOW, 'day'), bucketOf(NOW, 'day'))).toEqual([[0, 0, 0]]);
    expect(await restored.recentTransitions(10)).toEqual([]);
  });
});
