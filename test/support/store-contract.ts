import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { foldBatchWith, type FieldBackend } from '../../history/fold/fold-batch.js';
import type { FoldEvent, FoldOptions } from '../../history/fold/fold.js';
import type { BatchRecord } from '../../history/fold/person-batch.js';
import { rankNeeds } from '../../history/query/needs-rank.js';
import { deltaOf, floorOf, weightedInteractions } from '../../history/store/rank-key.js';
import { MAX_OPEN_LISTINGS, RANKING_ID, type HistoryStore, type NeedsPageResult } from '../../history/store/store.js';
import { isTransition, type Transition } from '../../contract/transition.js';

export const FOLD_OPTIONS: FoldOptions = { ladder: ['intro', 'detail', 'purchase'], quietMs: 30 * 86_400_000, seenSize: 32 };

/**
 * The store contract: every HistoryStore (Redis, in-memory) must pass the same suite.
 * `make` returns a fresh, empty store for each test.
 */
export interface StoreUnderTest {
  store: HistoryStore;
  /** Every person id the store holds anywhere: in a person key, or in any stage index; and the ids that have a tombstone. */
  inspect(): Promise<{ people: string[]; indexed: string[]; erased: string[] }>;
}

/** The store's field backend, to interleave a fold with an erase at a chosen step (both stores keep it as `backend`). */
const backendOf = (store: HistoryStore) => (store as unknown as { backend: FieldBackend }).backend;

