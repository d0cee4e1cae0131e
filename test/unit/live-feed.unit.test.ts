import { describe, expect, it } from 'vitest';
import { TOPICS } from '../../contract/raw-event.js';
import type { AudienceEvent, HistoryEvent, StallEvent, Transition } from '../../contract/transition.js';
import { LiveFeed } from '../../history/transitions/live-feed.js';
import { followTransitions, parseHistoryEvent, parseTransition } from '../../history/transitions/log.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import { captureLogs } from '../support/log-capture.js';

/**
 * The live feed carries every event of history.transitions: stage transitions, stalls, audience
 * entries and exits. Filters narrow (an event without the field a filter names never passes it),
 * repeats are dropped by id, and a record that is none of them is skipped on the way in.
 */
const T = 'product:sku-1';
const transition = (id: string, topic = T, to = 'detail'): Transition => ({ id, person: 'ann', topic, from: 'intro', to, at: 10, channel: 'web' });
const stall = (id: string, topic = T): StallEvent => ({ kind: 'stalled', id, person: 'ann', topic, stage: 'detail', rule: 'cart-quiet', since: 5, at: 20 });
const audience = (id: string, kind: 'entered' | 'exited' = 'entered', name = 'hesitant'): AudienceEvent => ({
  kind,
  id,
  audience: name,
  person: 'ann',
  at: 30,
});

const ALL: HistoryEvent[] = [
  transition('t1'),
  transition('t2', 'product:other'),
  transition('t3', T, 'purchase'),
  stall('s1'),
  stall('s2', 'product:other'),
  audience('a1'),
  audience('a2', 'exited'),
  audience('a3', 'entered', 'loyal'),
];

function received(filter: Parameters<LiveFeed['subscribe']>[0]): string[] {
  const feed = new LiveFeed();
  const got: string[] = [];
  feed.subscribe(filter, (e) => got.push(e.id));
  feed.publish(ALL);
  return got;
}

describe('live feed of history.transitions', () => {
  it('gives every kind by default, and only the asked kinds with `kinds`', () => {
    expect(received({})).toEqual(['t1', 't2', 't3', 's1', 's2', 'a1', 'a2', 'a3']);
    expect(received({ kinds: ['stage'] })).toEqual(['t1', 't2', 't3']);
    expect(received({ kinds: ['stalled', 'exited'] })).toEqual(['s1', 's2', 'a2']);
    expect(received({ kinds: [] })).toEqual([]);
  });

  it('matches transitions and stalls by topic, and leaves audience events (no topic) out of a topic filter', () => {
    expect(received({ topic: T })).toEqual(['t1', 't3', 's1']);
    expect(received({ topic: T, kinds: ['entered', 'exited'] })).toEqual([]);
  });

  it('applies `to` to stage transitions only, and `audience` to audience events only', () => {
    expect(received({ to: 'purchase' })).toEqual(['t3']);
    expect(received({ audience: 'hesitant' })).toEqual(['a1', 'a2']);
    expect(received({ audience: 'hesitant', kinds: ['exited'] })).toEqual(['a2']);
    expect(received({ audience: 'hesitant', topic: T })).toEqual([]);
  });

  it('drops an event published again (same id) whatever its kind, for every listener', () => {
    const feed = new LiveFeed();
    const got: string[] = [];
    feed.subscribe({}, (e) => got.push(e.id));
    feed.publish([stall('s1'), audience('a1')]);
    feed.publish([stall('s1'), audience('a1'), transition('t1')]);
    expect(got).toEqual(['s1', 'a1', 't1']);
  });

  it('hands a listener that asked for stage transitions alone a Transition', () => {
    const feed = new LiveFeed();
    const tos: string[] = [];
    // Typed: `kinds: ['stage']` narrows the listener's argument to Transition (`.to` compiles).
    feed.subscribe({ kinds: ['stage'] }, (t: Transition) => tos.push(t.to));
    feed.publish(ALL);
    expect(tos).toEqual(['detail', 'detail', 'purchase']);
  });

  it('keeps delivering to the other listeners when one throws', () => {
    const feed = new LiveFeed();
    const got: string[] = [];
    feed.subscribe({}, () => {
      throw new Error('listener bug');
    });
    feed.subscribe({}, (e) => got.push(e.id));
    feed.publish([stall('s1'), audience('a1')]);
    expect(got).toEqual(['s1', 'a1']);
  });
});

describe('reading history.transitions', () => {
  it('parses each kind, and skips (and logs) a record that is none of them', () => {
    const { logger, lines } = captureLogs();
    for (const e of [transition('t1'), stall('s1'), audience('a1')]) expect(parseHistoryEvent(JSON.stringify(e), logger)).toEqual(e);
    const hostile = [
      'not json',
      'null',
      '[]',
      JSON.stringify({ kind: 'stalled', id: 's9', person: 'ann' }),
      JSON.stringify({ kind: 'teleported', id: 'x', person: 'ann', at: 1 }),
      // A transition with a `kind` of another kind's name is neither: Transition admits no `kind`.
      JSON.stringify({ ...transition('t9'), kind: 'entered' }),
      JSON.stringify({ ...audience('a9'), at: 'yesterday' }),
    ];
    for (const v of hostile) expect(parseHistoryEvent(v, logger), v).toBeNull();
    expect(lines.filter((l) => l.level === 40)).toHaveLength(hostile.length);
    // Readers that know transitions alone skip the other kinds without calling them malformed.
    expect(parseTransition(JSON.stringify(stall('s1')), logger)).toBeNull();
    expect(parseTransition(JSON.stringify(transition('t1')), logger)).toEqual(transition('t1'));
    expect(lines.filter((l) => l.level === 40)).toHaveLength(hostile.length);
  });

  it('follows the log into the feed: every kind goes on past malformed records', async () => {
    const log = new PartitionedLog(1);
    const feed = new LiveFeed();
    const { logger, lines } = captureLogs();
    const got: HistoryEvent[] = [];
    feed.subscribe({}, (e) => got.push(e));
    const follower = await followTransitions(log, feed, logger, 'test');
    try {
      const values = [
        JSON.stringify(transition('t1')),
        '{"kind":"stalled","id":',
        JSON.stringify(stall('s1')),
        JSON.stringify({ id: 'x', person: 'ann' }),
        'x'.repeat(100_000),
        JSON.stringify(audience('a1')),
        JSON.stringify(audience('a2', 'exited')),
      ];
      log.append(
        TOPICS.transitions,
        values.map((value) => ({ key: 'ann', value })),
      );
      const end = Date.now() + 5000;
      while (got.length < 4 && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
      expect(got).toEqual([transition('t1'), stall('s1'), audience('a1'), audience('a2', 'exited')]);
      const warned = lines.filter((l) => l.level === 40);
      expect(warned).toHaveLength(3);
      // The log line carries an excerpt of the record, never the whole of a huge one.
      expect(Math.max(...warned.map((l) => String(l.record).length))).toBeLessThanOrEqual(200);
    } finally {
      await follower.stop();
    }
  });
});
