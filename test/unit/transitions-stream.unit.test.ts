import { afterEach, describe, expect, it } from 'vitest';
import type { AudienceEvent, StallEvent, Transition } from '../../contract/transition.js';
import { createQueryApp } from '../../history/query/app.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { LiveFeed } from '../../history/transitions/live-feed.js';
import { createLogger } from '../../lib/logger.js';
import { sseReader } from '../support/http-readers.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';

/**
 * `GET /v1/transitions/stream` with stalls and audiences on the feed: each kind reaches the client
 * under its own event name (stage transitions keep `transition`), filtered by `kinds`, `topic`,
 * `to` and `audience` as documented.
 */
const KEY = 'read-key-0123456789abcdef';
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

let feed: LiveFeed;
const open: AbortController[] = [];
afterEach(() => {
  for (const ac of open.splice(0)) ac.abort();
  feed?.close();
});

function app() {
  feed = new LiveFeed();
  return createQueryApp({
    store: new MemoryHistoryStore(FOLD_OPTIONS),
    logger: createLogger('test', 'silent'),
    feed,
    keys: { full: [], read: [KEY] },
    dashboard: false,
  });
}

async function stream(query = '') {
  const a = app();
  const ac = new AbortController();
  open.push(ac);
  const res = await a.request(`/v1/transitions/stream${query}`, { headers: { authorization: `Bearer ${KEY}` }, signal: ac.signal });
  expect(res.status).toBe(200);
  return sseReader(res);
}

/** The events (not `ready`) that arrive once everything is published, up to the event `end` (left out). */
async function collect(events: Awaited<ReturnType<typeof stream>>, publish: () => void, end = 'end') {
  const ready = await events.next();
  expect(ready.event).toBe('ready');
  publish();
  const got: { event?: string; id?: string; data: string }[] = [];
  for (;;) {
    const e = await events.next();
    got.push(e);
    if (e.id === end) break;
  }
  await events.cancel();
  return { ready: JSON.parse(ready.data) as unknown, got: got.slice(0, -1) };
}

const everything = () => {
  feed.publish([
    transition('t1'),
    stall('s1'),
    audience('a1'),
    audience('a2', 'exited'),
    transition('t2', 'product:other', 'purchase'),
    stall('s2', 'product:other'),
    audience('a3', 'entered', 'loyal'),
  ]);
  // Passes every filter below but `topic=product:other` and `audience`: those tests end on an event of their own.
  feed.publish([transition('end', T, 'detail')]);
};

describe('GET /v1/transitions/stream with stalls and audiences', () => {
  it('sends every kind by default, each under its event name, with the event as published', async () => {
    const { ready, got } = await collect(await stream(), everything);
    expect(ready).toEqual({ topic: null, to: null, audience: null, kinds: ['stage', 'stalled', 'entered', 'exited'] });
    expect(got.map((e) => [e.event, e.id])).toEqual([
      ['transition', 't1'],
      ['stalled', 's1'],
      ['entered', 'a1'],
      ['exited', 'a2'],
      ['transition', 't2'],
      ['stalled', 's2'],
      ['entered', 'a3'],
    ]);
    expect(JSON.parse(got[0]!.data)).toEqual(transition('t1'));
    expect(JSON.parse(got[1]!.data)).toEqual(stall('s1'));
    expect(JSON.parse(got[3]!.data)).toEqual(audience('a2', 'exited'));
  });

  it('filters by kinds and topic: a topic filter keeps transitions and stalls of the topic, no audience events', async () => {
    const { ready, got } = await collect(await stream(`?topic=${encodeURIComponent(T)}`), everything);
    expect(ready).toMatchObject({ topic: T });
    expect(got.map((e) => [e.event, e.id])).toEqual([
      ['transition', 't1'],
      ['stalled', 's1'],
    ]);
    const stalls = await stream(`?kinds=stalled,stage&topic=${encodeURIComponent('product:other')}`);
    const r = await collect(
      stalls,
      () => {
        everything();
        feed.publish([stall('end-stall', 'product:other')]);
      },
      'end-stall',
    );
    expect(r.ready).toMatchObject({ kinds: ['stalled', 'stage'] });
    expect(r.got.map((e) => [e.event, e.id])).toEqual([
      ['transition', 't2'],
      ['stalled', 's2'],
    ]);
  });

  it('filters audience events by audience, and `to` keeps stage transitions alone', async () => {
    const byAudience = await collect(
      await stream('?audience=hesitant&kinds=entered,exited,stage'),
      () => {
        everything();
        feed.publish([audience('end-audience', 'exited')]);
      },
      'end-audience',
    );
    expect(byAudience.ready).toMatchObject({ audience: 'hesitant' });
    expect(byAudience.got.map((e) => [e.event, e.id])).toEqual([
      ['entered', 'a1'],
      ['exited', 'a2'],
    ]);
    const to = await collect(await stream('?to=detail'), everything);
    expect(to.got.map((e) => [e.event, e.id])).toEqual([['transition', 't1']]);
  });

  it('refuses an unknown kind or a malformed audience name (400, naming the parameter)', async () => {
    const a = app();
    for (const [query, param] of [
      ['?kinds=stage,teleported', 'kinds'],
      ['?kinds=', 'kinds'],
      ['?kinds=stage,,stalled', 'kinds'],
      ['?audience=Not%20A%20Name', 'audience'],
      ['?audience=%0Aevent:%20transition', 'audience'],
    ] as const) {
      const res = await a.request(`/v1/transitions/stream${query}`, { headers: { authorization: `Bearer ${KEY}` } });
      expect(res.status, query).toBe(400);
      const body = (await res.json()) as { error: { issues?: { path: string }[] } };
      expect(body.error.issues?.[0]?.path, query).toBe(param);
    }
  });

  it('documents the kinds, the event names and the new parameters in the OpenAPI document', async () => {
    const doc = (await (await app().request('/v1/openapi.json')).json()) as {
      paths: Record<string, { get: { description: string; parameters: { name: string }[] } }>;
    };
    const op = doc.paths['/v1/transitions/stream']!.get;
    expect(op.parameters.map((p) => p.name).sort()).toEqual(['audience', 'kinds', 'to', 'topic']);
    for (const word of ['event: transition', 'event: stalled', 'event: entered', 'event: exited', '`kinds`', '`audience`'])
      expect(op.description).toContain(word);
  });
});
