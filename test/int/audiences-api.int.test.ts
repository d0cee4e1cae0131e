import { randomUUID } from 'node:crypto';
import { OpenAPIHono } from '@hono/zod-openapi';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Audience, AudienceMembers, Audiences, Stalled, StallRules } from '../../contract/query.js';
import { type AudienceRegistry, type AutomationWatch, openAudienceRegistry } from '../../history/automation/registry.js';
import type { BatchRecord } from '../../history/fold/person-batch.js';
import { requireKey } from '../../history/query/auth.js';
import { automationRoutes } from '../../history/query/routes/audiences.js';
import { encodeSetCursor } from '../../history/query/routes/stalls.js';
import { type QueryRouteContext, stageEnumOf, validationHook } from '../../history/query/routes/common.js';
import { compileStallRules } from '../../history/stalls/rules.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { RedisHistoryStore } from '../../history/store/redis.js';
import type { HistoryStore } from '../../history/store/store.js';
import { onError } from '../../lib/http-errors.js';
import type { LogMessage, LogProducer } from '../../lib/log.js';
import { createLogger } from '../../lib/logger.js';
import { parseCsv } from '../support/http-readers.js';
import { redisUrl } from '../support/services.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';

/**
 * The stall and audience routes over each store (real Redis with the Redis registry, and the
 * embedded in-memory store with the memory registry), through their HTTP surface. Histories are
 * folded through the store as the worker does, stalls fired by ticks as the sweeper sends them,
 * and the backfill's ticks (caught from its producer) folded the same way.
 *
 * The app is composed here as history/query/app.ts composes its routes, so that these routes are
 * tested before they are registered there.
 */
const FULL_KEY = 'full-key-0123456789abcdef';
const READ_KEY = 'read-key-0123456789abcdef';
const DAY = 86_400_000;
const HOUR = 3_600_000;
const T = 'product:sku-1';
const RULES = compileStallRules(
  [
    { name: 'quiet-at-detail', stage: 'detail', after: DAY, topics: 'product:*' },
    { name: 'quiet-at-intro', stage: 'intro', after: 12 * HOUR },
  ],
  FOLD_OPTIONS.ladder,
  FOLD_OPTIONS.quietMs,
).rules;
const WARM = { topic: 'product:*', atLeast: 'detail', notReached: 'purchase' };

type Kind = 'Redis' | 'in-memory';

