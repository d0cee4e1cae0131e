import { describe, expect, it } from 'vitest';
import { describe as describeInput } from '../../apps/topic-map.js';
import { AudienceDefinition } from '../../contract/audience.js';
import { AudienceError, compileAudience, isMember, type PersonFacts } from '../../history/audiences/membership.js';
import { decodeDialogue, encodeDialogue } from '../../history/fold/codec.js';
import { emptyState, fold, MAX_DIALOGUE_SIGNALS, mergeInto, openSignalWeight, type Dialogue, type FoldEvent } from '../../history/fold/fold.js';
import { compileTopicMap, DEFAULT_TOPIC_MAP, foldOptionsOf, TopicMapConfig } from '../../history/fold/topic-map.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { decodeRank, floorOf, rankScore, W_MAX } from '../../history/store/rank-key.js';
import { toFoldEvent } from '../../history/worker/batch.js';
import { signalsContract } from '../support/signals-contract.js';

const T0 = Date.UTC(2026, 5, 1);
const MAP = {
  rules: [
    ...DEFAULT_TOPIC_MAP.rules,
    { channel: 'call', event: 'Complaint Filed', topic: 'product:{props.product}', stage: 'detail', signal: 'complaint' },
    { channel: 'call', event: 'Inquiry', topic: 'product:{props.product}', stage: 'detail', signal: 'inquiry' },
    { channel: 'call', event: 'Inquiry Resolved', topic: 'product:{props.product}', stage: 'detail', signal: 'inquiry', close: true },
  ],
  signals: { inquiry: {}, complaint: { weight: 50 } },
};

const issues = (config: unknown) => {
  const r = TopicMapConfig.safeParse(config);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
};

describe('topic map signals', () => {
  it('accepts rules that raise and close declared signals, and classifies the events with them', () => {
    const map = compileTopicMap(TopicMapConfig.parse(MAP));
    expect([...map.signals]).toEqual([
      ['inquiry', 0],
      ['complaint', 50],
    ]);
    const call = (name: string) => ({ site: 's', channel: 'call', type: 'track', name, props: { product: 'sku-1' } });
    expect(map.classify(call('Complaint Filed'))).toEqual({ topic: 'product:sku-1', stage: 1, signal: { name: 'complaint' } });
    expect(map.classify(call('Inquiry Resolved'))).toEqual({ topic: 'product:sku-1', stage: 1, signal: { name: 'inquiry', close: true } });
    expect(map.classify({ channel: 'web', type: 'page', url: '/products/sku-1' })).toEqual({ topic: 'product:sku-1', stage: 0 });
    const e = toFoldEvent({ ...call('Inquiry'), id: 'e1', ts: T0, person: 'p', v: 1 } as never, map);
    expect(e?.signal).toEqual({ name: 'inquiry' });
    expect(foldOptionsOf(map).signals).toBe(map.signals);
    // The CLI says which signal a rule marks.
    const cli = (name: string) => describeInput(map, JSON.stringify({ channel: 'call', name, props: { product: 'sku-1' } }), { channel: 'web' });
    expect(cli('Complaint Filed')).toMatch(/-> {2}product:sku-1 @ detail, signal complaint$/);
    expect(cli('Inquiry Resolved')).toMatch(/-> {2}product:sku-1 @ detail, signal inquiry closed$/);
    // A map without signals folds with no signal options: nothing changes for it.
    expect(foldOptionsOf(compileTopicMap(DEFAULT_TOPIC_MAP)).signals).toBeUndefined();
  });

  it('refuses undeclared signals, bad names, close without a signal, weights past 12 bits, with readable reasons', () => {
    expect(issues({ ...MAP, signals: {} })).toEqual([
      'rules.3.signal: "complaint" is not declared in signals (none are)',
      'rules.4.signal: "inquiry" is not declared in signals (none are)',
      'rules.5.signal: "inquiry" is not declared in signals (none are)',
    ]);
    expect(issues({ rules: [{ event: 'X', topic: 't', stage: 'intro', signal: 'Bad Name' }] })[0]).toMatch(/^rules\.0\.signal: a signal is a lower-case word/);
    expect(issues({ rules: [{ event: 'X', topic: 't', stage: 'intro', close: true }] })).toEqual(['rules.0.close: close needs the signal it closes']);
    expect(issues({ signals: { 'Not-OK': {} } })).toEqual([
      'signals.Not-OK: "Not-OK" is not a signal name: a letter, then up to 31 lower-case letters, digits, _ and -',
    ]);
    expect(issues({ signals: { a: { weight: 5000 } } })[0]).toMatch(/^signals\.a\.weight:/);
    expect(issues({ signals: { a: { weight: 1.5 } } })[0]).toMatch(/^signals\.a\.weight:/);
    expect(issues({ signals: { a: { weight: 1, extra: 1 } } })[0]).toMatch(/^signals\.a:/);
    expect(issues({ sites: { s: { rules: [{ event: 'X', topic: 't', stage: 'intro', signal: 'nope' }] } } })).toEqual([
      'sites.s.rules.0.signal: "nope" is not declared in signals (none are)',
    ]);
  });

  it('refuses a hostile map of 1,000 signals with one reason, not a thousand', () => {
    const signals = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`s${i}`, { weight: 1 }]));
    expect(issues({ signals })).toEqual(['signals: at most 16 signals, not 1000']);
    const bad = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`${'X'.repeat(100)}${i}`, {}]));
    const got = issues({ signals: bad });
    expect(got.length).toBeLessThanOrEqual(18);
    expect(got.every((m) => m.length < 400)).toBe(true);
    expect(issues({ signals: Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`s${i}`, {}])) })).toEqual([]);
  });
});

