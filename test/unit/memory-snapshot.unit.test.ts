import { describe, expect, it } from 'vitest';
import type { RawEvent } from '../../contract/raw-event.js';
import type { BatchRecord } from '../../history/fold/person-batch.js';
import { compileTopicMap, DEFAULT_TOPIC_MAP, foldOptionsOf } from '../../history/fold/topic-map.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { restoreStore, storeLines } from '../../history/store/memory-snapshot.js';
import { toFoldEvent } from '../../history/worker/batch.js';
import { AudienceDefinition } from '../../contract/audience.js';
import { StallRule } from '../../contract/stall-rule.js';
import { compileAudience } from '../../history/audiences/membership.js';
import { createAutomation } from '../../history/automation/evaluate.js';
import { compileStallRules } from '../../history/stalls/rules.js';

/**
 * A snapshot of the in-memory store (what `npm start` writes to DATA_DIR) restores everything a
 * restart needs: histories, links, RFM inputs, fingerprints and offsets (a redelivered record is
 * still skipped), stage indexes, topics, the sites' admitted topics, tombstones.
 */
const MAP = compileTopicMap(DEFAULT_TOPIC_MAP);
const FOLD = foldOptionsOf(MAP);
const T = Date.parse('2026-11-01T10:00:00Z');

function record(offset: number, person: string, path: string, extra: Partial<RawEvent> = {}): BatchRecord {
  const raw = {
    v: 1,
    site: 'demo',
    person,
    visitor: person,
    channel: 'web',
    type: 'page',
    id: `${person}-${offset}`,
    ts: T + offset,
    rt: T + offset,
    url: `https://shop.example${path}`,
    ...extra,
  } as RawEvent;
  return { offset, person, event: toFoldEvent(raw, MAP) };
}

const state = (s: MemoryHistoryStore) => {
  const { people, index, topics, siteTopics, tombstones } = s.state();
  return JSON.stringify({
    people: [...people],
    index: [...index].map(([t, stages]) => [t, [...stages].map(([st, m]) => [st, [...m]])]),
    topics: [...topics],
    siteTopics: [...siteTopics].map(([site, ts]) => [site, [...ts]]),
    tombstones: [...tombstones],
  });
};