describe.each<Kind>(['Redis', 'in-memory'])('stall and audience routes on the %s store', (kind) => {
  let redis: Redis | undefined;
  const ns = `aud-${randomUUID().slice(0, 8)}:`;
  let store: HistoryStore;
  let registry: AudienceRegistry;
  let watch: AutomationWatch;
  let app: OpenAPIHono;
  let offset = 0;
  let seq = 0;
  const ticks: LogMessage[] = [];
  const producer: LogProducer = { send: async (_t, m) => void ticks.push(...m), ready: () => true, close: async () => {} };
  const now = Date.now();

  const fold = async (records: BatchRecord[]) => {
    const o = await store.foldBatch('clicks.raw/0', records);
    await o.published();
  };
  const event = (person: string, stage: number, at: number, topic = T): BatchRecord => ({
    offset: offset++,
    person,
    event: { id: `a-${++seq}`, ts: at, channel: 'web', topic, stage },
  });
  const tick = (person: string, at: number): BatchRecord => ({ offset: offset++, person, event: null, tick: true, rt: at });
  /** What the worker does with the ticks on clicks.raw. */
  const foldTicks = async () => {
    const records = ticks.splice(0).map((m) => {
      const r = JSON.parse(m.value) as { person: string; rt: number };
      return tick(r.person, r.rt);
    });
    if (records.length) await fold(records);
  };
  const auth = (key = FULL_KEY) => ({ authorization: `Bearer ${key}` });
  const get = (path: string, headers: Record<string, string> = auth()) => app.request(path, { headers });
  const json = async <R>(path: string, headers?: Record<string, string>): Promise<R> => {
    const res = await get(path, headers);
    expect(res.status, `${path}: ${await res.clone().text()}`).toBe(200);
    return (await res.json()) as R;
  };
  const put = (name: string, body: string, headers: Record<string, string> = { ...auth(), 'content-type': 'application/json' }) =>
    app.request(`/v1/audiences/${name}`, { method: 'PUT', headers, body });
  const del = (name: string, key = FULL_KEY) => app.request(`/v1/audiences/${name}`, { method: 'DELETE', headers: auth(key) });
  const errorOf = async (res: Response) =>
    ((await res.json()) as { error: { code: string; message: string; issues?: { path: string; message: string }[] } }).error;

  beforeAll(async () => {
    if (kind === 'Redis') {
      redis = new Redis(redisUrl());
      store = new RedisHistoryStore(redis, FOLD_OPTIONS, ns);
    } else {
      store = new MemoryHistoryStore(FOLD_OPTIONS);
    }
    const logger = createLogger('test', 'silent');
    registry = await openAudienceRegistry({ store, stallRules: RULES, producer, logger, redis: redis ? { client: redis, ns } : undefined, settleMs: 0 });
    await registry.syncFile({ vip: { atLeast: 'purchase' } }, 'audiences.json');
    // Its backfill, over the empty store.
    await registry.settled();
    ticks.length = 0;
    watch = await registry.watch(store, RULES, { everyMs: 50 });

    const keys = { full: [FULL_KEY], read: [READ_KEY] };
    const ctx: QueryRouteContext = {
      store,
      logger,
      ladder: FOLD_OPTIONS.ladder,
      now: Date.now,
      feed: undefined,
      stageEnum: stageEnumOf(FOLD_OPTIONS.ladder),
      auth: { read: requireKey(keys, 'read'), erase: requireKey(keys, 'erase'), readStream: requireKey(keys, 'read', { allowCookie: true }) },
    };
    app = new OpenAPIHono({ defaultHook: validationHook() });
    app.onError(onError(logger));
    app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
    automationRoutes(app, ctx, { registry, stallRules: RULES });
    app.doc31('/v1/openapi.json', { openapi: '3.1.0', info: { title: 'test', version: '1' } });

    // product:sku-1: alice and bob quiet at detail (2 and 3 days), carol bought, dave at intro an hour ago;
    // erin at detail of a plan (no rule watches plans at detail), frank at detail of another product.
    await fold([
      event('alice', 0, now - 2 * DAY - HOUR),
      event('alice', 1, now - 2 * DAY),
      event('bob', 1, now - 3 * DAY),
      event('carol', 1, now - 2 * DAY - HOUR),
      event('carol', 2, now - 2 * DAY),
      event('dave', 0, now - HOUR),
      event('erin', 1, now - 2 * DAY, 'plan:pro'),
      event('frank', 1, now - 2 * DAY, 'product:sku-2'),
    ]);
    // The sweeper's ticks: the stalls that came due fire.
    await fold(['alice', 'bob', 'carol', 'dave', 'erin', 'frank'].map((p) => tick(p, now)));
  });

  afterAll(async () => {
    await watch?.stop();
    await registry?.close();
    if (redis) {
      const found = await redis.keys(`${ns}*`);
      if (found.length) await redis.del(...found);
      redis.disconnect();
    }
  });

  it('documents every route in a valid OpenAPI 3.1 document', async () => {
    const doc = (await (await app.request('/v1/openapi.json')).json()) as { paths: Record<string, Record<string, unknown>> };
    const result = await new Validator().validate(doc as unknown as Record<string, unknown>);
    expect(result.errors ?? []).toEqual([]);
    const ops = Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${path}`));
    expect(ops.sort()).toEqual([
      'DELETE /v1/audiences/{name}',
      'GET /v1/audiences',
      'GET /v1/audiences/{name}',
      'GET /v1/audiences/{name}/members',
      'GET /v1/stalls',
      'GET /v1/topics/{topic}/stalled',
      'PUT /v1/audiences/{name}',
    ]);
  });

  describe('stalls', () => {
    it('lists the rules as the topic map writes them', async () => {
      expect(await json<StallRules>('/v1/stalls', auth(READ_KEY))).toEqual({
        rules: [
          { name: 'quiet-at-detail', stage: 'detail', after: '1d', afterMs: DAY, topics: 'product:*' },
          { name: 'quiet-at-intro', stage: 'intro', after: '12h', afterMs: 12 * HOUR, topics: '*' },
        ],
      });
    });

    it('lists the dialogues a rule holds stalled, most recently stalled first, page by page', async () => {
      const path = `/v1/topics/${encodeURIComponent(T)}/stalled?rule=quiet-at-detail`;
      const all = await json<Stalled>(path);
      expect(all).toEqual({
        topic: T,
        rule: 'quiet-at-detail',
        total: 2,
        nextCursor: null,
        stalled: [
          { person: 'alice', stage: 'detail', since: new Date(now - 2 * DAY).toISOString(), at: new Date(now - DAY).toISOString() },
          { person: 'bob', stage: 'detail', since: new Date(now - 3 * DAY).toISOString(), at: new Date(now - 2 * DAY).toISOString() },
        ],
      });
      const first = await json<Stalled>(`${path}&limit=1`);
      expect(first.stalled.map((s) => s.person)).toEqual(['alice']);
      expect(first.nextCursor).toEqual(expect.any(String));
      const second = await json<Stalled>(`${path}&limit=1&cursor=${first.nextCursor}`);
      expect(second).toMatchObject({ total: 2, nextCursor: null, stalled: [{ person: 'bob' }] });

      // Exports: the whole list streamed, or a page with its cursor in a header.
      const csv = await get(`${path}&format=csv`);
      expect(csv.headers.get('content-type')).toMatch(/^text\/csv/);
      expect(csv.headers.get('x-total-count')).toBe('2');
      expect(parseCsv(await csv.text())).toEqual([
        ['person', 'topic', 'rule', 'stage', 'since', 'stalled_at'],
        ['alice', T, 'quiet-at-detail', 'detail', new Date(now - 2 * DAY).toISOString(), new Date(now - DAY).toISOString()],
        ['bob', T, 'quiet-at-detail', 'detail', new Date(now - 3 * DAY).toISOString(), new Date(now - 2 * DAY).toISOString()],
      ]);
      const nd = await get(path, { ...auth(), accept: 'application/x-ndjson' });
      expect(nd.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
      expect(
        (await nd.text())
          .trim()
          .split('\n')
          .map((l) => (JSON.parse(l) as { person: string }).person),
      ).toEqual(['alice', 'bob']);
      const page = await get(`${path}&format=ndjson&limit=1`);
      expect(page.headers.get('x-next-cursor')).toBe(first.nextCursor);

      // The other rule: dave has stood at intro for an hour only.
      expect((await json<Stalled>(`/v1/topics/${encodeURIComponent(T)}/stalled?rule=quiet-at-intro`)).stalled).toEqual([]);
    });

    it('takes a dialogue out once it moves again', async () => {
      await fold([event('bob', 1, now - HOUR)]);
      const after = await json<Stalled>(`/v1/topics/${encodeURIComponent(T)}/stalled?rule=quiet-at-detail`);
      expect(after.stalled.map((s) => s.person)).toEqual(['alice']);
    });

    it('refuses bad parameters, unknown rules and topics', async () => {
      const base = `/v1/topics/${encodeURIComponent(T)}/stalled`;
      const cases: [string, number, string, string?][] = [
        [`${base}?rule=no-such-rule`, 404, 'unknown_rule'],
        [`${base}?rule=BAD%20RULE`, 400, 'invalid_parameter', 'rule'],
        [`${base}`, 400, 'invalid_parameter', 'rule'],
        [`${base}?rule=quiet-at-detail&cursor=not-a-cursor`, 400, 'invalid_parameter', 'cursor'],
        [`${base}?rule=quiet-at-detail&cursor=${Buffer.from('{"v":1,"p":"x","a":-1,"q":"y"}').toString('base64url')}`, 400, 'invalid_parameter', 'cursor'],
        [`${base}?rule=quiet-at-detail&cursor=${'A'.repeat(600)}`, 400, 'invalid_parameter', 'cursor'],
        [`${base}?rule=quiet-at-detail&limit=0`, 400, 'invalid_parameter', 'limit'],
        [`${base}?rule=quiet-at-detail&limit=5000`, 400, 'invalid_parameter', 'limit'],
        [`${base}?rule=quiet-at-detail&format=xml`, 400, 'invalid_parameter', 'format'],
        [`/v1/topics/plan%3Apro/stalled?rule=quiet-at-detail`, 400, 'invalid_parameter', 'rule'],
        [`/v1/topics/product%3Anever/stalled?rule=quiet-at-detail`, 404, 'unknown_topic'],
      ];
      for (const [path, status, code, issuePath] of cases) {
        const res = await get(path);
        expect(res.status, path).toBe(status);
        const e = await errorOf(res);
        expect(e.code, path).toBe(code);
        if (issuePath) expect(e.issues?.[0]?.path, path).toBe(issuePath);
      }
      // A cursor of another list.
      const other = encodeSetCursor({ topic: T, rule: 'quiet-at-detail' }, { person: 'alice', at: now - DAY });
      expect((await get(`${base}?rule=quiet-at-detail&cursor=${other}`)).status).toBe(200);
      const intro = await get(`${base}?rule=quiet-at-intro&cursor=${other}`);
      expect(intro.status).toBe(400);
      expect((await errorOf(intro)).message).toBe('cursor: this cursor belongs to another list: keep the path and `rule` as they were on the first page');
      expect((await get(`${base}?rule=quiet-at-detail`, {})).status).toBe(401);
    });
  });

  describe('audiences', () => {
    it('creates an audience, backfills it, and lists its members', async () => {
      expect((await json<Audiences>('/v1/audiences')).audiences.map((a) => [a.name, a.source])).toEqual([['vip', 'file']]);
      const res = await put('warm-leads', JSON.stringify(WARM));
      expect(res.status, await res.clone().text()).toBe(201);
      const created = (await res.json()) as Audience;
      expect(created).toMatchObject({ name: 'warm-leads', definition: WARM, version: 1, source: 'api', members: 0, backfill: { state: 'running' } });
      await registry.settled();
      // Everyone in the indexes of product topics, once each.
      expect(ticks.map((m) => m.key).sort()).toEqual(['alice', 'bob', 'carol', 'dave', 'frank']);
      await foldTicks();

      const one = await json<Audience>('/v1/audiences/warm-leads', auth(READ_KEY));
      expect(one).toMatchObject({ members: 3, version: 1, backfill: { state: 'done', total: 5, done: 5, finishedAt: expect.any(String) } });
      const members = await json<AudienceMembers>('/v1/audiences/warm-leads/members');
      expect(members.audience).toBe('warm-leads');
      expect(members.total).toBe(3);
      expect(members.members.map((m) => m.person).sort()).toEqual(['alice', 'bob', 'frank']);
      expect(members.nextCursor).toBeNull();

      const pages: string[] = [];
      let cursor: string | null = null;
      do {
        const p: AudienceMembers = await json<AudienceMembers>(`/v1/audiences/warm-leads/members?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
        pages.push(...p.members.map((m) => m.person));
        cursor = p.nextCursor;
      } while (cursor);
      expect(pages).toEqual(members.members.map((m) => m.person));

      const csv = await get('/v1/audiences/warm-leads/members', { ...auth(), accept: 'text/csv' });
      expect(csv.headers.get('content-disposition')).toMatch(/^attachment; filename="audience-warm-leads-\d{4}-\d{2}-\d{2}\.csv"$/);
      const rows = parseCsv(await csv.text());
      expect(rows[0]).toEqual(['person', 'entered_at']);
      expect(rows.slice(1).map((r) => r[0])).toEqual(members.members.map((m) => m.person));

      // The same definition again changes nothing; a new one bumps the version.
      const same = await put('warm-leads', JSON.stringify(WARM, null, 2));
      expect(same.status).toBe(200);
      expect(((await same.json()) as Audience).version).toBe(1);
      const changed = await put('warm-leads', JSON.stringify({ ...WARM, activeWithin: '30h' }));
      expect(changed.status).toBe(200);
      expect(((await changed.json()) as Audience).version).toBe(2);
      await registry.settled();
      await foldTicks();
      expect((await json<AudienceMembers>('/v1/audiences/warm-leads/members')).members.map((m) => m.person)).toEqual(['bob']);
    });

    it('deletes an audience with a full key', async () => {
      expect((await put('to-go', JSON.stringify({ topic: T }))).status).toBe(201);
      await registry.settled();
      await foldTicks();
      expect((await json<Audience>('/v1/audiences/to-go')).members).toBeGreaterThan(0);
      expect((await del('to-go', READ_KEY)).status).toBe(403);
      expect((await del('to-go')).status).toBe(204);
      expect(await store.automationCount({ audience: 'to-go' })).toBe(0);
      for (const path of ['/v1/audiences/to-go', '/v1/audiences/to-go/members']) {
        const res = await get(path);
        expect(res.status, path).toBe(404);
        expect((await errorOf(res)).code).toBe('unknown_audience');
      }
      expect((await del('to-go')).status).toBe(404);
      expect((await json<Audiences>('/v1/audiences')).audiences.map((a) => a.name)).toEqual(['vip', 'warm-leads']);
    });

    it('keeps audiences from the file read-only', async () => {
      for (const res of [await put('vip', JSON.stringify(WARM)), await del('vip')]) {
        expect(res.status).toBe(409);
        expect((await errorOf(res)).code).toBe('read_only_audience');
      }
      expect(await json<Audience>('/v1/audiences/vip')).toMatchObject({ source: 'file', definition: { atLeast: 'purchase' } });
    });

    it('refuses bad definitions, names, bodies and keys, with the reason', async () => {
      let deep = '{"topic":"x"}';
      for (let i = 0; i < 1000; i++) deep = `{"not":${deep}}`;
      const cases: [string, string, number, string, RegExp, string?][] = [
        ['bad', '{"topic": "product:*", "atLeast": "checkout"}', 400, 'invalid_definition', /"checkout" is not on the ladder/, 'body'],
        ['bad', '{"topic": "product:*", "atleast": "detail"}', 400, 'invalid_definition', /unknown key "atleast"/, 'body.atleast'],
        ['bad', '{"stalled": "no-such-rule"}', 400, 'invalid_definition', /not a stall rule of the topic map/, 'body'],
        ['bad', '{"topic": ', 400, 'invalid_definition', /not valid JSON/, 'body'],
        ['bad', '', 400, 'invalid_definition', /missing/, 'body'],
        ['bad', deep, 400, 'invalid_definition', /nest at most 6 deep/, 'body'],
        ['bad', `{"topic": "${'x'.repeat(100_000)}"}`, 413, 'body_too_large', /at most 16384 bytes/],
        ['bad', `{"topic": "${'x'.repeat(20_000)}"}`, 400, 'invalid_definition', /at most 16384 bytes of JSON/, 'body'],
        ['Bad', JSON.stringify(WARM), 400, 'invalid_parameter', /an audience name is/, 'name'],
        ['a'.repeat(65), JSON.stringify(WARM), 400, 'invalid_parameter', /an audience name is/, 'name'],
        ['..%2Fetc', JSON.stringify(WARM), 400, 'invalid_parameter', /an audience name is/, 'name'],
      ];
      for (const [name, body, status, code, message, issuePath] of cases) {
        const res = await put(name, body);
        expect(res.status, `${name} ${body.slice(0, 60)}`).toBe(status);
        const e = await errorOf(res);
        expect(e.code).toBe(code);
        expect(e.message).toMatch(message);
        if (issuePath) expect(e.issues?.[0]?.path).toBe(issuePath);
      }
      const form = await put('bad', 'topic=x', { ...auth(), 'content-type': 'application/x-www-form-urlencoded' });
      expect(form.status).toBe(415);
      expect((await put('bad', JSON.stringify(WARM), { ...auth(READ_KEY), 'content-type': 'application/json' })).status).toBe(403);
      expect((await put('bad', JSON.stringify(WARM), { 'content-type': 'application/json' })).status).toBe(401);
      expect((await json<Audiences>('/v1/audiences')).audiences.map((a) => a.name)).toEqual(['vip', 'warm-leads']);

      for (const path of ['/v1/audiences/nobody', '/v1/audiences/nobody/members']) expect((await get(path)).status, path).toBe(404);
      expect((await get('/v1/audiences/Nobody')).status).toBe(400);
      const badCursor = await get('/v1/audiences/warm-leads/members?cursor=eyJ2IjoxfQ');
      expect(badCursor.status).toBe(400);
      expect((await errorOf(badCursor)).issues?.[0]?.path).toBe('cursor');
      const stalledCursor = encodeSetCursor({ topic: T, rule: 'quiet-at-detail' }, { person: 'alice', at: now - DAY });
      expect((await get(`/v1/audiences/warm-leads/members?cursor=${stalledCursor}`)).status).toBe(400);
      const otherAudience = encodeSetCursor({ audience: 'vip' }, { person: 'alice', at: now - DAY });
      expect((await get(`/v1/audiences/warm-leads/members?cursor=${otherAudience}`)).status).toBe(400);
    });
  });
});