describe('signals in the fold', () => {
  const opts = { ladder: ['intro', 'detail', 'purchase'], quietMs: 30 * 86_400_000, seenSize: 32 };
  let n = 0;
  const ev = (ts: number, signal?: FoldEvent['signal'], topic = 'product:sku-1'): FoldEvent => ({
    id: `e${++n}`,
    ts,
    channel: 'call',
    topic,
    stage: 1,
    signal,
  });

  it('counts raises, keeps open until a close, and reopens on the next raise', () => {
    const r = fold('p', emptyState(), [ev(T0, { name: 'inquiry' }), ev(T0 + 1, { name: 'inquiry' }), ev(T0 + 2, { name: 'complaint' })], opts);
    const d = r.state.dialogues.get('product:sku-1')!;
    expect(d.signals).toEqual([
      { name: 'complaint', count: 1, open: true },
      { name: 'inquiry', count: 2, open: true },
    ]);
    expect(d.counts).toEqual([0, 3, 0]);
    const closed = fold('p', r.state, [ev(T0 + 3, { name: 'inquiry', close: true })], opts).state;
    expect(closed.dialogues.get('product:sku-1')!.signals![1]).toEqual({ name: 'inquiry', count: 2, open: false });
    // The fold is pure: the earlier state is untouched.
    expect(d.signals![1]!.open).toBe(true);
    const reopened = fold('p', closed, [ev(T0 + 4, { name: 'inquiry' })], opts).state;
    expect(reopened.dialogues.get('product:sku-1')!.signals![1]).toEqual({ name: 'inquiry', count: 3, open: true });
    // A repeated event id counts once.
    const lastId = `e${n}`;
    const again = fold('p', reopened, [{ ...ev(T0 + 5, { name: 'inquiry' }), id: lastId }], opts).state;
    expect(again.dialogues.get('product:sku-1')!.signals![1]!.count).toBe(3);
  });

  it('starts a dialogue after the quiet period without the old signals, and caps names per dialogue', () => {
    const s1 = fold('p', emptyState(), [ev(T0, { name: 'inquiry' })], opts).state;
    const s2 = fold('p', s1, [ev(T0 + opts.quietMs + 1)], opts).state;
    expect(s2.dialogues.get('product:sku-1')!.signals).toBeUndefined();
    const many = Array.from({ length: 40 }, (_, i) => ev(T0 + i, { name: `s${String(i).padStart(2, '0')}` }));
    const capped = fold('p', emptyState(), many, opts).state.dialogues.get('product:sku-1')!;
    expect(capped.signals).toHaveLength(MAX_DIALOGUE_SIGNALS);
    expect(capped.counts[1]).toBe(40);
  });

  it('merges on identify: counts summed, open if open on either side', () => {
    const visitor = fold(
      'v',
      emptyState(),
      [ev(T0, { name: 'inquiry' }), ev(T0 + 1, { name: 'complaint' }), ev(T0 + 1, undefined, 'product:sku-2')],
      opts,
    ).state;
    visitor.dialogues.set('product:sku-2', { ...visitor.dialogues.get('product:sku-2')!, signals: [{ name: 'inquiry', count: 1, open: false }] });
    const known = fold('u', emptyState(), [ev(T0 + 2, { name: 'inquiry' }), ev(T0 + 3, { name: 'inquiry', close: true })], opts).state;
    const m = mergeInto('u', known, visitor, T0 + 10, 'web', opts).state;
    expect(m.dialogues.get('product:sku-1')!.signals).toEqual([
      { name: 'complaint', count: 1, open: true },
      { name: 'inquiry', count: 2, open: true },
    ]);
    expect(m.dialogues.get('product:sku-2')!.signals).toEqual([{ name: 'inquiry', count: 1, open: false }]);
    // The merge copied, not shared: the visitor's state is untouched.
    expect(visitor.dialogues.get('product:sku-1')!.signals![1]).toEqual({ name: 'inquiry', count: 1, open: true });
  });

  it('weighs only open signals the map declares', () => {
    const weights = new Map([
      ['complaint', 50],
      ['happy', -10],
    ]);
    const d = {
      signals: [
        { name: 'complaint', count: 2, open: true },
        { name: 'happy', count: 1, open: true },
        { name: 'gone', count: 1, open: true },
      ],
    };
    expect(openSignalWeight(d, weights)).toBe(40);
    expect(openSignalWeight({ signals: [{ name: 'complaint', count: 2, open: false }] }, weights)).toBe(0);
    expect(openSignalWeight(d, undefined)).toBe(0);
  });
});