describe('the in-memory store snapshot', () => {
  it('restores a store that answers every query as the original, and skips what the original had folded', async () => {
    const store = new MemoryHistoryStore(FOLD);
    await store.admit('demo', ['product:sku-1', 'product:sku-2'], { sites: 10, topicsPerSite: 10 });
    const first = await store.foldBatch('0', [
      record(0, 'alice', '/products/sku-1'),
      record(1, 'alice', '/products/sku-1/specs'),
      record(2, 'bob', '/products/sku-2'),
      record(3, 'alice', '/checkout/sku-1', { type: 'track', name: 'Order Completed', value: 129 } as Partial<RawEvent>),
      // The visitor `anon` signs in as bob: its history joins bob's.
      record(4, 'anon', '/products/sku-1'),
    ]);
    await first.published();
    await (await store.foldBatch('1', [{ offset: 0, person: 'bob', event: null, link: 'anon', at: T + 10, channel: 'web' }])).published();
    store.state().tombstones.set('erased-id', T);

    const lines = [...storeLines(store)];
    // One line each, so that a snapshot never holds a line break inside a record.
    expect(lines.every((l) => !l.includes('\n'))).toBe(true);
    const copy = new MemoryHistoryStore(FOLD);
    expect(restoreStore(copy, lines)).toEqual({ people: store.state().people.size });
    expect(state(copy)).toBe(state(store));
    for (const p of ['alice', 'bob', 'anon']) expect(await copy.getPerson(p)).toEqual(await store.getPerson(p));
    expect((await copy.getPerson('alice'))?.rfm).not.toBeNull();
    expect(await copy.stageCounts(await store.topics())).toEqual(await store.stageCounts(await store.topics()));
    // The hour counters are not in the snapshot: they are counted again from the restored indexes.
    const windowed = await copy.stageCounts(await store.topics(), { since: 0 });
    expect(windowed.flat().some((n) => n > 0)).toBe(true);
    expect(windowed).toEqual(await store.stageCounts(await store.topics(), { since: 0 }));
    expect(await copy.stageMembers('product:sku-1', 'purchase', 0, 10)).toEqual(await store.stageMembers('product:sku-1', 'purchase', 0, 10));

    // A record the snapshot had folded, delivered again after a restart, counts once.
    const again = await copy.foldBatch('0', [record(1, 'alice', '/products/sku-1/specs')]);
    expect(again.transitions).toEqual([]);
    expect(await copy.getPerson('alice')).toEqual(await store.getPerson('alice'));
  });

  it('keeps what stalls and audiences hold: the stalled sets, the audience members, the sweeper’s queue', async () => {
    let now = T;
    const store = new MemoryHistoryStore(FOLD, () => now);
    const rules = compileStallRules([StallRule.parse({ name: 'quiet', stage: 'detail', after: '1m' })], FOLD.ladder, FOLD.quietMs).rules;
    const ctx = { ladder: FOLD.ladder, quietMs: FOLD.quietMs, stallRules: new Set(['quiet']) };
    const automation = createAutomation({
      ladder: FOLD.ladder,
      quietMs: FOLD.quietMs,
      stallRules: rules,
      audiences: [{ name: 'browsing', compiled: compileAudience(AudienceDefinition.parse({ atLeast: 'intro' }), ctx) }],
    });
    store.setAutomation(automation);
    await (await store.foldBatch('0', [record(0, 'alice', '/products/sku-1/specs'), record(1, 'bob', '/products/sku-2/specs')])).published();
    now = T + 120_000;
    const due = await store.dueTicks(now, 10);
    expect(due.map((e) => e.person).sort()).toEqual(['alice', 'bob']);
    // Alice's tick is folded (she stalls); Bob's is still queued when the snapshot is taken.
    await (await store.foldBatch('0', [{ offset: 2, person: 'alice', event: null, tick: true, rt: now }])).published();
    await store.clearDue(due.filter((e) => e.person === 'alice'));

    const copy = new MemoryHistoryStore(FOLD, () => now);
    restoreStore(copy, [...storeLines(store)]);
    copy.setAutomation(automation);
    expect(await copy.automationPage({ topic: 'product:sku-1', rule: 'quiet' }, undefined, 10)).toEqual([{ person: 'alice', at: T + 60_000 }]);
    expect((await copy.automationPage({ audience: 'browsing' }, undefined, 10)).map((e) => e.person).sort()).toEqual(['alice', 'bob']);
    expect(await copy.dueTicks(now, 10)).toEqual(await store.dueTicks(now, 10));
    expect((await copy.dueTicks(now, 10)).map((e) => e.person)).toEqual(['bob']);
  });

  it('refuses a snapshot of another format rather than folding onto a wrong state', () => {
    expect(() => restoreStore(new MemoryHistoryStore(FOLD), ['["store",3]'])).toThrow(/format 3/);
  });

  it('builds the stage indexes again from the histories of a format-1 snapshot (its index lines held other scores)', async () => {
    const store = new MemoryHistoryStore(FOLD);
    await store.foldBatch('0', [
      record(0, 'alice', '/products/sku-1'),
      record(1, 'alice', '/products/sku-1/specs'),
      record(2, 'bob', '/products/sku-2'),
      record(3, 'carol', '/products/sku-1'),
    ]);
    // Format 1's index lines: person, last activity (not the ranking score).
    const lines = [...storeLines(store)].map((l) => (l === '["store",2]' ? '["store",1]' : l.startsWith('["i",') ? l.replace(/,\d{10,}/g, ',1') : l));
    const copy = new MemoryHistoryStore(FOLD);
    restoreStore(copy, lines);
    const indexOf = (s: MemoryHistoryStore) => [...s.state().index].map(([t, stages]) => [t, [...stages].map(([st, m]) => [st, [...m].sort()])]).sort();
    expect(indexOf(copy)).toEqual(indexOf(store));
  });
});
