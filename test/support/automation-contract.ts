import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { AudienceDefinition } from '../../contract/audience.js';
import { StallRule } from '../../contract/stall-rule.js';
import type { AudienceEvent, HistoryEvent, StallEvent } from '../../contract/transition.js';
import { compileAudience } from '../../history/audiences/membership.js';
import { createAutomation } from '../../history/automation/evaluate.js';
import type { BatchRecord } from '../../history/fold/person-batch.js';
import { compileStallRules } from '../../history/stalls/rules.js';
import type { HistoryStore } from '../../history/store/store.js';
import { prng } from './prng.js';
import { FOLD_OPTIONS, type StoreUnderTest } from './store-contract.js';

/**
 * Stalls and audiences on a store, with an injected clock: what the fold fires, what the sets hold,
 * what the sweeper's queue asks for. The sweeper is played by hand here (dueTicks, then the ticks
 * folded as the worker folds them, then clearDue), so every step is at a chosen moment.
 */
export interface AutomationStoreUnderTest extends StoreUnderTest {
  /** Sets the clock the store's fold uses. */
  setNow(ms: number): void;
}

const LADDER = FOLD_OPTIONS.ladder;
const S = 1000;
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 10, 2, 9);

export function automationContract(name: string, make: () => Promise<AutomationStoreUnderTest>, cleanup: () => Promise<void> = async () => {}) {
  describe(`stalls and audiences on a store: ${name}`, () => {
    let store: HistoryStore;
    let inspect: StoreUnderTest['inspect'];
    let setNow: (ms: number) => void;
    let now = T0;
    let offset = 0;
    let id = 0;
    /** Everything published, in order, as the worker would. */
    let published: HistoryEvent[] = [];

    const at = (ms: number) => {
      now = ms;
      setNow(ms);
    };
    const fold = async (records: BatchRecord[]) => {
      const out = await store.foldBatch('0', records);
      await out.published();
      published.push(...out.transitions);
      return out.transitions;
    };
    const view = (person: string, stage: number, topic = 'product:a', ts = now): BatchRecord => ({
      offset: offset++,
      person,
      rt: ts,
      event: { id: `e${++id}`, ts, channel: 'web', topic, stage },
    });
    const identify = (person: string, visitor: string, ts = now): BatchRecord => ({
      offset: offset++,
      person,
      event: null,
      link: visitor,
      at: ts,
      channel: 'web',
      rt: ts,
    });
    const tick = (person: string, ts = now): BatchRecord => ({ offset: offset++, person, event: null, tick: true, rt: ts });
    /** One round of the sweeper at `now`: ticks for everyone due, folded, then taken off the queue. */
    const sweep = async () => {
      const due = await store.dueTicks(now, 1000);
      if (due.length > 0) await fold(due.map((e) => tick(e.person)));
      await store.clearDue(due);
      return due.map((e) => e.person);
    };
    const stalls = () => published.filter((e): e is StallEvent => 'kind' in e && e.kind === 'stalled');
    const audienceEvents = () => published.filter((e): e is AudienceEvent => 'kind' in e && (e.kind === 'entered' || e.kind === 'exited'));
    const stalledNow = async (topic: string, rule: string) => (await store.automationPage({ topic, rule }, undefined, 1000)).map((e) => e.person).sort();
    const members = async (audience: string) => (await store.automationPage({ audience }, undefined, 1000)).map((e) => e.person).sort();

    const configure = (stallRules: unknown[], audiences: Record<string, unknown> = {}) => {
      const rules = compileStallRules(
        stallRules.map((r) => StallRule.parse(r)),
        LADDER,
        FOLD_OPTIONS.quietMs,
      ).rules;
      const ctx = { ladder: LADDER, quietMs: FOLD_OPTIONS.quietMs, stallRules: new Set(rules.map((r) => r.name)) };
      store.setAutomation(
        createAutomation({
          ladder: LADDER,
          quietMs: FOLD_OPTIONS.quietMs,
          stallRules: rules,
          audiences: Object.entries(audiences).map(([n, d]) => ({ name: n, compiled: compileAudience(AudienceDefinition.parse(d), ctx) })),
        }),
      );
    };

    beforeEach(async () => {
      ({ store, inspect, setNow } = await make());
      offset = 0;
      published = [];
      at(T0);
    });
    afterAll(cleanup);

    it('fires a stall once per dialogue and quiet spell, whatever the sweeps and the ticks; activity re-arms it', async () => {
      configure([{ name: 'quiet-at-detail', stage: 'detail', after: '30s' }]);
      await fold([view('p1', 0), view('p1', 1), view('p2', 1)]);
      // Before its time: nothing due, and a tick (forged, or early) fires nothing.
      at(T0 + 29 * S);
      expect(await sweep()).toEqual([]);
      await fold([tick('p1')]);
      expect(stalls()).toEqual([]);
      // A tick that claims a later time than the fold's clock cannot fire early either.
      await fold([tick('p1', T0 + 60 * S)]);
      expect(stalls()).toEqual([]);

      at(T0 + 30 * S);
      expect((await sweep()).sort()).toEqual(['p1', 'p2']);
      expect(stalls().map((s) => [s.person, s.topic, s.stage, s.rule, s.since, s.at])).toEqual(
        expect.arrayContaining([
          ['p1', 'product:a', 'detail', 'quiet-at-detail', T0, T0 + 30 * S],
          ['p2', 'product:a', 'detail', 'quiet-at-detail', T0, T0 + 30 * S],
        ]),
      );
      expect(stalls()).toHaveLength(2);
      expect(await stalledNow('product:a', 'quiet-at-detail')).toEqual(['p1', 'p2']);

      // Swept again, ticked again (a sweeper that died before clearing, a second one): nothing more.
      at(T0 + 40 * S);
      expect(await sweep()).toEqual([]);
      await fold([tick('p1'), tick('p2'), tick('p1')]);
      expect(stalls()).toHaveLength(2);

      // p1 comes back: out of the stalled set, armed again; quiet again for the wait: fires again, another id.
      at(T0 + 50 * S);
      await fold([view('p1', 1)]);
      expect(await stalledNow('product:a', 'quiet-at-detail')).toEqual(['p2']);
      at(T0 + 80 * S);
      expect(await sweep()).toEqual(['p1']);
      const p1 = stalls().filter((s) => s.person === 'p1');
      expect(p1.map((s) => s.since)).toEqual([T0, T0 + 50 * S]);
      expect(new Set(stalls().map((s) => s.id)).size).toBe(stalls().length);
      expect(await stalledNow('product:a', 'quiet-at-detail')).toEqual(['p1', 'p2']);
    });

    it('fires only at the rule’s stage and topics, and not for a dialogue that moved past it', async () => {
      configure([
        { name: 'quiet-at-detail', stage: 'detail', after: '30s', topics: 'product:*' },
        { name: 'checkout-left', stage: 'purchase', after: '10s' },
      ]);
      await fold([view('p1', 1, 'product:a'), view('p1', 1, 'plan:pro'), view('p2', 1, 'product:b')]);
      at(T0 + 5 * S);
      await fold([view('p2', 2, 'product:b')]);
      at(T0 + 60 * S);
      await sweep();
      expect(
        stalls()
          .map((s) => `${s.person} ${s.topic} ${s.rule}`)
          .sort(),
      ).toEqual(['p1 product:a quiet-at-detail', 'p2 product:b checkout-left']);
    });

    it('an erase takes the person out of the queue and the sets; a tick for the erased id writes nothing', async () => {
      configure([{ name: 'quiet-at-detail', stage: 'detail', after: '30s' }], { browsing: { atLeast: 'intro' } });
      await fold([view('gone', 1), view('kept', 1)]);
      at(T0 + 30 * S);
      await sweep();
      expect(await stalledNow('product:a', 'quiet-at-detail')).toEqual(['gone', 'kept']);
      await fold([view('gone', 1, 'product:b'), view('kept', 1, 'product:b')]);
      expect(await members('browsing')).toEqual(['gone', 'kept']);

      await store.erase('gone', now);
      expect(await stalledNow('product:a', 'quiet-at-detail')).toEqual(['kept']);
      expect(await members('browsing')).toEqual(['kept']);
      at(T0 + 120 * S);
      expect(await sweep()).toEqual(['kept']);
      expect(stalls().filter((s) => s.person === 'gone' && s.topic === 'product:b')).toEqual([]);
      await fold([tick('gone')]);
      const left = await inspect();
      expect(left.people).not.toContain('gone');
      expect(left.indexed).not.toContain('gone');
    });

    it('keeps audience members equal to the definition after every batch, with entered/exited as the differences', async () => {
      configure([{ name: 'quiet-at-detail', stage: 'detail', after: '1m' }], {
        'hot-leads': { all: [{ topic: 'product:*', atLeast: 'detail', notReached: 'purchase', activeWithin: '5m' }, { not: { stalled: 'quiet-at-detail' } }] },
        buyers: { topic: '*', exactly: 'purchase' },
      });
      // The model: who should be in each audience now, computed from the dialogues alone.
      const state = new Map<string, Map<string, { stage: number; last: number; stalledSince?: number }>>();
      const model = (audience: string) =>
        [...state]
          .filter(([, ds]) =>
            audience === 'buyers'
              ? [...ds.values()].some((d) => d.stage === 2 && now - d.last <= FOLD_OPTIONS.quietMs)
              : [...ds].some(([t, d]) => t.startsWith('product:') && d.stage === 1 && now - d.last <= 5 * 60 * S) &&
                ![...ds.values()].some((d) => d.stage === 1 && now - d.last >= 60 * S),
          )
          .map(([p]) => p)
          .sort();
      const apply = (r: BatchRecord) => {
        if (!r.event) return;
        const ds = state.get(r.person) ?? new Map();
        state.set(r.person, ds);
        const d = ds.get(r.event.topic);
        ds.set(r.event.topic, { stage: Math.max(d?.stage ?? 0, r.event.stage), last: Math.max(d?.last ?? 0, r.event.ts) });
      };
      const before = new Map<string, string[]>([
        ['hot-leads', []],
        ['buyers', []],
      ]);
      const check = async () => {
        for (const a of ['hot-leads', 'buyers']) {
          const want = model(a);
          expect(await members(a), `${a} at +${(now - T0) / S}s`).toEqual(want);
          // The events since the last check are exactly the difference.
          const events = audienceEvents().filter((e) => e.audience === a);
          const replayed = new Set<string>();
          for (const e of events) e.kind === 'entered' ? replayed.add(e.person) : replayed.delete(e.person);
          expect([...replayed].sort(), `${a} events at +${(now - T0) / S}s`).toEqual(want);
          before.set(a, want);
        }
      };
      const batch = async (records: BatchRecord[]) => {
        records.forEach(apply);
        await fold(records);
        await sweep();
        await check();
      };

      await batch([view('a', 0), view('b', 1), view('c', 1, 'plan:x')]);
      at(T0 + 20 * S);
      await batch([view('a', 1), view('b', 2)]);
      // b bought: still a hot lead? No: b's product:a reached purchase. a is at detail.
      at(T0 + 70 * S);
      // a has been quiet at detail for a minute... not yet: last activity was at +20 s.
      await batch([]);
      at(T0 + 81 * S);
      // Now a's detail dialogue stalls: a leaves hot-leads by the `not stalled` condition.
      await batch([]);
      expect(stalls().map((s) => s.person)).toEqual(expect.arrayContaining(['a']));
      at(T0 + 90 * S);
      await batch([view('d', 1), view('a', 1, 'product:b')]);
      at(T0 + 400 * S);
      // Five minutes on: d's detail is no longer within activeWithin, and it stalled long ago.
      await batch([]);
      // The visitor v is a hot lead, then is merged into the known person k.
      at(T0 + 410 * S);
      await batch([view('v', 1, 'product:z')]);
      expect(await members('hot-leads')).toContain('v');
      at(T0 + 415 * S);
      await fold([identify('k', 'v')]);
      state.set('k', state.get('v')!);
      state.delete('v');
      await sweep();
      await check();
      expect(audienceEvents().some((e) => e.person === 'v' && e.kind === 'exited')).toBe(true);
      // Erase: out of every audience, without an event (there is no one to tell).
      await store.erase('k', now);
      state.delete('k');
      expect(await members('hot-leads')).toEqual(model('hot-leads'));
    });

    it('keeps three audiences equal to a model of a random stream after every batch: folds, merges, quiet spells, expiry, erases', async () => {
      configure([{ name: 'quiet', stage: 'detail', after: '1m' }], {
        hot: { all: [{ topic: 'product:*', atLeast: 'detail', notReached: 'purchase', activeWithin: '5m' }, { not: { stalled: 'quiet' } }] },
        deciders: { any: [{ exactly: 'purchase' }, { topic: 'plan:*', atLeast: 'detail' }] },
        idle: { not: { activeWithin: '2m' } },
      });
      const random = prng(1729);
      const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!;
      const topics = ['product:a', 'product:b', 'product:c', 'plan:x', 'plan:y'];
      type D = { stage: number; last: number };
      const model = new Map<string, Map<string, D>>();
      const alias = new Map<string, string>();
      const gone = new Set<string>();
      const within = (d: D, ms: number) => now - d.last <= ms;
      const stalled = (d: D) => d.stage === 1 && now - d.last >= 60 * S;
      const rules: Record<string, (ds: Map<string, D>) => boolean> = {
        hot: (ds) => [...ds].some(([t, d]) => t.startsWith('product:') && d.stage === 1 && within(d, 5 * 60 * S)) && ![...ds.values()].some(stalled),
        deciders: (ds) => [...ds].some(([t, d]) => d.stage === 2 || (t.startsWith('plan:') && d.stage >= 1)),
        idle: (ds) => ![...ds.values()].some((d) => within(d, 2 * 60 * S)),
      };
      const expected = (a: string) =>
        [...model]
          .filter(([, ds]) => rules[a]!(ds))
          .map(([p]) => p)
          .sort();
      const people = Array.from({ length: 24 }, (_, i) => `p${i}`);
      const visitors = Array.from({ length: 8 }, (_, i) => `v${i}`);
      for (let round = 0; round < 40; round++) {
        at(now + Math.floor(5 + random() * 40) * S);
        const records: BatchRecord[] = [];
        const n = Math.floor(random() * 6);
        for (let i = 0; i < n; i++) {
          const sender = pick([...people, ...visitors].filter((x) => !gone.has(x)));
          const person = alias.get(sender) ?? sender;
          if (gone.has(person)) continue;
          const topic = pick(topics);
          const stage = pick([0, 0, 1, 1, 2]);
          records.push(view(sender, stage, topic));
          const ds = model.get(person) ?? new Map<string, D>();
          model.set(person, ds);
          const d = ds.get(topic);
          ds.set(topic, { stage: Math.max(d?.stage ?? 0, stage), last: now });
        }
        // Now and then a visitor signs in as a known person: its history joins theirs.
        const v = visitors.find((x) => !alias.has(x) && !gone.has(x) && random() < 0.1);
        const k = pick(people.filter((x) => !gone.has(x)));
        if (v) {
          records.push(identify(k, v));
          alias.set(v, k);
          // The known person is held from the identify on, history or not (its links are).
          const into = model.get(k) ?? new Map<string, D>();
          model.set(k, into);
          const from = model.get(v);
          if (from) {
            for (const [t, d] of from) {
              const e = into.get(t);
              into.set(t, { stage: Math.max(e?.stage ?? 0, d.stage), last: Math.max(e?.last ?? 0, d.last) });
            }
            model.delete(v);
          }
        }
        if (records.length > 0) await fold(records);
        // Now and then someone is erased, with every visitor merged into them.
        if (random() < 0.08) {
          const x = pick([...model.keys()]);
          await store.erase(x, now);
          for (const id of [x, ...[...alias].filter(([, p]) => p === x).map(([vis]) => vis)]) {
            gone.add(id);
            model.delete(id);
          }
        }
        await sweep();
        for (const a of Object.keys(rules)) {
          const want = expected(a);
          expect(await members(a), `${a} after round ${round}`).toEqual(want);
          const replayed = new Set<string>();
          for (const e of audienceEvents().filter((x) => x.audience === a)) e.kind === 'entered' ? replayed.add(e.person) : replayed.delete(e.person);
          // Erased people leave without an event: the events say nothing of them.
          expect([...replayed].filter((p) => !gone.has(p)).sort(), `${a} events after round ${round}`).toEqual(want);
        }
      }
      // The stream did what it is for: merges, erases, stalls, people entering and leaving.
      expect({ merged: alias.size > 0, erased: gone.size > 0, stalled: stalls().length > 0 }).toEqual({ merged: true, erased: true, stalled: true });
      expect(audienceEvents().length).toBeGreaterThan(20);
    });
  });
}

export const AUTOMATION_T0 = T0;
export const AUTOMATION_DAY = DAY;