describe('signals in the dialogue encoding', () => {
  const base: Dialogue = { stage: 1, start: T0, last: T0 + 5000, first: [T0, T0 + 5000, 0], counts: [1, 2, 0], channels: ['web', 'call'] };

  it('encodes a dialogue without signals exactly as before, and old encodings decode', () => {
    const plain = encodeDialogue(base);
    expect(plain.split('|')).toHaveLength(6);
    expect(decodeDialogue(plain)).toEqual(base);
    expect(decodeDialogue(encodeDialogue({ ...base, signals: [] }))).toEqual(base);
    const fired = encodeDialogue({ ...base, fired: { since: base.last, rules: ['quiet'] } });
    expect(fired.split('|')).toHaveLength(7);
    expect(decodeDialogue(fired).signals).toBeUndefined();
  });

  it('adds an 8th part after the stall marker (empty when nothing fired), short enough for the listpack', () => {
    const signals = [
      { name: 'complaint', count: 1, open: true },
      { name: 'inquiry', count: 12, open: false },
    ];
    const s = encodeDialogue({ ...base, signals });
    expect(s.endsWith('||complaint!1,inquiry:12')).toBe(true);
    expect(decodeDialogue(s)).toEqual({ ...base, signals });
    const both = { ...base, signals, fired: { since: base.last, rules: ['quiet'] } };
    expect(decodeDialogue(encodeDialogue(both))).toEqual(both);
    // A typical call-centre dialogue with one open inquiry stays under 64 bytes.
    expect(encodeDialogue({ ...base, signals: [{ name: 'inquiry', count: 1, open: true }] }).length).toBeLessThan(64);
    // Names with - and _ (allowed) round-trip.
    const odd = [{ name: 'a-b_c', count: 3, open: true }];
    expect(decodeDialogue(encodeDialogue({ ...base, signals: odd })).signals).toEqual(odd);
  });
});

