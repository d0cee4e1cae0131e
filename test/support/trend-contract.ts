import { afterAll, describe, expect, it } from 'vitest';
import { isTransition, type Transition } from '../../contract/transition.js';
import { bucketOf, DAY_MS, HOUR_MS } from '../../history/crm/trends.js';
import type { FoldEvent } from '../../history/fold/fold.js';
import type { BatchRecord } from '../../history/fold/person-batch.js';
import { RECENT_TRANSITIONS, type HistoryStore } from '../../history/store/store.js';
import { prng } from './prng.js';
import { FOLD_OPTIONS } from './store-contract.js';

/**
 * The trend counters and the latest transitions, on every store: what they hold equals an
 * independent count of the transitions the folds published, a redelivery or an outbox published
 * again counts nothing twice, buckets past the retention go, and an erased person leaves the list.
 * `make(clock)`: a fresh, empty store whose fold reads `clock`.
 */
export function trendContract(name: string, make: (clock: () => number) => Promise<HistoryStore>, cleanup: () => Promise<void> = async () => {}) {
  describe(`trend counters: ${name}`, () => {
    afterAll(cleanup);
    const LADDER = FOLD_OPTIONS.ladder;
    const NOW = Date.UTC(2026, 10, 30, 15, 20);
    let offset = 0;
    let seq = 0;
    const rec = (person: string, stage: number, ts: number, topic = 'product:a', extra: Partial<FoldEvent> = {}): BatchRecord => ({
      offset: offset++,
      person,
      event: { id: `tr-${++seq}`, ts, channel: 'web', topic, stage, ...extra },
    });
    const fold = async (store: HistoryStore, records: BatchRecord[], partition = 'clicks.raw/0') => {
      const o = await store.foldBatch(partition, records);
      await o.published();
      return o.transitions.filter(isTransition);
    };
    /** Counts by bucket and stage, from the transitions themselves. */
    const countOf = (ts: readonly Transition[], topic: string, g: 'hour' | 'day', from: number, to: number) => {
      const out: number[][] = [];
      for (let b = from; b <= to; b++) out.push(LADDER.map((s) => ts.filter((t) => t.topic === topic && t.to === s && bucketOf(t.at, g) === b).length));
      return out;
    };

    it('equal an independent count of the transitions folded, by hour and by day, topic by topic', async () => {
      const store = await make(() => NOW);
      const rnd = prng(18);
      const published: Transition[] = [];
      for (let batch = 0; batch < 12; batch++) {
        const records: BatchRecord[] = [];
        for (let i = 0; i < 40; i++) {
          const person = `p${Math.floor(rnd() * 60)}`;
          const topic = rnd() < 0.7 ? 'product:a' : 'product:b';
          // Within the last 5 days, in time order per batch so every record folds.
          const ts = NOW - 5 * DAY_MS + batch * 10 * HOUR_MS + i * 60_000;
          records.push(rec(person, Math.floor(rnd() * LADDER.length), ts, topic));
        }
        published.push(...(await fold(store, records, `clicks.raw/${batch % 3}`)));
      }
      expect(published.length).toBeGreaterThan(100);
      for (const topic of ['product:a', 'product:b']) {
        const [h0, h1] = [bucketOf(NOW - 6 * DAY_MS, 'hour'), bucketOf(NOW, 'hour')];
        expect(await store.trend(topic, 'hour', h0, h1)).toEqual(countOf(published, topic, 'hour', h0, h1));
        const [d0, d1] = [bucketOf(NOW - 10 * DAY_MS, 'day'), bucketOf(NOW, 'day')];
        expect(await store.trend(topic, 'day', d0, d1)).toEqual(countOf(published, topic, 'day', d0, d1));
      }
      expect(await store.trend('product:none', 'day', bucketOf(NOW, 'day') - 1, bucketOf(NOW, 'day'))).toEqual([
        [0, 0, 0],
        [0, 0, 0],
      ]);
    });

    it('count a redelivered batch, and an outbox a crash left, once', async () => {
      const store = await make(() => NOW);
      const batch = [rec('r1', 0, NOW - HOUR_MS), rec('r1', 1, NOW - HOUR_MS + 1), rec('r2', 2, NOW - HOUR_MS + 2)];
      const first = await fold(store, batch);
      expect(first).toHaveLength(3);
      const h = bucketOf(NOW - HOUR_MS, 'hour');
      expect(await store.trend('product:a', 'hour', h, h)).toEqual([[1, 1, 1]]);
      // The same records again (a rebalance, a retry): skipped by the offsets, counted nothing.
      expect(await fold(store, batch)).toEqual([]);
      // A crash before publishing: the next batch republishes the outbox, and counts only its own.
      const crashed = await store.foldBatch('clicks.raw/0', [rec('r3', 0, NOW - 30 * 60_000)]);
      expect(crashed.transitions).toHaveLength(1);
      const next = await fold(store, [rec('r3', 1, NOW - 20 * 60_000)]);
      expect(next.map((t) => t.to)).toEqual(['intro', 'detail']);
      // r3 reached intro at 14:50 (hour h, with r1 and r2), detail at 15:00.
      expect(await store.trend('product:a', 'hour', h, h + 1)).toEqual([
        [2, 1, 1],
        [0, 1, 0],
      ]);
      expect(await store.trend('product:a', 'day', bucketOf(NOW, 'day'), bucketOf(NOW, 'day'))).toEqual([[2, 2, 1]]);
    });

    it('prune buckets past the retention: 14 days of hours, 400 days of days', async () => {
      let now = NOW;
      const store = await make(() => now);
      await fold(store, [rec('old', 0, NOW)]);
      const h = bucketOf(NOW, 'hour');
      const d = bucketOf(NOW, 'day');
      expect(await store.trend('product:a', 'hour', h, h)).toEqual([[1, 0, 0]]);
      // 14 days later the hour has gone, the day stays; a late transition of that hour is dropped.
      now = NOW + 14 * DAY_MS;
      await fold(store, [rec('later', 0, now), rec('late', 0, NOW + 1)]);
      expect(await store.trend('product:a', 'hour', h, h)).toEqual([[0, 0, 0]]);
      expect(await store.trend('product:a', 'hour', bucketOf(now, 'hour'), bucketOf(now, 'hour'))).toEqual([[1, 0, 0]]);
      expect(await store.trend('product:a', 'day', d, d)).toEqual([[2, 0, 0]]);
      // 400 days later the day has gone too, after a quiet spell longer than the retention.
      now = NOW + 401 * DAY_MS;
      await fold(store, [rec('much-later', 0, now)]);
      expect(await store.trend('product:a', 'day', d, d + 1)).toEqual([
        [0, 0, 0],
        [0, 0, 0],
      ]);
      expect(await store.trend('product:a', 'day', d + 14, d + 14)).toEqual([[1, 0, 0]]);
      expect(await store.trend('product:a', 'day', bucketOf(now, 'day'), bucketOf(now, 'day'))).toEqual([[1, 0, 0]]);
    });

    it('keep the latest transitions, newest first and capped, without an erased person', async () => {
      const store = await make(() => NOW);
      const published: Transition[] = [];
      for (let i = 0; i < 30; i++) {
        published.push(...(await fold(store, [rec(`l${i}`, 0, NOW - 3 * HOUR_MS + i * 1000), rec(`l${i}`, 1, NOW - 3 * HOUR_MS + i * 1000 + 1)])));
      }
      expect(published).toHaveLength(60);
      const recent = await store.recentTransitions(RECENT_TRANSITIONS + 10);
      expect(recent).toEqual(published.slice(-RECENT_TRANSITIONS).reverse());
      expect(await store.recentTransitions(3)).toEqual(published.slice(-3).reverse());
      await store.erase('l29', NOW);
      const left = await store.recentTransitions(RECENT_TRANSITIONS);
      expect(left.map((t) => t.person)).not.toContain('l29');
      expect(left[0]).toEqual(published.at(-3));
    });
  });
}
