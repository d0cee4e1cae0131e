import { describe, expect, it } from 'vitest';
import { restoreStore, storeLines } from '../../history/store/memory-snapshot.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { crossSellContract } from '../support/cross-sell-contract.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';

crossSellContract('in-memory', async () => new MemoryHistoryStore(FOLD_OPTIONS));

describe('cross-selling counters in the embedded snapshot', () => {
  const T0 = Date.UTC(2026, 10, 30, 9);
  const folded = async () => {
    const store = new MemoryHistoryStore(FOLD_OPTIONS);
    const ev = (n: number, topic: string) => ({ id: `xss-${n}`, ts: T0 + n * 60_000, channel: 'web', topic, stage: 2 });
    await (
      await store.foldBatch('clicks.raw/0', [
        { offset: 0, person: 'a', event: ev(0, 'product:x') },
        { offset: 1, person: 'a', event: ev(1, 'product:y') },
        { offset: 2, person: 'b', event: ev(2, 'product:x') },
        { offset: 3, person: 'b', event: ev(3, 'product:z') },
      ])
    ).published();
    return store;
  };

  it('keeps the counters across a snapshot', async () => {
    const store = await folded();
    const restored = new MemoryHistoryStore(FOLD_OPTIONS);
    restoreStore(restored, [...storeLines(store)]);
    expect(await restored.crossSell(['product:x', 'product:y'])).toEqual(await store.crossSell(['product:x', 'product:y']));
    expect(await restored.related('product:x', 5)).toEqual([
      { topic: 'product:y', count: 1, error: 0 },
      { topic: 'product:z', count: 1, error: 0 },
    ]);
  });

  it('restores a snapshot written before cross-selling with none', async () => {
    const lines = [...storeLines(await folded())].filter((l) => !l.startsWith('["xs"'));
    const restored = new MemoryHistoryStore(FOLD_OPTIONS);
    expect(restoreStore(restored, lines)).toEqual({ people: 2 });
    expect(await restored.crossSell(['product:x'])).toEqual([{ buyers: 0, followers: new Map() }]);
    expect(await restored.related('product:x', 5)).toEqual([]);
  });
});
