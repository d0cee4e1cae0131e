/**
 * The visitor API (ingest/me.ts, ingest/me-access.ts): who may read whose stages, what a page is
 * given (topic → stage, nothing else), and every hostile request answered with a clear 4xx or 429.
 * The history behind it is the embedded store and the live feed, as `npm start` wires them.
 */
import { describe, expect, it } from 'vitest';
import { visitorSource } from '../../apps/shared/visitor.js';
import type { Transition } from '../../contract/transition.js';
import { compileTopicMap, DEFAULT_TOPIC_MAP, foldOptionsOf } from '../../history/fold/topic-map.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { LiveFeed } from '../../history/transitions/live-feed.js';
import { createIngestApp } from '../../ingest/app.js';
import { signUser } from '../../ingest/identity.js';
import { accessOf, applyTransition, knownOf, type Known } from '../../ingest/me-access.js';
import type { VisitorSource } from '../../ingest/me.js';
import { compileSites, SitesFile } from '../../ingest/sites.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import { createLogger } from '../../lib/logger.js';

const SECRET = 'visitor-api-secret-0123456789';
const ORIGIN = 'https://shop.example';
const LADDER = ['intro', 'detail', 'purchase'];
const sites = () =>
  compileSites(
    SitesFile.parse({
      sites: [
        { id: 'shop', origins: [ORIGIN], identitySecret: SECRET },
        { id: 'open', origins: ['*'] },
        { id: 'slow', origins: ['*'], limits: { address: { perSecond: 1, burst: 2 } } },
      ],
    }),
  );
const VISITOR = 'AbCdEfGhIjKlMnOpQrStUv';
const OTHER = 'ZyXwVuTsRqPoNmLkJiHgFe';

const t = (person: string, topic: string, from: string | null, to: string, at: number): Transition => ({
  id: `${person}:${topic}:${at}:${to}`,
  person,
  topic,
  from,
  to,
  at,
  channel: 'web',
});

describe('who may read whose stages (me-access.ts)', () => {
  const registry = sites();
  const shop = registry.byId('shop');
  const open = registry.byId('open');

  it('lets an anonymous visitor read its own id, from the site origin or without one', () => {
    expect(accessOf({ site: 'shop', visitor: VISITOR }, shop, ORIGIN)).toEqual({ person: VISITOR, anonymous: true });
    expect(accessOf({ site: 'shop', visitor: VISITOR }, shop, undefined)).toEqual({ person: VISITOR, anonymous: true });
  });

  it('refuses an unknown site and a page of another origin', () => {
    expect(accessOf({ site: 'nope', visitor: VISITOR }, undefined, ORIGIN)).toMatchObject({ status: 403, code: 'unknown_site' });
    expect(accessOf({ site: 'shop', visitor: VISITOR }, shop, 'https://evil.example')).toMatchObject({ status: 403, code: 'origin_not_allowed' });
  });

  it('lets an identified visitor read only with the site signature; a site without a secret vouches for nobody', () => {
    expect(accessOf({ site: 'shop', visitor: VISITOR, user: 'user-42', sig: signUser(SECRET, 'user-42') }, shop, ORIGIN)).toEqual({
      person: 'user-42',
      anonymous: false,
    });
    expect(accessOf({ site: 'shop', visitor: VISITOR, user: 'user-42' }, shop, ORIGIN)).toMatchObject({ status: 403, code: 'invalid_signature' });
    for (const sig of ['0'.repeat(64), signUser(SECRET, 'user-43'), signUser('another-secret-0123456789', 'user-42'), 'zz', '']) {
      expect(accessOf({ site: 'shop', visitor: VISITOR, user: 'user-42', sig }, shop, ORIGIN)).toMatchObject({ status: 403, code: 'invalid_signature' });
    }
    expect(accessOf({ site: 'open', visitor: VISITOR, user: 'user-42', sig: signUser(SECRET, 'user-42') }, open, ORIGIN)).toMatchObject({
      status: 403,
      code: 'identity_not_verifiable',
    });
  });

  it('gives nothing of a visitor id merged into a known person to an anonymous request', () => {
    const read = { person: 'user-42', dialogues: [{ topic: 'product:sku-1', stage: 'detail', started: 1 }] };
    expect(knownOf(VISITOR, read, LADDER).size).toBe(0);
    expect([...knownOf('user-42', read, LADDER).keys()]).toEqual(['product:sku-1']);
    expect(knownOf(VISITOR, null, LADDER).size).toBe(0);
  });

  it('folds transitions onto the stages read, never taking a stage back', () => {
    const known = new Map<string, Known>([['product:sku-1', { rank: 1, stage: 'detail', started: 100 }]]);
    // Came in before the read answered: older than what the read holds.
    expect(applyTransition(known, t(VISITOR, 'product:sku-1', null, 'intro', 100), LADDER)).toBe(false);
    expect(applyTransition(known, t(VISITOR, 'product:sku-1', 'intro', 'detail', 150), LADDER)).toBe(false);
    expect(known.get('product:sku-1')!.stage).toBe('detail');
    expect(applyTransition(known, t(VISITOR, 'product:sku-1', 'detail', 'purchase', 200), LADDER)).toBe(true);
    expect(known.get('product:sku-1')!.stage).toBe('purchase');
    // The dialogue expired and a new one began: intro again.
    expect(applyTransition(known, t(VISITOR, 'product:sku-1', null, 'intro', 10_000), LADDER)).toBe(true);
    expect(known.get('product:sku-1')!.stage).toBe('intro');
    expect(applyTransition(known, t(VISITOR, 'product:sku-2', null, 'intro', 10_001), LADDER)).toBe(true);
  });
});

