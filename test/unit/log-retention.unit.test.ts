import { describe, expect, it } from 'vitest';
import { PartitionedLog } from '../../lib/log-memory.js';
import { SegmentBook } from '../../lib/log-retention.js';
import { eventually } from '../support/app.js';

/**
 * The embedded log's bound: past it the oldest segments go, offsets go on, a group that had not
 * read them starts at the oldest kept, and the worker's group never loses a record it has not folded.
 */
const messages = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ key: `k${(from + i) % 7}`, value: `v${from + i}` }));
const total = (log: PartitionedLog, topic: string) => log.read(topic).reduce((n, p) => n + p.length, 0);

describe('the bound of the in-memory log', () => {
  it('drops the oldest segments past its bound, while offsets go on', async () => {
    const log = new PartitionedLog(2, { retention: { maxEvents: 100, maxBytes: Infinity, maxAgeMs: Infinity } });
    for (let i = 0; i < 1000; i += 10) log.append('t', messages(i, 10));
    expect(total(log, 't')).toBeLessThanOrEqual(100);
    expect(total(log, 't')).toBeGreaterThanOrEqual(100 - 100 / 16 - 10);
    const ends = await log.offsets('t', 'end');
    expect([...ends.values()].reduce((n, o) => n + Number(o), 0)).toBe(1000);
    // The newest records are the ones kept, and a new group starts at the oldest of them.
    const kept = log.read('t').flat();
    expect(kept.map((m) => m.value)).toContain('v999');
    expect(kept.map((m) => m.value)).not.toContain('v0');
    const beginning = await log.offsets('t', 'beginning');
    const seen: string[] = [];
    const c = log.consumer({ topic: 't', group: 'late' });
    expect([...(await c.lag!()).values()].reduce((a, b) => a + b, 0)).toBe(total(log, 't'));
    await c.run(async (b) => void seen.push(...b.messages.map((m) => m.value)));
    await eventually(async () => (seen.length === kept.length ? true : undefined), 5000, 'the kept records');
    await c.stop();
    expect(Number(beginning.get(0))).toBeGreaterThan(0);
  });

  it('bounds bytes as well as records', () => {
    const log = new PartitionedLog(1, { retention: { maxEvents: Infinity, maxBytes: 64 * 1024, maxAgeMs: Infinity } });
    for (let i = 0; i < 1000; i++) log.append('t', [{ key: 'k', value: 'x'.repeat(1000) }]);
    const bytes = log.read('t')[0]!.reduce((n, m) => n + (m.key ?? '').length + m.value.length, 0);
    expect(bytes).toBeLessThanOrEqual(64 * 1024);
    expect(bytes).toBeGreaterThan(32 * 1024);
  });

  it("never drops what the worker's group has not folded: past the bound the log grows instead", async () => {
    const log = new PartitionedLog(1, { retention: { maxEvents: 50, maxBytes: Infinity, maxAgeMs: Infinity }, protect: [{ group: 'worker', topic: 'raw' }] });
    for (let i = 0; i < 200; i += 10) {
      log.append('raw', messages(i, 10));
      log.append('other', messages(i, 10));
    }
    // Nobody folded `raw` yet: all of it stays, and what shares its segments (one log, in append order).
    expect(total(log, 'raw')).toBe(200);
    expect(total(log, 'other')).toBe(200);
    const folded: string[] = [];
    const worker = log.consumer({ topic: 'raw', group: 'worker' });
    await worker.run(async (b) => void folded.push(...b.messages.map((m) => m.value)));
    await eventually(async () => (folded.length === 200 ? true : undefined), 5000, 'the fold');
    await worker.stop();
    expect(folded[0]).toBe('v0');
    // Folded: the next append lets the bound take them.
    log.append('raw', messages(200, 1));
    expect(total(log, 'raw') + total(log, 'other')).toBeLessThanOrEqual(50);
  });
});

describe('SegmentBook', () => {
  it('drops a segment once its newest record is older than the age bound, and rolls a quiet active segment', () => {
    const book = new SegmentBook({ maxEvents: Infinity, maxBytes: Infinity, maxAgeMs: 16_000 });
    book.add('t', 0, 0, 10, 1000);
    expect(book.shouldRoll(1500)).toBe(false);
    // A sixteenth of the age bound later the active segment rolls, so it can age out in its turn.
    expect(book.shouldRoll(2000)).toBe(true);
    book.startSegment();
    book.add('t', 0, 1, 10, 2000);
    expect(book.takeDroppable(() => undefined, 16_999).dropped).toEqual([]);
    const { dropped } = book.takeDroppable(() => undefined, 17_001);
    expect(dropped.map((s) => s.last.get('0\u0000t'))).toEqual([0]);
    expect(book.events).toBe(1);
  });

  it('stops at the first segment the floor holds back', () => {
    const book = new SegmentBook({ maxEvents: 1, maxBytes: Infinity, maxAgeMs: Infinity });
    for (let o = 0; o < 4; o++) {
      book.add('t', 0, o, 1, o);
      book.startSegment();
    }
    const r = book.takeDroppable((_t, _p) => 2, 10);
    expect(r.dropped.map((s) => s.last.get('0\u0000t'))).toEqual([0, 1]);
    expect(r.blocked).toBe(true);
  });
});