/** A promise to hold a step on, and its release. */
function gate(): { wait: Promise<void>; open(): void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

/** `make(opts)`: a fresh, empty store folding with `opts` (FOLD_OPTIONS when absent). */
export function storeContract(name: string, make: (opts?: FoldOptions) => Promise<StoreUnderTest>, cleanup: () => Promise<void> = async () => {}) {
  describe(`HistoryStore contract: ${name}`, () => {
    let store: HistoryStore;
    let inspect: StoreUnderTest['inspect'];
    /** Who stands at a stage of a topic, most recently active first (the stage index). */
    const atStage = async (topic: string, stage: string, limit: number) => (await store.stageMembers(topic, stage, 0, limit)).map((m) => m.person);
    /** Folds and publishes, as the worker does; returns the transitions. */
    const foldAll = async (partition: string, records: BatchRecord[]): Promise<Transition[]> => {
      const outcome = await store.foldBatch(partition, records);
      await outcome.published();
      return outcome.transitions.filter(isTransition);
    };
    let offset = 0;
    let id = 0;
    const T0 = Date.UTC(2026, 5, 1);
    const H = 3_600_000;
    const rec = (person: string, stage: number, ts: number, extra: Partial<FoldEvent> = {}): BatchRecord => ({
      offset: offset++,
      person,
      event: { id: `ev-${++id}`, ts, channel: 'web', topic: 'product:sku-1', stage, ...extra },
    });

    beforeEach(async () => {
      ({ store, inspect } = await make());
      offset = 0;
    });
    afterAll(cleanup);

    it('folds a batch into dialogues and answers from the stage index', async () => {
      const t = await foldAll('clicks.raw/0', [rec('alice', 0, T0), rec('alice', 1, T0 + 1), rec('bob', 0, T0 + 2)]);
      expect(t.map((x) => [x.person, x.from, x.to])).toEqual([
        ['alice', null, 'intro'],
        ['alice', 'intro', 'detail'],
        ['bob', null, 'intro'],
      ]);
      const alice = await store.getPerson('alice');
      expect(alice?.dialogues).toMatchObject([{ topic: 'product:sku-1', stage: 'detail', counts: { intro: 1, detail: 1, purchase: 0 }, channels: ['web'] }]);
      expect(alice?.dialogues[0]?.firstReached).toEqual({ intro: new Date(T0).toISOString(), detail: new Date(T0 + 1).toISOString() });
      expect(await atStage('product:sku-1', 'detail', 10)).toEqual(['alice']);
      expect(await atStage('product:sku-1', 'intro', 10)).toEqual(['bob']);
      expect(await store.getPerson('nobody')).toBeNull();
    });

    it('never moves a dialogue back, and moves the person between stage indexes only upwards', async () => {
      await foldAll('clicks.raw/0', [rec('carol', 2, T0)]);
      const t = await foldAll('clicks.raw/0', [rec('carol', 0, T0 + 5), rec('carol', 1, T0 + 6)]);
      expect(t).toEqual([]);
      const carol = await store.getPerson('carol');
      expect(carol?.dialogues[0]).toMatchObject({ stage: 'purchase', counts: { intro: 1, detail: 1, purchase: 1 } });
      expect(await atStage('product:sku-1', 'purchase', 10)).toEqual(['carol']);
      expect(await atStage('product:sku-1', 'intro', 10)).toEqual([]);
    });

    it('skips records redelivered from the same partition offsets', async () => {
      const batch = [rec('dave', 0, T0), rec('dave', 1, T0 + 1)];
      const first = await foldAll('clicks.raw/3', batch);
      const again = await foldAll(
        'clicks.raw/3',
        batch.map((r) => ({ ...r, event: { ...r.event!, id: `${r.event!.id}-other` } })),
      );
      expect(first).toHaveLength(2);
      expect(again).toEqual([]);
      expect((await store.getPerson('dave'))?.dialogues[0]?.counts).toEqual({ intro: 1, detail: 1, purchase: 0 });
    });

    it('counts a client retry of the same event id once', async () => {
      const r1 = rec('erin', 1, T0);
      await foldAll('clicks.raw/0', [r1]);
      // The retry reached Kafka again, so it has a new offset, but the same event id.
      const t = await foldAll('clicks.raw/0', [{ ...r1, offset: offset++ }]);
      expect(t).toEqual([]);
      expect((await store.getPerson('erin'))?.dialogues[0]?.counts).toEqual({ intro: 0, detail: 1, purchase: 0 });
    });

    it('starts a new dialogue after the quiet period', async () => {
      await foldAll('clicks.raw/0', [rec('finn', 1, T0)]);
      const later = T0 + FOLD_OPTIONS.quietMs + 1000;
      const t = await foldAll('clicks.raw/0', [rec('finn', 0, later)]);
      expect(t).toMatchObject([{ from: null, to: 'intro' }]);
      const finn = await store.getPerson('finn');
      expect(finn?.dialogues[0]).toMatchObject({ stage: 'intro', started: new Date(later).toISOString(), counts: { intro: 1, detail: 0, purchase: 0 } });
      expect(await atStage('product:sku-1', 'intro', 10)).toEqual(['finn']);
      expect(await atStage('product:sku-1', 'detail', 10)).toEqual([]);
    });

    it('applies concurrent batches for one person from two partitions without losing either', async () => {
      const a = [rec('gina', 0, T0), rec('gina', 0, T0 + 1, { topic: 'product:sku-2' })];
      const b = [rec('gina', 1, T0 + 2), rec('gina', 2, T0 + 3, { topic: 'product:sku-3' })];
      const [ta, tb] = await Promise.all([foldAll('clicks.raw/1', a), foldAll('clicks.raw/2', b)]);
      expect(ta.length + tb.length).toBe(4);
      const gina = await store.getPerson('gina');
      const byTopic = Object.fromEntries(gina!.dialogues.map((d) => [d.topic, d.stage]));
      expect(byTopic).toEqual({ 'product:sku-1': 'detail', 'product:sku-2': 'intro', 'product:sku-3': 'purchase' });
    });

    it('keeps RFM inputs from purchases that carry a value', async () => {
      await foldAll('clicks.raw/0', [rec('hana', 2, T0, { value: 100 }), rec('hana', 2, T0 + 10, { value: 50.5 })]);
      expect((await store.getPerson('hana'))?.rfm).toEqual({
        firstPurchase: new Date(T0).toISOString(),
        lastPurchase: new Date(T0 + 10).toISOString(),
        purchases: 2,
        totalValue: 150.5,
      });
    });

    it('stores hostile topic and person names as plain data', async () => {
      await foldAll('clicks.raw/0', [rec('__proto__', 0, T0, { topic: 'constructor' }), rec('x{y}z', 1, T0, { topic: 'a|b,c' })]);
      expect((await store.getPerson('__proto__'))?.dialogues.map((d) => d.topic)).toEqual(['constructor']);
      expect((await store.getPerson('x{y}z'))?.dialogues[0]).toMatchObject({ topic: 'a|b,c', stage: 'detail' });
    });
    it('publishes transitions left in the outbox by a crash, once', async () => {
      const batch = [rec('ivan', 0, T0), rec('ivan', 1, T0 + 1)];
      const crashed = await store.foldBatch('clicks.raw/0', batch);
      expect(crashed.transitions).toHaveLength(2);
      // The worker died before publishing: the same records come again.
      const again = await store.foldBatch('clicks.raw/0', batch);
      expect(again.transitions.map((t) => t.id)).toEqual(crashed.transitions.map((t) => t.id));
      await again.published();
      const third = await store.foldBatch('clicks.raw/0', batch);
      expect(third.transitions).toEqual([]);
      expect((await store.getPerson('ivan'))?.dialogues[0]?.counts).toEqual({ intro: 1, detail: 1, purchase: 0 });
    });

    it('does not publish again an outbox its committed batch left behind (crash after the commit), and removes it', async () => {
      const first = [rec('jana', 0, T0), rec('jana', 1, T0 + 1)];
      const committed = await store.foldBatch('clicks.raw/0', first, first[0]!.offset);
      expect(committed.transitions).toHaveLength(2);
      // Published and committed with the offsets, then the worker died before clearing the outbox.
      // The next batch starts past every record of the first one, so that outbox is history; this
      // batch makes no transition of its own (a repeat visit), and its write removes the outbox.
      const next = [rec('jana', 0, T0 + 2)];
      const after = await store.foldBatch('clicks.raw/0', next, next[0]!.offset);
      expect(after.transitions).toEqual([]);
      // Its redelivery (a crash before its commit) must not take the old outbox for its own.
      const redelivered = await store.foldBatch('clicks.raw/0', next, next[0]!.offset);
      expect(redelivered.transitions).toEqual([]);
      // A batch with transitions of its own publishes those only.
      const third = [rec('jana', 2, T0 + 3, { value: 5 })];
      expect((await store.foldBatch('clicks.raw/0', third, third[0]!.offset)).transitions.filter(isTransition).map((t) => t.to)).toEqual(['purchase']);
      // The redelivery of a batch that was never committed still publishes its outbox.
      const uncommitted = [rec('kira', 0, T0), rec('kira', 2, T0 + 1, { value: 5 })];
      const crashed = await store.foldBatch('clicks.raw/0', uncommitted, uncommitted[0]!.offset);
      const again = await store.foldBatch('clicks.raw/0', uncommitted, uncommitted[0]!.offset);
      expect(again.transitions.map((t) => t.id)).toEqual(crashed.transitions.map((t) => t.id));
      expect(again.transitions).toHaveLength(2);
    });

    it('merges an anonymous history into the known person on identify, once', async () => {
      await foldAll('clicks.raw/1', [
        rec('anon-1', 0, T0),
        rec('anon-1', 1, T0 + 1, { topic: 'product:sku-2' }),
        rec('anon-1', 2, T0 + 2, { topic: 'product:sku-3', value: 20 }),
      ]);
      await foldAll('clicks.raw/2', [rec('user-1', 1, T0 + 3), rec('user-1', 0, T0 + 4, { topic: 'product:sku-2' })]);
      const identify: BatchRecord = { offset: offset++, person: 'user-1', event: null, link: 'anon-1', at: T0 + 10, channel: 'web' };
      const t = await foldAll('clicks.raw/2', [identify]);
      expect(t.map((x) => [x.topic, x.from, x.to])).toEqual([
        ['product:sku-2', 'intro', 'detail'],
        ['product:sku-3', null, 'purchase'],
      ]);
      const user = await store.getPerson('user-1');
      const byTopic = Object.fromEntries(user!.dialogues.map((d) => [d.topic, d]));
      expect(byTopic['product:sku-1']).toMatchObject({
        stage: 'detail',
        counts: { intro: 1, detail: 1, purchase: 0 },
        firstReached: { intro: new Date(T0).toISOString() },
      });
      expect(byTopic['product:sku-2']).toMatchObject({ stage: 'detail', counts: { intro: 1, detail: 1, purchase: 0 } });
      expect(byTopic['product:sku-3']).toMatchObject({ stage: 'purchase' });
      expect(user!.linkedIds).toEqual(['anon-1']);
      expect(user!.rfm).toMatchObject({ purchases: 1, totalValue: 20 });
      // The visitor id now answers with the known person, and the indexes hold only the known person.
      expect((await store.getPerson('anon-1'))?.person).toBe('user-1');
      expect(await atStage('product:sku-1', 'detail', 10)).toEqual(['user-1']);
      expect(await atStage('product:sku-3', 'purchase', 10)).toEqual(['user-1']);

      // A second identify, and a redelivery of the first, merge nothing again.
      expect(await foldAll('clicks.raw/2', [{ ...identify, offset: offset++ }])).toEqual([]);
      expect(await foldAll('clicks.raw/2', [identify])).toEqual([]);
      expect((await store.getPerson('user-1'))?.dialogues.find((d) => d.topic === 'product:sku-1')?.counts).toEqual({ intro: 1, detail: 1, purchase: 0 });

      // Later events of the visitor id (another device tab, another partition) land on the known person.
      await foldAll('clicks.raw/1', [rec('anon-1', 2, T0 + 20)]);
      expect((await store.getPerson('user-1'))?.dialogues.find((d) => d.topic === 'product:sku-1')?.stage).toBe('purchase');
      // Events that carry only the user id (e-mail, call centre) land there too.
      await foldAll('clicks.raw/2', [rec('user-1', 1, T0 + 30, { channel: 'email', topic: 'product:sku-4' })]);
      expect((await store.getPerson('user-1'))?.dialogues.find((d) => d.topic === 'product:sku-4')?.channels).toEqual(['email']);
    });

    it('merges a visitor whose events sit in the same batch as the identify, before and after it', async () => {
      const batch: BatchRecord[] = [
        rec('anon-3', 0, T0),
        rec('anon-3', 1, T0 + 1),
        { offset: offset++, person: 'user-3', event: null, link: 'anon-3', at: T0 + 2, channel: 'web' },
        rec('user-3', 0, T0 + 3, { topic: 'product:sku-5' }),
        rec('anon-3', 2, T0 + 4),
      ];
      await foldAll('clicks.raw/0', batch);
      const user = await store.getPerson('user-3');
      expect(Object.fromEntries(user!.dialogues.map((d) => [d.topic, d.counts]))).toEqual({
        'product:sku-1': { intro: 1, detail: 1, purchase: 1 },
        'product:sku-5': { intro: 1, detail: 0, purchase: 0 },
      });
      expect((await store.getPerson('anon-3'))?.person).toBe('user-3');
      // Redelivered as a whole, it changes nothing.
      expect(await foldAll('clicks.raw/0', batch)).toEqual([]);
      expect((await store.getPerson('user-3'))?.dialogues.find((d) => d.topic === 'product:sku-1')?.counts).toEqual({ intro: 1, detail: 1, purchase: 1 });
    });

    it('answers the query API from the indexes: topics, people per stage (in a time window), members by recency, dialogues', async () => {
      expect(await store.topics()).toEqual([]);
      await foldAll('clicks.raw/0', [
        rec('q-a', 0, T0),
        rec('q-b', 0, T0 + 10),
        rec('q-b', 1, T0 + H + 20),
        rec('q-c', 2, T0 + 2 * H + 30),
        rec('q-d', 1, T0 + 3 * H + 40),
        rec('q-d', 0, T0 + 5, { topic: 'product:sku-2' }),
      ]);
      expect(await store.topics()).toEqual(['product:sku-1', 'product:sku-2']);
      expect(await store.hasTopic('product:sku-2')).toBe(true);
      expect(await store.hasTopic('product:nope')).toBe(false);
      expect(await store.stageCounts(['product:sku-1', 'product:sku-2', 'product:nope'])).toEqual([
        [1, 2, 1],
        [1, 0, 0],
        [0, 0, 0],
      ]);
      // The window bounds the last activity, inclusive at both ends, widened to the whole UTC hours it touches.
      expect(await store.stageCounts(['product:sku-1'], { since: T0 + H + 20 })).toEqual([[0, 2, 1]]);
      expect(await store.stageCounts(['product:sku-1'], { since: T0 + H + 21 })).toEqual([[0, 2, 1]]);
      expect(await store.stageCounts(['product:sku-1'], { since: T0 + 2 * H })).toEqual([[0, 1, 1]]);
      expect(await store.stageCounts(['product:sku-1'], { since: T0 + H + 20, until: T0 + 2 * H + 30 })).toEqual([[0, 1, 1]]);
      expect(await store.stageCounts(['product:sku-1'], { since: T0 + H, until: T0 + 3 * H - 1 })).toEqual([[0, 1, 1]]);
      expect(await store.stageCounts(['product:sku-1'], { until: T0 })).toEqual([[1, 0, 0]]);
      expect(await store.stageCounts(['product:sku-1'], { until: T0 + H - 1 })).toEqual([[1, 0, 0]]);

      expect(await store.stageMembers('product:sku-1', 'detail', 0, 10)).toEqual([
        { person: 'q-d', last: T0 + 3 * H + 40 },
        { person: 'q-b', last: T0 + H + 20 },
      ]);
      expect(await store.stageMembers('product:sku-1', 'detail', T0 + H + 21, 10)).toEqual([{ person: 'q-d', last: T0 + 3 * H + 40 }]);
      expect(await store.stageMembers('product:sku-1', 'detail', 0, 1)).toEqual([{ person: 'q-d', last: T0 + 3 * H + 40 }]);
      expect(await store.stageMembers('product:nope', 'detail', 0, 10)).toEqual([]);

      const [b, none, d] = await store.dialogues('product:sku-1', ['q-b', 'nobody', 'q-d']);
      expect(b).toMatchObject({ stage: 1, start: T0 + 10, last: T0 + H + 20, first: [T0 + 10, T0 + H + 20, 0], counts: [1, 1, 0], channels: ['web'] });
      expect(none).toBeNull();
      expect(d).toMatchObject({ stage: 1, last: T0 + 3 * H + 40 });
      expect(await store.dialogues('product:sku-1', [])).toEqual([]);

      // Erasing a person takes them out of every count.
      await store.erase('q-d', T0 + 100);
      expect(await store.stageCounts(['product:sku-1', 'product:sku-2'])).toEqual([
        [1, 1, 1],
        [0, 0, 0],
      ]);
    });

    describe('windowed stage counts (hour counters kept with the index)', () => {
      const TOPIC = 'product:sku-1';
      /** Deterministic: people with several events each, over 3 days, at any millisecond, some far apart (a new dialogue). */
      const people = Array.from({ length: 40 }, (_, i) => `w-${i}`);
      let x = 11;
      const rnd = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
      const events = () =>
        people.flatMap((p) => Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => rec(p, Math.floor(rnd() * 3), T0 + Math.floor(rnd() * 3 * 24 * H))));
      /** The definition: people per stage whose last activity's UTC hour lies in [since's hour, until's hour]. */
      const bruteForce = async (w: { since?: number; until?: number }) => {
        const out = [0, 0, 0];
        for (const d of await store.dialogues(TOPIC, people)) {
          if (!d) continue;
          const h = Math.floor(d.last / H);
          if (w.since !== undefined && h < Math.floor(w.since / H)) continue;
          if (w.until !== undefined && h > Math.floor(w.until / H)) continue;
          out[d.stage]!++;
        }
        return out;
      };
      const windows = () => [
        {},
        { since: T0 + 30 * H + 1234 },
        { until: T0 + 40 * H + 59 * 60_000 },
        { since: T0 + 10 * H + 1, until: T0 + 50 * H - 1 },
        { since: T0 + 24 * H, until: T0 + 24 * H },
        { since: T0 + 1000 * H },
        { since: -8.64e15, until: 8.64e15 },
      ];
      const expectDefinition = async () => {
        for (const w of windows()) expect({ w, counts: (await store.stageCounts([TOPIC], w))[0] }).toEqual({ w, counts: await bruteForce(w) });
      };

      it('equal a brute-force count from the definition, through moves, new dialogues and erasures', async () => {
        await foldAll('clicks.raw/0', events());
        await expectDefinition();
        // Everyone acts again (later hours, higher stages, some a new dialogue after the quiet period).
        await foldAll('clicks.raw/0', events());
        await foldAll('clicks.raw/1', [rec('w-1', 0, T0 + 40 * 24 * H), rec('w-2', 2, T0 + 3 * 24 * H + 5)]);
        await expectDefinition();
        for (const p of ['w-3', 'w-4', 'w-5']) await store.erase(p, T0 + 100 * 24 * H);
        await expectDefinition();
        const [all] = await store.stageCounts([TOPIC]);
        expect(all).toEqual(await bruteForce({}));
        expect(all!.reduce((a, b) => a + b, 0)).toBe(people.length - 3);
      });

      it('drop people who leave the topic (the dialogue cap) from their hour', async () => {
        ({ store, inspect } = await make({ ...FOLD_OPTIONS, maxDialogues: 1 }));
        await foldAll('clicks.raw/0', [rec('w-0', 1, T0 + 5 * H), rec('w-1', 2, T0 + 6 * H)]);
        expect(await store.stageCounts([TOPIC], { since: T0 })).toEqual([[0, 1, 1]]);
        await foldAll('clicks.raw/0', [rec('w-0', 0, T0 + 7 * H, { topic: 'product:sku-2' })]);
        expect(await store.stageCounts([TOPIC], { since: T0 })).toEqual([[0, 0, 1]]);
        expect(await store.stageCounts([TOPIC], { since: -8.64e15, until: 8.64e15 })).toEqual([[0, 0, 1]]);
      });

      it('answer nobody for a window in the future, one that ends before it starts, or an unknown topic', async () => {
        await foldAll('clicks.raw/0', [rec('w-0', 1, T0 + 5 * H)]);
        expect(await store.stageCounts([TOPIC], { since: T0 + 6 * H })).toEqual([[0, 0, 0]]);
        expect(await store.stageCounts([TOPIC], { since: T0 + 6 * H, until: T0 })).toEqual([[0, 0, 0]]);
        expect(await store.stageCounts(['product:nope'], { since: 0 })).toEqual([[0, 0, 0]]);
        expect(await store.stageCounts([TOPIC], { since: T0 + 5 * H + 3_599_999 })).toEqual([[0, 1, 0]]);
      });
    });

    /** A topic's needs list [from, to) scoring at least `min`, read page by page through one listing. */
    const pageAll = async (
      topic: string,
      from: number,
      to: number,
      limit: number,
      between: (page: number, seen: readonly string[]) => Promise<void> = async () => {},
    ) => {
      const first = await store.needsPage({ topic, from, to, min: -(2 ** 52), limit, ttlSeconds: 60 });
      const seen = first!.entries.map((e) => e.person);
      let after = first!.entries.at(-1);
      let pages = 1;
      let full = first!.entries.length === limit;
      while (first!.listing && after && full) {
        await between(pages, seen);
        const next = await store.needsPage({ topic, from, to, min: -(2 ** 52), limit, ttlSeconds: 60, listing: { id: first!.listing, after } });
        expect(next).not.toBeNull();
        seen.push(...next!.entries.map((e) => e.person));
        after = next!.entries.at(-1);
        full = next!.entries.length === limit;
        pages++;
      }
      return { seen, total: first!.total, listing: first!.listing, pages };
    };

    /** A deterministic population of `n` at detail, with varied recency and intensity. */
    const population = (n: number, prefix: string) => {
      const records: BatchRecord[] = [];
      let x = 12345;
      const rnd = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
      for (let i = 0; i < n; i++) {
        const person = `${prefix}-${String(i).padStart(4, '0')}`;
        const last = T0 + Math.floor(rnd() * 20 * 86_400_000);
        records.push(rec(person, 0, last - 60_000));
        for (let k = Math.floor(rnd() * 6); k >= 0; k--) records.push(rec(person, 1, last - k));
      }
      return records;
    };

    it('keeps each stage index in the needs ranking: the order of the definition at every moment, read a page at a time', async () => {
      await foldAll('clicks.raw/0', population(300, 'rk'));
      const persons = Array.from({ length: 300 }, (_, i) => `rk-${String(i).padStart(4, '0')}`);
      const dialogues = await store.dialogues('product:sku-1', persons);
      const candidates = persons.map((person, i) => ({ person, last: dialogues[i]!.last, counts: dialogues[i]!.counts }));
      const { seen, total, listing, pages } = await pageAll('product:sku-1', 1, 2, 7);
      expect(total).toBe(300);
      expect(listing).toMatch(RANKING_ID);
      expect(pages).toBe(Math.ceil(300 / 7));
      // The index was written once; the definition is computed at moments days and a year apart.
      for (const now of [T0, T0 + 10 * 86_400_000, T0 + 25 * 86_400_000, T0 + 365 * 86_400_000]) {
        expect(seen).toEqual(rankNeeds(candidates, now).map((c) => c.person));
      }
      // The floor: only those whose score is at least that of one look at `t` (K >= t).
      const t = T0 + 10 * 86_400_000;
      const floor = await store.needsPage({ topic: 'product:sku-1', from: 1, to: 2, min: floorOf(t), limit: 1000, ttlSeconds: 60 });
      const above = new Set(candidates.filter((c) => c.last + deltaOf(weightedInteractions(c.counts)) >= t).map((c) => c.person));
      expect(above.size).toBeGreaterThan(0);
      expect(above.size).toBeLessThan(300);
      expect(floor!.total).toBe(above.size);
      expect(floor!.listing).toBeNull();
      expect(floor!.entries.map((e) => e.person)).toEqual(seen.filter((p) => above.has(p)));
      // An unknown listing, or one of another stage range, answers null (an expired cursor).
      const after = { person: 'rk-0000', score: 0 };
      expect(
        await store.needsPage({ topic: 'product:sku-1', from: 1, to: 2, min: 0, limit: 5, ttlSeconds: 60, listing: { id: 'A'.repeat(22), after } }),
      ).toBeNull();
      expect(await store.needsPage({ topic: 'product:sku-1', from: 0, to: 2, min: 0, limit: 5, ttlSeconds: 60, listing: { id: listing!, after } })).toBeNull();
    });

    it('keeps at most MAX_OPEN_LISTINGS listings open per topic: past that the oldest closes', async () => {
      await foldAll('clicks.raw/0', [rec('cap-a', 1, T0), rec('cap-b', 1, T0 + 1)]);
      const open = async () => (await store.needsPage({ topic: 'product:sku-1', from: 1, to: 2, min: 0, limit: 1, ttlSeconds: 60 }))!;
      const pages: NeedsPageResult[] = [];
      for (let i = 0; i <= MAX_OPEN_LISTINGS; i++) pages.push(await open());
      const next = (p: NeedsPageResult) =>
        store.needsPage({ topic: 'product:sku-1', from: 1, to: 2, min: 0, limit: 1, ttlSeconds: 60, listing: { id: p.listing!, after: p.entries[0]! } });
      expect(await next(pages[0]!)).toBeNull();
      expect((await next(pages[1]!))!.entries.map((e) => e.person)).toEqual(['cap-a']);
      expect((await next(pages.at(-1)!))!.entries.map((e) => e.person)).toEqual(['cap-a']);
    });

    it('pages a listing exactly once while people keep moving: everyone at the place they had when it opened', async () => {
      await foldAll('clicks.raw/0', population(120, 'mv'));
      await foldAll('clicks.raw/0', [rec('mv-intro', 0, T0 + 5)]);
      const before = (await pageAll('product:sku-1', 1, 2, 1000)).seen;
      const erased = new Set<string>();
      let t = T0 + 21 * 86_400_000;
      const { seen, total } = await pageAll('product:sku-1', 1, 2, 9, async (page, shown) => {
        // Between pages: the last of the list becomes the first, someone unseen moves up, someone buys,
        // a newcomer arrives at detail, one comes up from intro, one not shown yet is erased.
        const unseen = before.filter((p) => !shown.includes(p) && !erased.has(p)).slice(3);
        if (unseen.length < 5) return;
        const moves = [rec(before.at(-1 - page)!, 1, ++t), rec(unseen[0]!, 1, ++t), rec(unseen[1]!, 1, ++t), rec(unseen[2]!, 2, ++t)];
        moves.push(rec(`mv-new-${page}`, 1, ++t));
        if (page === 1) moves.push(rec('mv-intro', 1, ++t));
        await foldAll('clicks.raw/0', moves);
        const gone = unseen[4]!;
        erased.add(gone);
        await store.erase(gone, t + 1);
      });
      expect(total).toBe(120);
      expect(new Set(seen).size).toBe(seen.length);
      expect(seen).toEqual(before.filter((p) => !erased.has(p)));
      // Nothing of the erased stays in an index or a listing.
      const left = await inspect();
      for (const p of erased) expect(left.indexed).not.toContain(p);
    });

    it('erases a person and the visitor ids linked to them from every key and index', async () => {
      await foldAll('clicks.raw/1', [rec('anon-2', 1, T0)]);
      await foldAll('clicks.raw/2', [
        rec('user-2', 0, T0 + 1, { topic: 'product:sku-9' }),
        { offset: offset++, person: 'user-2', event: null, link: 'anon-2', at: T0 + 2 },
      ]);
      await foldAll('clicks.raw/0', [rec('bystander', 1, T0)]);
      expect(await store.erase('anon-2', T0 + 10)).toEqual({ person: 'user-2', ids: ['user-2', 'anon-2'], held: true });
      const left = await inspect();
      expect(left.people).toEqual(['bystander']);
      expect(left.indexed).toEqual(['bystander']);
      // What stays of them: a tombstone per id, which says when they were erased.
      expect(left.erased).toEqual(['anon-2', 'user-2']);
      expect(await store.getPerson('user-2')).toBeNull();
      expect(await store.getPerson('anon-2')).toBeNull();
      expect(await store.erase('user-2', T0 + 20)).toEqual({ person: 'user-2', ids: ['user-2'], held: false });
    });

    describe('erase for good', () => {
      const erased = (ts: number) => rec('gone', 1, ts);

      it('skips an erased id’s records received until the erasure, for good; later ones fold as a new history', async () => {
        await foldAll('clicks.raw/0', [rec('gone', 0, T0), rec('gone', 1, T0 + 1)]);
        await store.erase('gone', T0 + 10);
        // Late records of before the erasure: another partition, a redelivery, a replay.
        const late = await store.foldBatch('clicks.raw/1', [erased(T0 + 5), rec('gone', 2, T0 + 10, { value: 9 })]);
        expect(late).toMatchObject({ transitions: [], refused: [], erased: 2 });
        expect(await store.getPerson('gone')).toBeNull();
        expect((await inspect()).people).toEqual([]);
        // The person comes back.
        const back = await foldAll('clicks.raw/1', [rec('gone', 0, T0 + 11, { topic: 'product:sku-2' })]);
        expect(back.map((t) => [t.topic, t.from, t.to])).toEqual([['product:sku-2', null, 'intro']]);
        const person = await store.getPerson('gone');
        expect(person?.dialogues).toMatchObject([{ topic: 'product:sku-2', counts: { intro: 1, detail: 0, purchase: 0 } }]);
        expect(await atStage('product:sku-1', 'detail', 10)).toEqual([]);
        expect(await atStage('product:sku-2', 'intro', 10)).toEqual(['gone']);
      });

      it('records the erasure of an id it holds nothing of yet: its records still on their way are skipped', async () => {
        expect(await store.erase('ghost', T0 + 10)).toEqual({ person: 'ghost', ids: ['ghost'], held: false });
        expect((await store.foldBatch('clicks.raw/0', [rec('ghost', 1, T0 + 3)])).erased).toBe(1);
        expect(await inspect()).toEqual({ people: [], indexed: [], erased: ['ghost'] });
      });

      it('links no erased visitor back: its records and an identify received before its erasure are skipped', async () => {
        await foldAll('clicks.raw/1', [rec('v-gone', 1, T0)]);
        await store.erase('v-gone', T0 + 10);
        const outcome = await store.foldBatch('clicks.raw/2', [
          rec('v-gone', 2, T0 + 4),
          { offset: offset++, person: 'u-stays', event: null, link: 'v-gone', at: T0 + 5, channel: 'web' },
          rec('u-stays', 0, T0 + 6, { topic: 'product:sku-2' }),
        ]);
        await outcome.published();
        expect(outcome.erased).toBe(2);
        const user = await store.getPerson('u-stays');
        expect(user?.linkedIds).toEqual([]);
        expect(user?.dialogues.map((d) => d.topic)).toEqual(['product:sku-2']);
        expect(await store.getPerson('v-gone')).toBeNull();
        expect((await inspect()).people).toEqual(['u-stays']);
      });

      it('a fold that read the person before the erase cannot write them back', async () => {
        const held = gate();
        const reading = gate();
        const inner = backendOf(store);
        const gated: FieldBackend = {
          ...inner,
          read: async (persons, partition) => {
            const r = await inner.read(persons, partition);
            reading.open();
            return r;
          },
          write: async (plans, partition) => {
            await held.wait;
            return inner.write(plans, partition);
          },
        };
        // A person the store never held (version 0): only the tombstone can stop this write.
        const folding = foldBatchWith(gated, 'clicks.raw/0', [rec('racer', 1, T0)], store.options);
        await reading.wait;
        await store.erase('racer', T0 + 10);
        held.open();
        const outcome = await folding;
        expect(outcome).toMatchObject({ transitions: [], erased: 1 });
        expect(await inspect()).toEqual({ people: [], indexed: [], erased: ['racer'] });
      });

      it('an index update in flight when the erase runs cannot put the id back into any index', async () => {
        await foldAll('clicks.raw/0', [rec('slow', 0, T0)]);
        const held = gate();
        const indexing = gate();
        const inner = backendOf(store);
        const gated: FieldBackend = {
          ...inner,
          index: async (entries) => {
            indexing.open();
            await held.wait;
            return inner.index(entries);
          },
        };
        // The write lands before the erase; its index update (detail) only after it.
        const folding = foldBatchWith(gated, 'clicks.raw/0', [rec('slow', 1, T0 + 1, { topic: 'product:sku-3' })], store.options);
        await indexing.wait;
        await store.erase('slow', T0 + 10);
        held.open();
        await folding;
        expect(await atStage('product:sku-1', 'intro', 10)).toEqual([]);
        expect(await atStage('product:sku-3', 'detail', 10)).toEqual([]);
        expect(await inspect()).toEqual({ people: [], indexed: [], erased: ['slow'] });
        // The person comes back: their index entries are theirs again.
        await foldAll('clicks.raw/0', [rec('slow', 1, T0 + 11, { topic: 'product:sku-3' })]);
        expect(await atStage('product:sku-3', 'detail', 10)).toEqual(['slow']);
      });

      it('a merge in flight leaves no pointer behind for a visitor erased meanwhile', async () => {
        await foldAll('clicks.raw/1', [rec('v-merge', 1, T0)]);
        const held = gate();
        const sealing = gate();
        const inner = backendOf(store);
        const gated: FieldBackend = {
          ...inner,
          seal: async (pairs) => {
            sealing.open();
            await held.wait;
            return inner.seal(pairs);
          },
        };
        const identify: BatchRecord = { offset: offset++, person: 'u-merge', event: null, link: 'v-merge', at: T0 + 1, channel: 'web' };
        const folding = foldBatchWith(gated, 'clicks.raw/2', [identify], store.options);
        await sealing.wait;
        // The visitor now points at the user; erasing it erases the user it joined.
        expect((await store.erase('v-merge', T0 + 10)).ids.sort()).toEqual(['u-merge', 'v-merge']);
        held.open();
        await folding;
        expect(await inspect()).toEqual({ people: [], indexed: [], erased: ['u-merge', 'v-merge'] });
      });

      it('erases the ids linked to a person, not someone else a shared visitor id was merged into', async () => {
        await foldAll('clicks.raw/1', [rec('v-shared', 1, T0)]);
        await foldAll('clicks.raw/2', [{ offset: offset++, person: 'p-first', event: null, link: 'v-shared', at: T0 + 1, channel: 'web' }]);
        // Someone else identifies on the same device: only the link is recorded.
        await foldAll('clicks.raw/2', [
          rec('q-second', 0, T0 + 2, { topic: 'product:sku-2' }),
          { offset: offset++, person: 'q-second', event: null, link: 'v-shared', at: T0 + 3, channel: 'web' },
        ]);
        expect((await store.getPerson('q-second'))?.linkedIds).toEqual(['v-shared']);
        expect((await store.erase('q-second', T0 + 10)).ids.sort()).toEqual(['q-second', 'v-shared']);
        expect((await store.getPerson('p-first'))?.dialogues.map((d) => d.topic)).toEqual(['product:sku-1']);
        expect((await inspect()).people).toEqual(['p-first']);
      });

      it('takes the erased id out of every open needs listing, moved or not, and a late index update cannot bring it back', async () => {
        await foldAll('clicks.raw/0', [rec('rk-a', 1, T0), rec('rk-b', 1, T0 + 1), rec('rk-c', 1, T0 + 2), rec('rk-d', 1, T0 + 3)]);
        const first = await store.needsPage({ topic: 'product:sku-1', from: 1, to: 2, min: 0, limit: 1, ttlSeconds: 60 });
        expect(first!.entries.map((e) => e.person)).toEqual(['rk-d']);
        // rk-a moves (the listing keeps its old place), then rk-a and rk-b are erased.
        await foldAll('clicks.raw/0', [rec('rk-a', 1, T0 + 10)]);
        // A fold that read rk-b before the erase and updates the index after it.
        const backend = backendOf(store);
        const held = gate();
        const wrote = gate();
        const index = backend.index.bind(backend);
        backend.index = async (entries) => {
          wrote.open();
          await held.wait;
          return index(entries);
        };
        const late = foldAll('clicks.raw/0', [rec('rk-b', 1, T0 + 11)]);
        await wrote.wait;
        await store.erase('rk-a', T0 + 20);
        await store.erase('rk-b', T0 + 20);
        held.open();
        await late;
        backend.index = index;
        const rest = await store.needsPage({
          topic: 'product:sku-1',
          from: 1,
          to: 2,
          min: 0,
          limit: 10,
          ttlSeconds: 60,
          listing: { id: first!.listing!, after: first!.entries[0]! },
        });
        expect(rest!.entries.map((e) => e.person)).toEqual(['rk-c']);
        const left = await inspect();
        expect(left.indexed).not.toContain('rk-a');
        expect(left.indexed).not.toContain('rk-b');
      });

      it('applies an erasure on record unless it knows one as late or later: a history begun after it stays', async () => {
        await foldAll('clicks.raw/0', [rec('again', 1, T0)]);
        await store.erase('again', T0 + 10);
        await foldAll('clicks.raw/0', [rec('again', 0, T0 + 20, { topic: 'product:sku-2' })]);
        // The follower of history.erasures meets the same erasure: nothing changes.
        await store.applyErasure(['again'], T0 + 10);
        expect((await store.getPerson('again'))?.dialogues.map((d) => d.topic)).toEqual(['product:sku-2']);
        // A later erasure on record (made by another process) is applied, without following links.
        await store.applyErasure(['again', 'unknown'], T0 + 30);
        expect(await store.getPerson('again')).toBeNull();
        expect(await inspect()).toEqual({ people: [], indexed: [], erased: ['again', 'unknown'] });
        // An empty store (a replay's fresh namespace) takes the tombstones before any record.
        expect((await store.foldBatch('clicks.raw/0', [rec('unknown', 0, T0 + 29)])).erased).toBe(1);
      });
    });
    describe('caps', () => {
      const topicRec = (person: string, n: number, ts: number, stage = 0): BatchRecord => rec(person, stage, ts, { topic: `t:${n}` });
      const topicsOf = async (person: string) => ((await store.getPerson(person))?.dialogues ?? []).map((d) => d.topic).sort();

      it('keeps at most maxDialogues per person: the quietest goes, from the hash and the indexes, never the one being written', async () => {
        ({ store, inspect } = await make({ ...FOLD_OPTIONS, maxDialogues: 3 }));
        await foldAll('clicks.raw/0', [topicRec('pat', 1, T0 + 10), topicRec('pat', 2, T0 + 20), topicRec('pat', 3, T0 + 30)]);
        // t:1 is touched again, so t:2 is now the quietest; t:4 is new and makes room by dropping it.
        await foldAll('clicks.raw/0', [topicRec('pat', 1, T0 + 40)]);
        const t = await foldAll('clicks.raw/0', [topicRec('pat', 4, T0 + 50)]);
        expect(t.map((x) => x.topic)).toEqual(['t:4']);
        expect(await topicsOf('pat')).toEqual(['t:1', 't:3', 't:4']);
        expect(await atStage('t:2', 'intro', 10)).toEqual([]);
        expect(await atStage('t:4', 'intro', 10)).toEqual(['pat']);
        // A late event of a new topic, older than everything the person has, still gets its dialogue.
        await foldAll('clicks.raw/0', [topicRec('pat', 5, T0)]);
        expect(await topicsOf('pat')).toEqual(['t:1', 't:4', 't:5']);
        // One batch of many new topics keeps the most recent ones and leaves no index entry behind.
        await foldAll(
          'clicks.raw/0',
          Array.from({ length: 20 }, (_, i) => topicRec('pat', 100 + i, T0 + 100 + i)),
        );
        expect(await topicsOf('pat')).toEqual(['t:117', 't:118', 't:119']);
        for (const n of [1, 4, 5, 100, 116]) expect(await atStage(`t:${n}`, 'intro', 10)).toEqual([]);
      });

      it('keeps a merge within maxDialogues, keeping the most recent of both histories', async () => {
        ({ store, inspect } = await make({ ...FOLD_OPTIONS, maxDialogues: 3 }));
        await foldAll('clicks.raw/1', [topicRec('v-cap', 1, T0 + 1), topicRec('v-cap', 2, T0 + 5), topicRec('v-cap', 3, T0 + 6)]);
        await foldAll('clicks.raw/2', [topicRec('u-cap', 4, T0 + 2), topicRec('u-cap', 5, T0 + 3), topicRec('u-cap', 6, T0 + 7)]);
        const t = await foldAll('clicks.raw/2', [{ offset: offset++, person: 'u-cap', event: null, link: 'v-cap', at: T0 + 10, channel: 'web' }]);
        expect(await topicsOf('u-cap')).toEqual(['t:2', 't:3', 't:6']);
        // Only the dialogues the person keeps are announced.
        expect(t.map((x) => x.topic).sort()).toEqual(['t:2', 't:3']);
        const indexed = (await inspect()).indexed;
        expect(indexed).not.toContain('v-cap');
        for (const n of [1, 4, 5]) expect(await atStage(`t:${n}`, 'intro', 10)).toEqual([]);
      });

      it('refuses links past maxLinks, reporting each refused record; earlier links stay', async () => {
        ({ store, inspect } = await make({ ...FOLD_OPTIONS, maxLinks: 2 }));
        const links = ['a', 'b', 'c', 'd'].map(
          (v): BatchRecord => ({ offset: offset++, person: 'storm', event: null, link: `visitor-${v}`, at: T0, channel: 'web' }),
        );
        const outcome = await store.foldBatch('clicks.raw/0', links);
        await outcome.published();
        expect(outcome.refused).toEqual([
          { offset: links[2]!.offset, reason: 'link_cap', detail: expect.stringContaining('2 linked ids') },
          { offset: links[3]!.offset, reason: 'link_cap', detail: expect.stringContaining('2 linked ids') },
        ]);
        expect((await store.getPerson('storm'))?.linkedIds.sort()).toEqual(['visitor-a', 'visitor-b']);
        // A redelivery refuses nothing again (the offsets were handled), and links nothing more.
        expect((await store.foldBatch('clicks.raw/0', links)).refused).toEqual([]);
      });

      it('merges a visitor with 5,000 dialogues in one identify: every write stays within Lua limits', async () => {
        ({ store, inspect } = await make({ ...FOLD_OPTIONS, maxDialogues: 10_000 }));
        const many = Array.from({ length: 5000 }, (_, i) => topicRec('wide-visitor', i, T0 + i, i % 3));
        await foldAll('clicks.raw/4', many);
        await foldAll('clicks.raw/5', [topicRec('wide-user', 0, T0 + 1, 2)]);
        const t = await foldAll('clicks.raw/5', [
          { offset: offset++, person: 'wide-user', event: null, link: 'wide-visitor', at: T0 + 10_000, channel: 'web' },
        ]);
        expect(t).toHaveLength(4999);
        const user = await store.getPerson('wide-user');
        expect(user?.dialogues).toHaveLength(5000);
        expect(await atStage('t:4998', 'intro', 10)).toEqual(['wide-user']);
        expect(await atStage('t:4999', 'detail', 10)).toEqual(['wide-user']);
        expect((await store.erase('wide-user', T0 + 20_000)).held).toBe(true);
        expect(await inspect()).toEqual({ people: [], indexed: [], erased: ['wide-user', 'wide-visitor'] });
      });

      it('admits sites and topics under their caps; known ones always pass', async () => {
        const caps = { sites: 2, topicsPerSite: 3 };
        expect(await store.admit('s1', ['a', 'b'], caps)).toEqual({ site: true, topics: [true, true] });
        expect(await store.admit('s1', ['c', 'd', 'a'], caps)).toEqual({ site: true, topics: [true, false, true] });
        expect(await store.admit('s1', ['d', 'b'], caps)).toEqual({ site: true, topics: [false, true] });
        expect(await store.admit('s2', ['a'], caps)).toEqual({ site: true, topics: [true] });
        expect(await store.admit('s3', ['a'], caps)).toEqual({ site: false, topics: [false] });
        expect(await store.admit('s1', [], caps)).toEqual({ site: true, topics: [] });
      });
    });
  });
}