/** An ingest app whose visitor API reads an embedded store, and the feed the worker would publish to. */
function setup(opts: { streamsPerPerson?: number; streamsPerProcess?: number; people?: Record<string, [string, string][]> } = {}) {
  const store = new MemoryHistoryStore(foldOptionsOf(compileTopicMap(DEFAULT_TOPIC_MAP)));
  const feed = new LiveFeed();
  const people = opts.people ?? {};
  const real = visitorSource(store, feed);
  // The store's fold is exercised by its own suites; here the read is the part under test.
  const source: VisitorSource = {
    ...real,
    read: async (id) => (people[id] ? { person: id, dialogues: people[id].map(([topic, stage]) => ({ topic, stage, started: 1 })) } : real.read(id)),
  };
  const app = createIngestApp({
    producer: new PartitionedLog(1).producer(),
    logger: createLogger('visitor-api-test', 'silent'),
    maxBodyBytes: 64 * 1024,
    retryAfterSeconds: 1,
    sites: sites(),
    clientIp: () => '192.0.2.1',
    visitor: { source, streamsPerPerson: opts.streamsPerPerson, streamsPerProcess: opts.streamsPerProcess },
  });
  return { app, feed };
}

const me = (q: Record<string, string>, path = '/v1/me') => `${path}?${new URLSearchParams(q)}`;

/** Reads server-sent events off a response until `n` data lines came, then cancels it. */
async function events(res: Response, n: number): Promise<unknown[]> {
  const reader = res.body!.getReader();
  const out: unknown[] = [];
  let buf = '';
  while (out.length < n) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += new TextDecoder().decode(value);
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = block.split('\n').find((l) => l.startsWith('data: '));
      if (data) out.push(JSON.parse(data.slice(6)));
    }
  }
  await reader.cancel();
  return out;
}

