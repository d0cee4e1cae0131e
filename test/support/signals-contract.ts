import { afterAll, describe, expect, it } from 'vitest';
import { isTransition } from '../../contract/transition.js';
import type { FoldEvent, FoldOptions } from '../../history/fold/fold.js';
import type { BatchRecord } from '../../history/fold/person-batch.js';
import { queryNeeds, type NeedsQuery } from '../../history/query/needs.js';
import type { HistoryStore } from '../../history/store/store.js';

/**
 * Signals ("the voice of the customer") on every store: counted per dialogue, shown on the person,
 * merged by identify, filtering the needs list and moving its ranking by the map's weights.
 * `make(opts)`: a fresh, empty store folding with `opts`.
 */
export const SIGNAL_FOLD_OPTIONS: FoldOptions = {
  ladder: ['intro', 'detail', 'purchase'],
  quietMs: 30 * 86_400_000,
  seenSize: 32,
  signals: new Map([
    ['inquiry', 0],
    ['complaint', 40],
    ['happy', -40],
  ]),
};

export function signalsContract(name: string, make: (opts: FoldOptions) => Promise<HistoryStore>, cleanup: () => Promise<void> = async () => {}) {
  describe(`signals on dialogues: ${name}`, () => {
    afterAll(cleanup);
    const T0 = Date.UTC(2026, 5, 1);
    const TOPIC = 'product:sku-9';
    let offset = 0;
    let id = 0;
    const rec = (person: string, stage: number, ts: number, extra: Partial<FoldEvent> = {}): BatchRecord => ({
      offset: offset++,
      person,
      event: { id: `sig-${++id}`, ts, channel: 'web', topic: TOPIC, stage, ...extra },
    });
    const fold = async (store: HistoryStore, records: BatchRecord[]) => {
      const outcome = await store.foldBatch('clicks.raw/0', records);
      await outcome.published();
      return outcome.transitions.filter(isTransition);
    };
    const signalsOf = async (store: HistoryStore, person: string) => (await store.getPerson(person))?.dialogues.find((d) => d.topic === TOPIC)?.signals;
    const needs = async (store: HistoryStore, extra: Partial<NeedsQuery> = {}) =>
      queryNeeds(store, SIGNAL_FOLD_OPTIONS.ladder, {
        topic: TOPIC,
        stage: 1,
        notReached: 2,
        activeWithinMs: 30 * 86_400_000,
        limit: 50,
        now: T0 + 3_600_000,
        ...extra,
      });

    it('counts each signal on its dialogue, open until closed, and shows it on the person', async () => {
      const store = await make(SIGNAL_FOLD_OPTIONS);
      await fold(store, [rec('ann', 1, T0), rec('ann', 1, T0 + 1, { channel: 'call', signal: { name: 'inquiry' } })]);
      expect(await signalsOf(store, 'ann')).toEqual({ inquiry: { count: 1, open: true } });
      await fold(store, [
        rec('ann', 1, T0 + 2, { channel: 'call', signal: { name: 'inquiry' } }),
        rec('ann', 1, T0 + 3, { channel: 'call', signal: { name: 'inquiry', close: true } }),
        rec('ann', 1, T0 + 4, { channel: 'call', signal: { name: 'complaint', close: true } }),
      ]);
      // A close of a signal never raised records nothing.
      expect(await signalsOf(store, 'ann')).toEqual({ inquiry: { count: 2, open: false } });
      const p = await store.getPerson('ann');
      expect(p?.dialogues[0]?.channels).toEqual(['web', 'call']);
      // A dialogue without signals shows {}.
      await fold(store, [rec('bob', 1, T0)]);
      expect(await signalsOf(store, 'bob')).toEqual({});
    });

    it('merges an anonymous visitor’s signals into the person on identify: counts summed, open if either is', async () => {
      const store = await make(SIGNAL_FOLD_OPTIONS);
      await fold(store, [
        rec('anon-s', 1, T0, { signal: { name: 'inquiry' } }),
        rec('user-s', 1, T0 + 1, { signal: { name: 'inquiry' } }),
        rec('user-s', 1, T0 + 2, { signal: { name: 'inquiry', close: true } }),
        rec('user-s', 1, T0 + 3, { signal: { name: 'complaint' } }),
      ]);
      await fold(store, [{ offset: offset++, person: 'user-s', event: null, link: 'anon-s', at: T0 + 10, channel: 'web' }]);
      expect(await signalsOf(store, 'user-s')).toEqual({ inquiry: { count: 2, open: true }, complaint: { count: 1, open: true } });
    });

    it('filters the needs list by signal and by open, paging through with the cursor past short pages', async () => {
      const store = await make(SIGNAL_FOLD_OPTIONS);
      const records: BatchRecord[] = [];
      for (let i = 0; i < 9; i++) {
        const person = `n-${i}`;
        records.push(rec(person, 1, T0 + i * 1000));
        if (i % 3 === 0) records.push(rec(person, 1, T0 + i * 1000 + 1, { channel: 'call', signal: { name: 'inquiry' } }));
        if (i === 3) records.push(rec(person, 1, T0 + i * 1000 + 2, { channel: 'call', signal: { name: 'inquiry', close: true } }));
      }
      await fold(store, records);
      const all = await needs(store);
      expect(all.rows).toHaveLength(9);
      expect((await needs(store, { signal: { name: 'inquiry' } })).rows.map((r) => r.person).sort()).toEqual(['n-0', 'n-3', 'n-6']);
      expect((await needs(store, { signal: { name: 'inquiry', open: true } })).rows.map((r) => r.person).sort()).toEqual(['n-0', 'n-6']);
      expect((await needs(store, { signal: { name: 'inquiry', open: false } })).rows.map((r) => r.person)).toEqual(['n-3']);
      expect((await needs(store, { signal: { name: 'complaint' } })).rows).toEqual([]);

      // Pages of 2 read 2 entries each: some hold fewer rows, the cursor still reaches everyone once.
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await needs(store, { limit: 2, cursor, signal: { name: 'inquiry', open: true } });
        expect(page.rows.length).toBeLessThanOrEqual(2);
        seen.push(...page.rows.map((r) => r.person));
        cursor = page.nextCursor ?? undefined;
        pages++;
      } while (cursor);
      expect(pages).toBe(5);
      expect(seen.sort()).toEqual(['n-0', 'n-6']);
      // A cursor belongs to its filter.
      const first = await needs(store, { limit: 2, signal: { name: 'inquiry' } });
      await expect(needs(store, { limit: 2, cursor: first.nextCursor!, signal: { name: 'inquiry', open: true } })).rejects.toThrow(/another query/);
    });

    it('raises or lowers the needs ranking by the map’s weight while the signal is open', async () => {
      const store = await make(SIGNAL_FOLD_OPTIONS);
      // Same activity, same moment: without signals the larger id goes first (r-b, then r-a, r-c).
      await fold(store, [rec('r-a', 1, T0), rec('r-b', 1, T0), rec('r-c', 1, T0)]);
      expect((await needs(store)).rows.map((r) => r.person)).toEqual(['r-c', 'r-b', 'r-a']);
      // A complaint (+40) lifts r-a above the others; a happy call (-40) sinks r-c below them, even
      // though both are one interaction more, and an inquiry (weight 0) is only that interaction.
      await fold(store, [
        rec('r-a', 1, T0 + 1, { channel: 'call', signal: { name: 'complaint' } }),
        rec('r-c', 1, T0 + 1, { channel: 'call', signal: { name: 'happy' } }),
      ]);
      expect((await needs(store)).rows.map((r) => r.person)).toEqual(['r-a', 'r-b', 'r-c']);
      const [a, b] = (await needs(store)).rows;
      expect(a!.score).toBeGreaterThan(b!.score);
      // Closed, the complaint weighs nothing more: r-a ranks by its interactions again, below r-b
      // with as many and more recent.
      await fold(store, [rec('r-a', 1, T0 + 2, { channel: 'call', signal: { name: 'complaint', close: true } }), rec('r-b', 1, T0 + 2), rec('r-b', 1, T0 + 3)]);
      const rows = (await needs(store)).rows;
      expect(rows.map((r) => r.person)).toEqual(['r-b', 'r-a', 'r-c']);
    });
  });
}
