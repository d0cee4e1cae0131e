import { describe, expect, it } from 'vitest';
import { emptyState, fingerprint, fold, type FoldEvent, type FoldOptions } from '../../history/fold/fold.js';

const opts: FoldOptions = { ladder: ['intro', 'detail', 'purchase'], quietMs: 30 * 86_400_000, seenSize: 32 };
const T0 = Date.UTC(2026, 0, 1);
let n = 0;
const ev = (stage: number, ts: number, extra: Partial<FoldEvent> = {}): FoldEvent => ({
  id: `e${++n}`,
  ts,
  channel: 'web',
  topic: 'product:sku-1',
  stage,
  ...extra,
});

describe('fold', () => {
  it('advances through the ladder and emits one transition per advance', () => {
    const r = fold('p', emptyState(), [ev(0, T0), ev(0, T0 + 1), ev(1, T0 + 2), ev(2, T0 + 3)], opts);
    const d = r.state.dialogues.get('product:sku-1')!;
    expect(d.stage).toBe(2);
    expect(d.counts).toEqual([2, 1, 1]);
    expect(d.first).toEqual([T0, T0 + 2, T0 + 3]);
    expect(r.transitions.map((t) => [t.from, t.to])).toEqual([
      [null, 'intro'],
      ['intro', 'detail'],
      ['detail', 'purchase'],
    ]);
    expect(r.applied).toBe(4);
  });

  it('never regresses: a later intro event is counted but the stage stays', () => {
    const first = fold('p', emptyState(), [ev(2, T0)], opts);
    const second = fold('p', first.state, [ev(0, T0 + 10)], opts);
    const d = second.state.dialogues.get('product:sku-1')!;
    expect(d.stage).toBe(2);
    expect(d.counts).toEqual([1, 0, 1]);
    expect(d.last).toBe(T0 + 10);
    expect(second.transitions).toEqual([]);
  });

  it('counts an event id once, also across folds', () => {
    const e = ev(1, T0);
    const a = fold('p', emptyState(), [e, e], opts);
    const b = fold('p', a.state, [e], opts);
    expect(b.state.dialogues.get('product:sku-1')!.counts).toEqual([0, 1, 0]);
    expect(a.applied + b.applied).toBe(1);
    expect(b.changed.size).toBe(0);
  });

  it('starts a new dialogue after the quiet period', () => {
    const a = fold('p', emptyState(), [ev(0, T0), ev(1, T0 + 1)], opts);
    const later = T0 + 1 + opts.quietMs + 1;
    const b = fold('p', a.state, [ev(0, later)], opts);
    const d = b.state.dialogues.get('product:sku-1')!;
    expect(d.stage).toBe(0);
    expect(d.start).toBe(later);
    expect(d.counts).toEqual([1, 0, 0]);
    expect(b.transitions).toMatchObject([{ from: null, to: 'intro', at: later }]);
    // A new dialogue's transitions carry a different id than the old one's.
    expect(b.transitions[0]!.id).not.toBe(a.transitions[0]!.id);
  });

  it('keeps the earliest first-reached time when events arrive out of order', () => {
    const a = fold('p', emptyState(), [ev(0, T0 + 100), ev(1, T0 + 200)], opts);
    const b = fold('p', a.state, [ev(1, T0 + 150)], opts);
    expect(b.state.dialogues.get('product:sku-1')!.first[1]).toBe(T0 + 150);
    expect(b.state.dialogues.get('product:sku-1')!.last).toBe(T0 + 200);
  });

  it('unites channels and sums purchase values into the RFM inputs', () => {
    const r = fold('p', emptyState(), [ev(0, T0), ev(2, T0 + 5, { channel: 'email', value: 30 }), ev(2, T0 + 9, { value: 12.5 })], opts);
    expect(r.state.dialogues.get('product:sku-1')!.channels).toEqual(['web', 'email']);
    expect(r.state.rfm).toEqual({ first: T0 + 5, last: T0 + 9, count: 2, total: 42.5 });
  });

  it('keeps only the newest fingerprints and does not mutate its input', () => {
    const prev = emptyState();
    const events = Array.from({ length: 40 }, (_, i) => ev(0, T0 + i));
    const r = fold('p', prev, events, opts);
    expect(r.state.seen).toHaveLength(32);
    expect(r.state.seen.at(-1)).toBe(fingerprint(events.at(-1)!.id));
    expect(prev.dialogues.size).toBe(0);
    expect(prev.seen).toEqual([]);
  });

  it('treats a topic named __proto__ as an ordinary topic', () => {
    const r = fold('p', emptyState(), [ev(1, T0, { topic: '__proto__' })], opts);
    expect([...r.state.dialogues.keys()]).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>).stage).toBeUndefined();
  });

  it('ignores a stage outside the ladder', () => {
    const r = fold('p', emptyState(), [ev(7, T0)], opts);
    expect(r.state.dialogues.size).toBe(0);
    expect(r.applied).toBe(0);
  });
});