describe('GET /v1/me and /v1/me/stream', () => {
  it('answers the visitor its topic → stage map and nothing else, with CORS for the site origin', async () => {
    const { app } = setup({ people: { [VISITOR]: [['product:sku-1', 'detail']] } });
    const res = await app.request(me({ site: 'shop', visitor: VISITOR }), { headers: { origin: ORIGIN } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ stages: { 'product:sku-1': 'detail' } });
    expect(res.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    expect(res.headers.get('cache-control')).toBe('no-store');
    // Nobody stored yet: an empty map, not an error (a new visitor); the snippet's digits, and an older snippet's, are ids too.
    for (const visitor of [OTHER, '1234567890123456789012345678901234567890', '31415926535897932384626']) {
      const fresh = await app.request(me({ site: 'shop', visitor }));
      expect(await fresh.json()).toEqual({ stages: {} });
    }
  });

  it('refuses hostile queries with a clear 4xx', async () => {
    const { app } = setup({ people: { 'user-42': [['product:sku-1', 'purchase']] } });
    const cases: [Record<string, string>, number, string, Record<string, string>?][] = [
      [{}, 400, 'invalid_query'],
      [{ site: 'shop' }, 400, 'invalid_query'],
      // Ids a person could choose, or not the snippet's shape: no proof of anything.
      [{ site: 'shop', visitor: 'v-alice' }, 400, 'invalid_query'],
      [{ site: 'shop', visitor: VISITOR.slice(1) }, 400, 'invalid_query'],
      [{ site: 'shop', visitor: `${VISITOR}x` }, 400, 'invalid_query'],
      [{ site: 'shop', visitor: 'AbCdEfGhIjKlMnOpQrSt/v' }, 400, 'invalid_query'],
      [{ site: 'shop', visitor: '12345' }, 400, 'invalid_query'],
      [{ site: 'shop', visitor: '1'.repeat(41) }, 400, 'invalid_query'],
      [{ site: 'shop', visitor: 'x'.repeat(10_000) }, 400, 'invalid_query'],
      [{ site: 'shop', visitor: VISITOR, extra: '1' }, 400, 'invalid_query'],
      [{ site: 's'.repeat(65), visitor: VISITOR }, 400, 'invalid_query'],
      [{ site: 'shop', visitor: VISITOR, user: 'has space' }, 400, 'invalid_query'],
      [{ site: 'shop', visitor: VISITOR, user: 'user-42', sig: 'f'.repeat(129) }, 400, 'invalid_query'],
      [{ site: 'nope', visitor: VISITOR }, 403, 'unknown_site'],
      [{ site: 'shop', visitor: VISITOR }, 403, 'origin_not_allowed', { origin: 'https://evil.example' }],
      [{ site: 'shop', visitor: VISITOR, user: 'user-42' }, 403, 'invalid_signature'],
      [{ site: 'shop', visitor: VISITOR, user: 'user-42', sig: '0'.repeat(64) }, 403, 'invalid_signature'],
      [{ site: 'open', visitor: VISITOR, user: 'user-42' }, 403, 'identity_not_verifiable'],
    ];
    for (const path of ['/v1/me', '/v1/me/stream']) {
      for (const [q, status, code, headers] of cases) {
        const res = await app.request(me(q, path), { headers });
        expect([path, q, res.status]).toEqual([path, q, status]);
        const body = (await res.json()) as { error: { code: string } };
        expect(body.error.code).toBe(code);
        expect(JSON.stringify(body)).not.toContain('purchase');
      }
    }
    // The signed user reads its own.
    const ok = await app.request(me({ site: 'shop', visitor: VISITOR, user: 'user-42', sig: signUser(SECRET, 'user-42') }));
    expect(await ok.json()).toEqual({ stages: { 'product:sku-1': 'purchase' } });
  });

  it("rate-limits per the site's limits (429 with Retry-After)", async () => {
    const { app } = setup();
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 5; i++) {
      const res = await app.request(me({ site: 'slow', visitor: VISITOR }));
      statuses.push(res.status);
      if (res.status === 429) retryAfter = res.headers.get('retry-after');
    }
    expect(statuses.slice(0, 2)).toEqual([200, 200]);
    expect(statuses).toContain(429);
    expect(Number(retryAfter)).toBeGreaterThan(0);
  });

  it('streams the map at once and at every change of this person, never of another', async () => {
    const { app, feed } = setup({ people: { [VISITOR]: [['product:sku-1', 'intro']] } });
    const res = await app.request(me({ site: 'open', visitor: VISITOR }, '/v1/me/stream'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const got = events(res, 3);
    // Let the stream subscribe and send its first map.
    await new Promise((r) => setTimeout(r, 20));
    feed.publish([t(OTHER, 'product:sku-9', null, 'purchase', 5)]);
    feed.publish([t(VISITOR, 'product:sku-1', 'intro', 'detail', 10)]);
    feed.publish([t(VISITOR, 'product:sku-1', 'intro', 'detail', 10)]);
    feed.publish([t(VISITOR, 'product:sku-1', 'detail', 'purchase', 20)]);
    expect(await got).toEqual([
      { stages: { 'product:sku-1': 'intro' } },
      { stages: { 'product:sku-1': 'detail' } },
      { stages: { 'product:sku-1': 'purchase' } },
    ]);
  });

  it('caps open streams per visitor and per process (429), and frees a place when a stream ends', async () => {
    const { app } = setup({ streamsPerPerson: 2, streamsPerProcess: 3 });
    const open = async (visitor: string) => app.request(me({ site: 'open', visitor }, '/v1/me/stream'));
    const a1 = await open(VISITOR);
    const a2 = await open(VISITOR);
    const a3 = await open(VISITOR);
    expect([a1.status, a2.status, a3.status]).toEqual([200, 200, 429]);
    expect(((await a3.json()) as { error: { code: string } }).error.code).toBe('too_many_streams');
    expect(a3.headers.get('retry-after')).toBe('10');
    const b1 = await open(OTHER);
    const c1 = await open('0123456789012345678901');
    expect([b1.status, c1.status]).toEqual([200, 429]);
    await events(a1, 1);
    // The cancelled stream's place is free again once its loop ends.
    let again = 429;
    for (let i = 0; i < 50 && again === 429; i++) {
      await new Promise((r) => setTimeout(r, 10));
      const r = await open('0123456789012345678901');
      again = r.status;
      if (again === 200) await events(r, 1);
    }
    expect(again).toBe(200);
    for (const r of [a2, b1]) await r.body?.cancel();
  });

  it('ends every stream when the feed closes (shutdown)', async () => {
    const { app, feed } = setup();
    const res = await app.request(me({ site: 'open', visitor: VISITOR }, '/v1/me/stream'));
    const reader = res.body!.getReader();
    await reader.read();
    feed.close();
    let done = false;
    while (!done) done = (await reader.read()).done;
    expect(done).toBe(true);
    const after = await app.request(me({ site: 'open', visitor: VISITOR }, '/v1/me/stream'));
    expect(after.status).toBe(503);
  });
});