describe('signals in the needs ranking score', () => {
  it('adds the weight to w, clamped to 1..4095, so the score still decodes to the exact last activity', () => {
    const counts = [0, 3, 0];
    const plain = rankScore(T0, counts);
    expect(decodeRank(plain).w).toBe(6);
    expect(decodeRank(rankScore(T0, counts, 50)).w).toBe(56);
    expect(rankScore(T0, counts, 50)).toBeGreaterThan(plain);
    expect(rankScore(T0, counts, -3)).toBeLessThan(plain);
    expect(decodeRank(rankScore(T0, counts, -100)).w).toBe(1);
    expect(decodeRank(rankScore(T0, counts, 10_000)).w).toBe(W_MAX);
    for (const b of [-100, -3, 0, 50, 10_000]) expect(decodeRank(rankScore(T0, counts, b)).last).toBe(T0);
  });
});

describe('audiences on signals', () => {
  const ctx = { ladder: ['intro', 'detail', 'purchase'], quietMs: 30 * 86_400_000, stallRules: new Set<string>(), signals: new Set(['inquiry', 'complaint']) };
  const facts = (signals?: Dialogue['signals']): PersonFacts => ({
    dialogues: new Map([['product:sku-1', { stage: 1, last: T0, signals }]]),
    rfm: null,
    stalled: () => false,
    traits: new Map(),
  });
  const audience = (def: unknown) => compileAudience(AudienceDefinition.parse(def), ctx);

  it('holds for "at detail, with an open inquiry" on one and the same dialogue', () => {
    const a = audience({ topic: 'product:*', exactly: 'detail', signal: 'inquiry', open: true });
    expect(isMember(a, facts([{ name: 'inquiry', count: 1, open: true }]), T0)).toBe(true);
    expect(isMember(a, facts([{ name: 'inquiry', count: 1, open: false }]), T0)).toBe(false);
    expect(isMember(a, facts([{ name: 'complaint', count: 1, open: true }]), T0)).toBe(false);
    expect(isMember(a, facts(undefined), T0)).toBe(false);
    const any = audience({ signal: 'inquiry' });
    expect(isMember(any, facts([{ name: 'inquiry', count: 1, open: false }]), T0)).toBe(true);
    const closed = audience({ signal: 'inquiry', open: false });
    expect(isMember(closed, facts([{ name: 'inquiry', count: 1, open: false }]), T0)).toBe(true);
    expect(isMember(audience({ not: { signal: 'complaint', open: true } }), facts([]), T0)).toBe(true);
    // A dialogue past the quiet period counts for nothing, its signals neither.
    expect(isMember(any, facts([{ name: 'inquiry', count: 1, open: true }]), T0 + ctx.quietMs + 1)).toBe(false);
  });

  it('refuses an unknown signal, a bad name and open without a signal', () => {
    expect(() => audience({ signal: 'nope' })).toThrow(AudienceError);
    expect(() => audience({ signal: 'nope' })).toThrow('signal: "nope" is not a signal of the topic map (inquiry, complaint)');
    expect(AudienceDefinition.safeParse({ signal: 'Bad Name' }).success).toBe(false);
    const r = AudienceDefinition.safeParse({ topic: 'x', open: true });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toContain('open needs the signal it is about');
  });
});

signalsContract('in-memory', async (opts) => new MemoryHistoryStore(opts));

describe('signals on the in-memory store’s index rebuilt from the histories (a snapshot loaded)', () => {
  it('weighs open signals as the fold’s index update did', async () => {
    const map = compileTopicMap(TopicMapConfig.parse(MAP));
    const store = new MemoryHistoryStore(foldOptionsOf(map));
    const ev = (person: string, i: number, signal?: FoldEvent['signal']) => ({
      offset: i,
      person,
      event: { id: `r${i}`, ts: T0, channel: 'call', topic: 'product:sku-1', stage: 1, signal },
    });
    await (await store.foldBatch('clicks.raw/0', [ev('a', 0), ev('b', 1, { name: 'complaint' }), ev('c', 2)])).published();
    const page = async () =>
      (await store.needsPage({ topic: 'product:sku-1', from: 1, to: 2, min: floorOf(T0 - 86_400_000), limit: 10, ttlSeconds: 60 }))?.entries;
    const before = await page();
    expect(before?.map((e) => e.person)).toEqual(['b', 'c', 'a']);
    store.rebuildIndex();
    expect(await page()).toEqual(before);
  });
});
