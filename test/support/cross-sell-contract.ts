import { afterAll, describe, expect, it } from 'vitest';
import { Related, Suggestions } from '../../contract/query.js';
import { isTransition, type Transition } from '../../contract/transition.js';
import { DEFAULT_FOLLOWER_CAPACITY, MAX_PAIRS_PER_PURCHASE } from '../../history/crm/cross-sell.js';
import type { BatchRecord } from '../../history/fold/person-batch.js';
import { createQueryApp } from '../../history/query/app.js';
import type { HistoryStore } from '../../history/store/store.js';
import { createLogger } from '../../lib/logger.js';
import { prng } from './prng.js';
import { FOLD_OPTIONS } from './store-contract.js';

const TOP = FOLD_OPTIONS.ladder.length - 1;
const X = 'product:x';
const Y = 'product:y';
const Z = 'product:z';
const NOISE = Array.from({ length: 6 }, (_, i) => `product:n${i}`);
const BROWSED = 'product:browsed';

/**
 * Cross-selling on every store: the counters the fold's step keeps equal an independent count of
 * the purchases it published, a buyer of X is told what buyers of X went on to buy, nothing bought
 * already and nothing never bought is suggested, and the counters stay within their bounds.
 * `make()`: a fresh, empty store.
 */
export function crossSellContract(name: string, make: () => Promise<HistoryStore>, cleanup: () => Promise<void> = async () => {}) {
  describe(`cross-selling: ${name}`, () => {
    afterAll(cleanup);
    const T0 = Date.UTC(2026, 10, 1);
    let offset = 0;
    let seq = 0;
    const rec = (person: string, topic: string, stage: number, ts: number): BatchRecord => ({
      offset: offset++,
      person,
      event: { id: `xs-${++seq}`, ts, channel: 'web', topic, stage },
    });
    const fold = async (store: HistoryStore, records: BatchRecord[], partition = 'clicks.raw/0') => {
      const o = await store.foldBatch(partition, records);
      await o.published();
      return o.transitions.filter(isTransition);
    };
    const appOf = (store: HistoryStore) => createQueryApp({ store, logger: createLogger('test', 'silent'), dashboard: false });

    /** X→Y counts and purchases per topic, from the published transitions alone. */
    const independentCount = (published: readonly Transition[]) => {
      const pairs = new Map<string, number>();
      const buyers = new Map<string, number>();
      const byPerson = new Map<string, Transition[]>();
      for (const t of published) {
        if (t.to !== FOLD_OPTIONS.ladder[TOP]) continue;
        buyers.set(t.topic, (buyers.get(t.topic) ?? 0) + 1);
        byPerson.set(t.person, [...(byPerson.get(t.person) ?? []), t]);
      }
      for (const list of byPerson.values()) {
        list.sort((a, b) => a.at - b.at);
        list.forEach((y, i) => {
          for (const x of new Set(list.slice(0, i).map((t) => t.topic)))
            if (x !== y.topic) pairs.set(`${x}>${y.topic}`, (pairs.get(`${x}>${y.topic}`) ?? 0) + 1);
        });
      }
      return { pair: (x: string, y: string) => pairs.get(`${x}>${y}`) ?? 0, buyers: (t: string) => buyers.get(t) ?? 0 };
    };

    /** 400 people over three partitions: buyers of X mostly go on to Y, some to Z; the rest buy noise (and Y now and then). */
    const stream = () => {
      const u = prng(42);
      const events: { person: string; topic: string; stage: number; ts: number }[] = [];
      for (let i = 0; i < 400; i++) {
        const person = `c${i}`;
        let ts = T0 + Math.floor(u() * 86_400_000);
        const buy = (topic: string) => {
          // Some look first, some buy straight away (a dialogue that starts at the top stage).
          if (u() < 0.6) events.push({ person, topic, stage: Math.floor(u() * TOP), ts: (ts += 60_000 + Math.floor(u() * 3_600_000)) });
          events.push({ person, topic, stage: TOP, ts: (ts += 60_000 + Math.floor(u() * 3_600_000)) });
        };
        if (u() < 0.4) {
          buy(X);
          const r = u();
          if (r < 0.7) buy(Y);
          else if (r < 0.85) buy(Z);
        } else {
          buy(NOISE[Math.floor(u() * NOISE.length)]!);
          if (u() < 0.2) buy(Y);
        }
        if (u() < 0.3) buy(NOISE[Math.floor(u() * NOISE.length)]!);
        if (u() < 0.3) events.push({ person, topic: BROWSED, stage: Math.floor(u() * TOP), ts: (ts += 60_000) });
      }
      events.sort((a, b) => a.ts - b.ts);
      // Keyed by person as ingest does, in batches of 40 per partition: some people buy X and Y in one batch, some in two.
      const batches: { partition: string; records: BatchRecord[] }[] = [];
      for (let p = 0; p < 3; p++) {
        const mine = events.filter((e) => Number(e.person.slice(1)) % 3 === p).map((e) => rec(e.person, e.topic, e.stage, e.ts));
        for (let i = 0; i < mine.length; i += 40) batches.push({ partition: `clicks.raw/${p}`, records: mine.slice(i, i + 40) });
      }
      return batches;
    };

    it('suggests Y first to a buyer of X when buyers of X mostly go on to Y, with support equal to an independent count', async () => {
      const store = await make();
      const app = appOf(store);
      const published: Transition[] = [];
      const batches = stream();
      for (const b of batches) published.push(...(await fold(store, b.records, b.partition)));
      // A redelivered batch and a repeated one count nothing twice.
      expect(await fold(store, batches[3]!.records, batches[3]!.partition)).toEqual([]);
      const truth = independentCount(published);
      expect(truth.pair(X, Y)).toBeGreaterThan(2 * truth.pair(X, Z));
      expect(truth.pair(X, Z)).toBeGreaterThan(5);
      // Y is bought more overall than after X: popularity alone would not put it first.
      expect(truth.buyers(Y)).toBeGreaterThan(truth.pair(X, Y));

      const related = Related.parse(await (await app.request(`/v1/topics/${X}/related`)).json());
      expect(related.buyers).toBe(truth.buyers(X));
      expect(related.related.slice(0, 2)).toEqual([
        { topic: Y, count: truth.pair(X, Y), error: 0 },
        { topic: Z, count: truth.pair(X, Z), error: 0 },
      ]);
      for (const r of related.related) expect(r.count).toBe(truth.pair(X, r.topic));
      for (const [x, counts] of (await store.crossSell([X, Y, ...NOISE])).map((c, i) => [[X, Y, ...NOISE][i]!, c] as const)) {
        expect(counts.buyers).toBe(truth.buyers(x));
        for (const [y, c] of counts.followers) expect(c).toEqual({ count: truth.pair(x, y), error: 0 });
      }

      // A new buyer of X alone.
      await fold(store, [rec('new-buyer', X, TOP, T0 + 10 * 86_400_000)]);
      const res = await app.request('/v1/people/new-buyer/suggestions');
      expect(res.status).toBe(200);
      const s = Suggestions.parse(await res.json());
      expect(s.person).toBe('new-buyer');
      expect(s.suggestions[0]!.topic).toBe(Y);
      expect(s.suggestions[0]!.support).toEqual([{ from: X, count: truth.pair(X, Y), buyers: truth.buyers(X) + 1, error: 0 }]);
      expect(s.suggestions[1]!.topic).toBe(Z);
      expect(s.suggestions.map((x) => x.topic)).not.toContain(X);
      expect(s.suggestions.map((x) => x.topic)).not.toContain(BROWSED);

      // Someone who bought X and Y is not told Y (nor X) again.
      const both = published.find(
        (t) => t.topic === Y && t.to === 'purchase' && published.some((u) => u.person === t.person && u.topic === X && u.to === 'purchase'),
      )!;
      const theirs = Suggestions.parse(await (await app.request(`/v1/people/${both.person}/suggestions?limit=50`)).json());
      expect(theirs.suggestions.length).toBeGreaterThan(0);
      expect(theirs.suggestions.map((x) => x.topic)).not.toContain(Y);
      expect(theirs.suggestions.map((x) => x.topic)).not.toContain(X);
      for (const x of theirs.suggestions) expect(x.support.every((p) => p.from === X || p.from === Y || NOISE.includes(p.from))).toBe(true);
      expect(Suggestions.parse(await (await app.request('/v1/people/new-buyer/suggestions?limit=1')).json()).suggestions).toHaveLength(1);

      // A topic never bought: no buyers, nothing after it, and never suggested.
      const browsed = Related.parse(await (await app.request(`/v1/topics/${BROWSED}/related`)).json());
      expect(browsed).toEqual({ topic: BROWSED, buyers: 0, related: [] });
      for (const t of NOISE) {
        const r = Related.parse(await (await app.request(`/v1/topics/${t}/related?limit=32`)).json());
        expect(r.related.map((x) => x.topic)).not.toContain(BROWSED);
      }
    });

    it('answers 404 for an unknown person or topic, 400 for a bad limit, nothing for someone who bought nothing', async () => {
      const store = await make();
      const app = appOf(store);
      await fold(store, [rec('looker', 'product:l', 0, T0)]);
      expect((await app.request('/v1/people/nobody/suggestions')).status).toBe(404);
      expect((await app.request('/v1/topics/product:nope/related')).status).toBe(404);
      expect((await app.request('/v1/people/looker/suggestions?limit=0')).status).toBe(400);
      expect((await app.request('/v1/people/looker/suggestions?limit=51')).status).toBe(400);
      expect((await app.request('/v1/topics/product:l/related?limit=33')).status).toBe(400);
      expect(Suggestions.parse(await (await app.request('/v1/people/looker/suggestions')).json())).toEqual({ person: 'looker', suggestions: [] });
    });

    it(`keeps at most ${DEFAULT_FOLLOWER_CAPACITY} followers per topic however many are bought after it, and the heavy one`, async () => {
      const store = await make();
      let truthHeavy = 0;
      for (let i = 0; i < 120; i++) {
        const records = [rec(`k${i}`, 'cap:x', TOP, T0 + i * 1000), rec(`k${i}`, `cap:t${i}`, TOP, T0 + i * 1000 + 1)];
        if (i % 3 === 0) {
          records.push(rec(`k${i}`, 'cap:heavy', TOP, T0 + i * 1000 + 2));
          truthHeavy++;
        }
        await fold(store, records, `clicks.raw/${i % 2}`);
      }
      const [c] = await store.crossSell(['cap:x']);
      expect(c!.buyers).toBe(120);
      expect(c!.followers.size).toBe(DEFAULT_FOLLOWER_CAPACITY);
      const heavy = c!.followers.get('cap:heavy')!;
      // Space-Saving: never less than the truth, at most `error` more.
      expect(heavy.count).toBeGreaterThanOrEqual(truthHeavy);
      expect(heavy.count - heavy.error).toBeLessThanOrEqual(truthHeavy);
      expect((await store.related('cap:x', 100)).length).toBe(DEFAULT_FOLLOWER_CAPACITY);
      expect((await store.related('cap:x', 1))[0]!.topic).toBe('cap:heavy');
      let sum = 0;
      for (const f of c!.followers.values()) sum += f.count;
      // Each increment adds one to one counter, whichever it lands on.
      expect(sum).toBe(120 + truthHeavy);
    });

    it(`pairs a purchase with the ${MAX_PAIRS_PER_PURCHASE} most recent purchases before it`, async () => {
      const store = await make();
      const earlier = Array.from({ length: MAX_PAIRS_PER_PURCHASE + 4 }, (_, i) => `many:${i}`);
      for (const [i, t] of earlier.entries()) await fold(store, [rec('many', t, TOP, T0 + i * 60_000)]);
      await fold(store, [rec('many', 'many:last', TOP, T0 + 86_400_000)]);
      const counts = await store.crossSell(earlier);
      expect(counts.map((c) => c.followers.get('many:last')?.count ?? 0)).toEqual(earlier.map((_, i) => (i >= 4 ? 1 : 0)));
      // Each earlier purchase was followed by the later ones, within the same bound.
      expect(counts[0]!.followers.size).toBe(MAX_PAIRS_PER_PURCHASE);
      expect(counts.every((c) => c.buyers === 1)).toBe(true);
    });
  });
}
