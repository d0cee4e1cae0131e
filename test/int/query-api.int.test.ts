import { randomUUID } from 'node:crypto';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTransition, type Transition } from '../../contract/transition.js';
import type { FoldEvent } from '../../history/fold/fold.js';
import { LiveFeed } from '../../history/transitions/live-feed.js';
import type { BatchRecord } from '../../history/fold/person-batch.js';
import { createQueryApp } from '../../history/query/app.js';
import type { CrmModel } from '../../history/crm/model.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { RedisHistoryStore } from '../../history/store/redis.js';
import type { HistoryStore } from '../../history/store/store.js';
import { createLogger } from '../../lib/logger.js';
import { redisUrl } from '../support/services.js';
import { parseCsv, sseReader } from '../support/http-readers.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';

/**
 * The query API over each store (real Redis, and the embedded in-memory store), through its public
 * HTTP surface (`app.request`, no port). Histories are folded through the store as the worker does,
 * with fixed times; the API's clock is fixed too, so every count and order is exact.
 */
const FULL_KEY = 'full-key-0123456789abcdef';
const READ_KEY = 'read-key-0123456789abcdef';
const NOW = Date.UTC(2026, 5, 10, 12);
const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const T = 'product:sku-1';

type Kind = 'Redis' | 'in-memory';

describe.each<Kind>(['Redis', 'in-memory'])('query API on the %s store', (kind) => {
  let redis: Redis | undefined;
  const ns = `qa-${randomUUID().slice(0, 8)}:`;
  let store: HistoryStore;
  let feed: LiveFeed;
  let app: ReturnType<typeof createQueryApp>;
  let offset = 0;
  let seq = 0;
  const published: Transition[] = [];

  const rec = (person: string, stage: number, at: number, extra: Partial<FoldEvent> = {}): BatchRecord => ({
    offset: offset++,
    person,
    event: { id: `q-${++seq}`, ts: at, channel: 'web', topic: T, stage, ...extra },
  });
  const fold = async (records: BatchRecord[]) => {
    const o = await store.foldBatch('clicks.raw/0', records);
    published.push(...o.transitions.filter(isTransition));
    await o.published();
  };
  const get = (path: string, headers: Record<string, string> = { authorization: `Bearer ${FULL_KEY}` }) => app.request(path, { headers });
  const json = async <T = Record<string, unknown>>(path: string, headers?: Record<string, string>): Promise<T> => {
    const res = await get(path, headers);
    expect(res.status, `${path}: ${await res.clone().text()}`).toBe(200);
    return (await res.json()) as T;
  };
  const errorOf = async (res: Response) =>
    ((await res.json()) as { error: { code: string; message: string; issues?: { path: string; message: string }[] } }).error;

  beforeAll(async () => {
    if (kind === 'Redis') {
      redis = new Redis(redisUrl());
      store = new RedisHistoryStore(redis, FOLD_OPTIONS, ns);
    } else {
      store = new MemoryHistoryStore(FOLD_OPTIONS);
    }
    feed = new LiveFeed();
    app = createQueryApp({ store, logger: createLogger('test', 'silent'), feed, keys: { full: [FULL_KEY], read: [READ_KEY] }, now: () => NOW });

    // product:sku-1: a small funnel. alice intro (2 h ago), bob intro → detail (1 day ago),
    // carol all the way to purchase with a value (3 days ago), dave detail only (10 days ago).
    await fold([
      rec('alice', 0, NOW - 2 * HOUR),
      rec('bob', 0, NOW - DAY - 10 * MIN),
      rec('bob', 1, NOW - DAY),
      rec('carol', 0, NOW - 3 * DAY - 2 * MIN),
      rec('carol', 1, NOW - 3 * DAY - MIN),
      rec('carol', 2, NOW - 3 * DAY, { value: 129 }),
      rec('dave', 1, NOW - 10 * DAY),
      rec('alice', 0, NOW - HOUR, { topic: 'product:sku-2' }),
    ]);
    // A visitor who later identified: their history joins the known person's.
    await fold([rec('anon-7', 1, NOW - 5 * HOUR, { topic: 'plan:pro' }), rec('user-7', 0, NOW - 4 * HOUR, { topic: 'plan:pro' })]);
    await fold([{ offset: offset++, person: 'user-7', event: null, link: 'anon-7', at: NOW - 3 * HOUR, channel: 'web' }]);
  });

  afterAll(async () => {
    if (redis) {
      const found = await redis.keys(`${ns}*`);
      if (found.length) await redis.del(...found);
      redis.disconnect();
    }
  });

  it('publishes an OpenAPI 3.1 document that validates and lists every endpoint', async () => {
    const res = await app.request('/v1/openapi.json');
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { openapi: string; paths: Record<string, Record<string, unknown>> };
    const validator = new Validator();
    const result = await validator.validate(doc as unknown as Record<string, unknown>);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(doc.openapi).toBe('3.1.0');
    const ops = Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${path}`));
    expect(ops.sort()).toEqual([
      'DELETE /v1/audiences/{name}',
      'DELETE /v1/people/{person}',
      'GET /v1/audiences',
      'GET /v1/audiences/{name}',
      'GET /v1/audiences/{name}/members',
      'GET /v1/crm/model',
      'GET /v1/people/{person}',
      'GET /v1/people/{person}/export',
      'GET /v1/people/{person}/suggestions',
      'GET /v1/stalls',
      'GET /v1/topics',
      'GET /v1/topics/{topic}/funnel',
      'GET /v1/topics/{topic}/needs',
      'GET /v1/topics/{topic}/related',
      'GET /v1/topics/{topic}/stalled',
      'GET /v1/topics/{topic}/trend',
      'GET /v1/transitions/recent',
      'GET /v1/transitions/stream',
      'PUT /v1/audiences/{name}',
    ]);
  });

  describe('API keys', () => {
    it('answers 401 without a key, with a malformed header, or with an unknown key', async () => {
      const none = await get('/v1/topics', {});
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(await errorOf(none)).toEqual({ code: 'unauthorized', message: 'an API key is required: send "Authorization: Bearer <API key>"' });
      const basic = await get('/v1/topics', { authorization: 'Basic dXNlcjpwYXNz' });
      expect(basic.status).toBe(401);
      expect((await errorOf(basic)).message).toBe('the Authorization header must be "Bearer <API key>"');
      const wrong = await get('/v1/people/alice', { authorization: 'Bearer not-a-key-of-ours-at-all' });
      expect(wrong.status).toBe(401);
      expect((await errorOf(wrong)).code).toBe('invalid_key');
      // The key is checked before the parameters: no hint about the API without one.
      expect((await get('/v1/topics/x/needs?stage=nope', {})).status).toBe(401);
    });

    it('lets a read-only key read but not erase (403), a full key do both', async () => {
      expect((await get('/v1/people/alice', { authorization: `Bearer ${READ_KEY}` })).status).toBe(200);
      const del = await app.request('/v1/people/alice', { method: 'DELETE', headers: { authorization: `Bearer ${READ_KEY}` } });
      expect(del.status).toBe(403);
      expect(await errorOf(del)).toEqual({
        code: 'forbidden',
        message: 'this API key may only read; this request changes data (an erase, an audience) and needs a key from API_KEYS',
      });
      expect((await get('/v1/people/alice')).status).toBe(200);
    });

    it('takes the key from the dashboard’s cookie on the event stream only', async () => {
      const cookie = { cookie: `clickfold_key=${READ_KEY}` };
      expect((await get('/v1/topics', cookie)).status).toBe(401);
      const ac = new AbortController();
      const res = await app.request('/v1/transitions/stream', { headers: cookie, signal: ac.signal });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      ac.abort();
      await res.body?.cancel().catch(() => {});
      expect((await get('/v1/transitions/stream', { cookie: 'clickfold_key=wrong-key-wrong-key' })).status).toBe(401);
    });
  });

  describe('GET /v1/people/:person', () => {
    it('gives the dialogues, RFM inputs and scores, and recent transitions with the worker’s ids', async () => {
      const carol = await json<{
        person: string;
        dialogues: {
          topic: string;
          stage: string;
          counts: Record<string, number>;
          firstReached: Record<string, string>;
          channels: string[];
          lastActivity: string;
        }[];
        rfm: unknown;
        rfmScores: unknown;
        rfmScale: string;
        ltv: unknown;
        recentTransitions: { id: string; from: string | null; to: string; at: string }[];
        linkedIds: string[];
      }>('/v1/people/carol');
      expect(carol.person).toBe('carol');
      expect(carol.linkedIds).toEqual([]);
      expect(carol.dialogues).toEqual([
        {
          topic: T,
          stage: 'purchase',
          started: new Date(NOW - 3 * DAY - 2 * MIN).toISOString(),
          lastActivity: new Date(NOW - 3 * DAY).toISOString(),
          firstReached: {
            intro: new Date(NOW - 3 * DAY - 2 * MIN).toISOString(),
            detail: new Date(NOW - 3 * DAY - MIN).toISOString(),
            purchase: new Date(NOW - 3 * DAY).toISOString(),
          },
          counts: { intro: 1, detail: 1, purchase: 1 },
          channels: ['web'],
          signals: {},
        },
      ]);
      expect(carol.rfm).toEqual({
        firstPurchase: new Date(NOW - 3 * DAY).toISOString(),
        lastPurchase: new Date(NOW - 3 * DAY).toISOString(),
        purchases: 1,
        totalValue: 129,
      });
      // No CRM model computed yet: the fixed scale, value to date only.
      expect(carol.rfmScale).toBe('fixed');
      expect(carol.ltv).toEqual({ toDate: 129, projected: null, horizonDays: 365, model: null });
      // 3 days since the purchase: recency 5; one purchase: frequency 1; 129: value 2.
      expect(carol.rfmScores).toEqual({ recency: 5, frequency: 1, monetary: 2, code: '512' });
      const folded = published.filter((t) => t.person === 'carol').reverse();
      expect(carol.recentTransitions).toEqual(folded.map((t) => ({ id: t.id, topic: t.topic, from: t.from, to: t.to, at: new Date(t.at).toISOString() })));
    });

    it('answers a merged visitor id with the known person and their linked ids', async () => {
      const viaVisitor = await json<{ person: string; linkedIds: string[]; dialogues: { topic: string; stage: string }[]; rfmScores: unknown }>(
        '/v1/people/anon-7',
      );
      expect(viaVisitor.person).toBe('user-7');
      expect(viaVisitor.linkedIds).toEqual(['anon-7']);
      expect(viaVisitor.dialogues.map((d) => [d.topic, d.stage])).toEqual([['plan:pro', 'detail']]);
      expect(viaVisitor.rfmScores).toBeNull();
    });

    it('answers 404 for an unknown person and 400 for an id that is too long', async () => {
      const missing = await get('/v1/people/nobody-here');
      expect(missing.status).toBe(404);
      expect(await errorOf(missing)).toEqual({ code: 'unknown_person', message: 'no history for person "nobody-here"' });
      const long = await get(`/v1/people/${'x'.repeat(129)}`);
      expect(long.status).toBe(400);
      expect(await errorOf(long)).toMatchObject({ code: 'invalid_parameter', issues: [{ path: 'person', message: 'a person id has at most 128 characters' }] });
    });
  });

  describe('GET /v1/topics and the funnel', () => {
    it('lists every topic with its people per stage, most people first', async () => {
      const body = await json<{ ladder: string[]; topics: unknown[] }>('/v1/topics');
      expect(body.ladder).toEqual(['intro', 'detail', 'purchase']);
      expect(body.topics).toEqual([
        { topic: T, people: 4, stages: { intro: 1, detail: 2, purchase: 1 } },
        { topic: 'plan:pro', people: 1, stages: { intro: 0, detail: 1, purchase: 0 } },
        { topic: 'product:sku-2', people: 1, stages: { intro: 1, detail: 0, purchase: 0 } },
      ]);
    });

    it('counts the people active in the window by their highest stage, cumulatively, with conversions', async () => {
      const all = await json<{ people: number; stages: unknown[]; overallConversion: number; window: unknown }>(`/v1/topics/${T}/funnel`);
      expect(all.window).toEqual({ since: null, until: null });
      expect(all.people).toBe(4);
      expect(all.stages).toEqual([
        { stage: 'intro', atStage: 1, reached: 4, conversionToNext: 0.75 },
        { stage: 'detail', atStage: 2, reached: 3, conversionToNext: 0.3333 },
        { stage: 'purchase', atStage: 1, reached: 1, conversionToNext: null },
      ]);
      expect(all.overallConversion).toBe(0.25);
      // The last 7 days: dave (10 days ago) is out.
      const week = await json<{ people: number; stages: { reached: number }[]; window: { since: string } }>(`/v1/topics/${T}/funnel?since=7d`);
      // Counted by whole UTC hours: the window starts at the hour of 7 days ago.
      expect(week.window.since).toBe(new Date(Math.floor((NOW - 7 * DAY) / HOUR) * HOUR).toISOString());
      expect(week.stages.map((s) => s.reached)).toEqual([3, 2, 1]);
      // A closed window with ISO bounds: only bob (1 day ago) and carol (3 days ago).
      const closed = await json<{ stages: { atStage: number }[] }>(
        `/v1/topics/${T}/funnel?since=${new Date(NOW - 4 * DAY).toISOString()}&until=${NOW - 12 * HOUR}`,
      );
      expect(closed.stages.map((s) => s.atStage)).toEqual([0, 1, 1]);
      // The end is widened to the end of its hour; a window in the future counts nobody.
      const ends = await json<{ window: { until: string } }>(`/v1/topics/${T}/funnel?since=0&until=${NOW - 12 * HOUR}`);
      expect(ends.window.until).toBe(new Date(Math.floor((NOW - 12 * HOUR) / HOUR) * HOUR + HOUR - 1).toISOString());
      const future = await json<{ people: number; stages: { atStage: number }[] }>(`/v1/topics/${T}/funnel?since=${NOW + 2 * HOUR}`);
      expect(future.people).toBe(0);
      expect(future.stages.map((s) => s.atStage)).toEqual([0, 0, 0]);
      // Any range answers at once (the counters are summed, not the hours walked): everyone.
      const huge = await json<{ people: number }>(`/v1/topics/${T}/funnel?since=0&until=999999999999999`);
      expect(huge.people).toBe(4);
    });

    it('explains a bad window (400) and an unknown topic (404)', async () => {
      const bad = await get(`/v1/topics/${T}/funnel?since=last-tuesday`);
      expect(bad.status).toBe(400);
      expect(await errorOf(bad)).toMatchObject({ code: 'invalid_parameter', issues: [{ path: 'since', message: expect.stringContaining('ISO 8601') }] });
      const reversed = await get(`/v1/topics/${T}/funnel?since=2026-06-09&until=2026-06-01`);
      expect(reversed.status).toBe(400);
      expect((await errorOf(reversed)).message).toBe('until: the window ends before it starts (until is earlier than since)');
      const unknown = await get('/v1/topics/product:nope/funnel');
      expect(unknown.status).toBe(404);
      expect(await errorOf(unknown)).toEqual({ code: 'unknown_topic', message: 'no dialogue was ever about topic "product:nope"' });
    });
  });

  describe('GET /v1/topics/:topic/needs', () => {
    it('lists the people at a stage and not past it, within the activity window, best first', async () => {
      const detail = await json<{
        needs: { person: string; stage: string; interactions: number }[];
        total: number;
        notReached: string;
        activeWithin: string;
        nextCursor: null;
      }>(`/v1/topics/${T}/needs?stage=detail`);
      // Default: not past the next stage, active within the quiet period (30 days).
      expect(detail.notReached).toBe('purchase');
      expect(detail.activeWithin).toBe('30d');
      expect(detail.needs.map((n) => n.person)).toEqual(['bob', 'dave']);
      expect(detail.nextCursor).toBeNull();
      const recent = await json<{ needs: { person: string }[] }>(`/v1/topics/${T}/needs?stage=detail&activeWithin=7d`);
      expect(recent.needs.map((n) => n.person)).toEqual(['bob']);
      // From intro up to (not including) purchase: alice (2 h ago, one look) and bob (a day ago, two steps).
      const wide = await json<{ needs: { person: string; stage: string; score: number }[] }>(
        `/v1/topics/${T}/needs?stage=intro&notReached=purchase&activeWithin=7d`,
      );
      expect(wide.needs.map((n) => [n.person, n.stage])).toEqual([
        ['bob', 'detail'],
        ['alice', 'intro'],
      ]);
    });

    it('explains each bad parameter', async () => {
      const cases: [string, string, string][] = [
        [`stage=checkout`, 'stage', 'Invalid option'],
        [`stage=purchase`, 'stage', '"purchase" is the last stage'],
        [`stage=detail&notReached=intro`, 'notReached', '"intro" must come after stage "detail"'],
        [`stage=detail&activeWithin=7x`, 'activeWithin', 'not a duration'],
        [`stage=detail&limit=0`, 'limit', ''],
        [`stage=detail&limit=5000`, 'limit', 'at most 1000 per page'],
        [`stage=detail&cursor=not-a-cursor`, 'cursor', 'not one the API gave out'],
      ];
      for (const [query, path, message] of cases) {
        const res = await get(`/v1/topics/${T}/needs?${query}`);
        expect(res.status, query).toBe(400);
        const e = await errorOf(res);
        expect(e.code).toBe('invalid_parameter');
        expect(e.issues?.[0]?.path, query).toBe(path);
        expect(e.issues?.[0]?.message, query).toContain(message);
      }
      expect((await get('/v1/topics/product:nope/needs?stage=detail')).status).toBe(404);
    });

    it('pages through a long list by cursor without skipping or repeating anyone, also while histories change', async () => {
      const topic = 'product:paged';
      // 23 people at detail, with varied recency and intensity; 2 at intro who are not part of it.
      const records: BatchRecord[] = [];
      for (let i = 0; i < 23; i++) {
        const person = `pg-${String(i).padStart(2, '0')}`;
        records.push(rec(person, 0, NOW - (i + 1) * HOUR - MIN, { topic }));
        for (let k = 0; k <= i % 4; k++) records.push(rec(person, 1, NOW - (i + 1) * HOUR + k, { topic }));
      }
      records.push(rec('pg-intro-1', 0, NOW - HOUR, { topic }), rec('pg-intro-2', 0, NOW - HOUR, { topic }));
      await fold(records);
      const url = `/v1/topics/${topic}/needs?stage=detail&activeWithin=7d`;
      const whole = await json<{ needs: { person: string }[]; total: number }>(`${url}&limit=1000`);
      expect(whole.total).toBe(23);
      const order = whole.needs.map((n) => n.person);

      // Page 1 of 5, then the histories change under the pager.
      const first = await json<{ needs: { person: string }[]; total: number; nextCursor: string }>(`${url}&limit=5`);
      expect(first.total).toBe(23);
      expect(first.needs.map((n) => n.person)).toEqual(order.slice(0, 5));
      // The last of the list becomes the most active of all (it would now rank first),
      await fold(Array.from({ length: 6 }, (_, k) => rec(order[22]!, 1, NOW - 30 * MIN + k, { topic })));
      // a newcomer arrives at detail, one person on a later page buys, and one is erased.
      await fold([rec('pg-new', 1, NOW - MIN, { topic }), rec(order[10]!, 2, NOW - 20 * MIN, { topic })]);
      expect((await app.request(`/v1/people/${order[15]}`, { method: 'DELETE', headers: { authorization: `Bearer ${FULL_KEY}` } })).status).toBe(200);

      const seen = first.needs.map((n) => n.person);
      let cursor: string | null = first.nextCursor;
      let pages = 1;
      while (cursor) {
        const page: { needs: { person: string }[]; total: number; nextCursor: string | null } = await json(
          `${url}&limit=5&cursor=${encodeURIComponent(cursor)}`,
        );
        expect(page.total).toBe(23);
        seen.push(...page.needs.map((n) => n.person));
        cursor = page.nextCursor;
        pages++;
      }
      expect(pages).toBe(5);
      // Everyone of the first listing exactly once, in its order; the buyer and the erased are left out
      // (no longer a need), the newcomer waits for the next listing.
      expect(new Set(seen).size).toBe(seen.length);
      expect(seen).toEqual(order.filter((p) => p !== order[10] && p !== order[15]));
      // A fresh listing sees the change.
      const fresh = await json<{ needs: { person: string }[]; total: number }>(`${url}&limit=1000`);
      expect(fresh.total).toBe(22);
      expect(fresh.needs[0]!.person).toBe(order[22]);
      expect(fresh.needs.map((n) => n.person)).toContain('pg-new');

      // A cursor belongs to its query; one whose saved list is gone is refused with the reason.
      const again = await json<{ nextCursor: string }>(`${url}&limit=5`);
      const other = await get(`/v1/topics/${topic}/needs?stage=detail&activeWithin=30d&cursor=${encodeURIComponent(again.nextCursor)}`);
      expect(other.status).toBe(400);
      expect((await errorOf(other)).message).toContain('belongs to another query');
      const c = JSON.parse(Buffer.from(again.nextCursor, 'base64url').toString()) as Record<string, unknown>;
      const gone = Buffer.from(JSON.stringify({ ...c, r: 'A'.repeat(22) })).toString('base64url');
      const expired = await get(`${url}&cursor=${gone}`);
      expect(expired.status).toBe(400);
      expect((await errorOf(expired)).message).toContain('expired');
    });

    it('exports the same list as CSV, spreadsheet-safe', async () => {
      const topic = 'product:csv';
      const hostile = ['=HYPERLINK("http://evil.example","click")', '+49 30 1234', '-1+2', '@SUM(A1)', 'comma,person', 'quote"d', 'plain-person'];
      await fold(hostile.map((p, i) => rec(p, 1, NOW - (i + 1) * MIN, { topic, channel: i % 2 ? 'email' : 'web' })));
      const url = `/v1/topics/${topic}/needs?stage=detail`;
      const list = await json<{
        needs: {
          person: string;
          stage: string;
          lastActivity: string;
          stageReachedAt: string;
          interactions: number;
          channels: string[];
          score: number;
          ltv: { toDate: number; projected: number | null };
        }[];
      }>(url);
      const res = await get(url, { authorization: `Bearer ${FULL_KEY}`, accept: 'text/csv' });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/csv; charset=utf-8');
      expect(res.headers.get('content-disposition')).toMatch(/^attachment; filename="needs-product_csv-detail-2026-06-10\.csv"$/);
      expect(res.headers.get('x-total-count')).toBe('7');
      const text = await res.text();
      const rows = parseCsv(text);
      expect(rows[0]).toEqual([
        'person',
        'topic',
        'stage',
        'last_activity',
        'stage_reached_at',
        'interactions',
        'channels',
        'score',
        'ltv_to_date',
        'ltv_projected',
      ]);
      expect(rows.slice(1)).toEqual(
        list.needs.map((n) => [
          /^[=+\-@]/.test(n.person) ? `'${n.person}` : n.person,
          topic,
          n.stage,
          n.lastActivity,
          n.stageReachedAt,
          String(n.interactions),
          n.channels.join(';'),
          String(n.score),
          String(n.ltv.toDate),
          n.ltv.projected === null ? '' : String(n.ltv.projected),
        ]),
      );
      expect(text).toContain(`"'=HYPERLINK(""http://evil.example"",""click"")"`);
      expect(text).toContain('"comma,person"');
      // No cell a spreadsheet would evaluate.
      expect(rows.flat().filter((cell) => /^[=+\-@]/.test(cell))).toEqual([]);

      // With a limit, a page of it, and the next cursor in a header.
      const page = await get(`${url}&limit=3`, { authorization: `Bearer ${FULL_KEY}`, accept: 'text/csv' });
      const cursor = page.headers.get('x-next-cursor');
      expect(parseCsv(await page.text())).toHaveLength(4);
      const rest = await get(`${url}&limit=10&cursor=${encodeURIComponent(cursor!)}`, { authorization: `Bearer ${FULL_KEY}`, accept: 'text/csv' });
      expect(
        parseCsv(await rest.text())
          .slice(1)
          .map((r) => r[0]),
      ).toEqual(rows.slice(4).map((r) => r[0]));
      expect(rest.headers.get('x-next-cursor')).toBeNull();
    });

    it('streams a whole list of any length as CSV or NDJSON, in the order of the pages', async () => {
      const topic = 'product:stream';
      // More than one export chunk (1,000 rows), so the stream reads page after page.
      const records: BatchRecord[] = [];
      for (let i = 0; i < 2600; i++) {
        const person = `st-${String(i).padStart(4, '0')}`;
        records.push(rec(person, 1, NOW - ((i * 7919) % 2600) * MIN, { topic }));
        if (i % 3 === 0) records.push(rec(person, 1, NOW - ((i * 7919) % 2600) * MIN + 1, { topic }));
      }
      await fold(records);
      const url = `/v1/topics/${topic}/needs?stage=detail`;
      const paged: string[] = [];
      for (let cursor: string | null = null, first = true; first || cursor; first = false) {
        const page: { needs: { person: string }[]; nextCursor: string | null } = await json(
          `${url}&limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
        );
        paged.push(...page.needs.map((n) => n.person));
        cursor = page.nextCursor;
      }
      expect(paged).toHaveLength(2600);
      const csv = await get(url, { authorization: `Bearer ${FULL_KEY}`, accept: 'text/csv' });
      expect(csv.headers.get('x-total-count')).toBe('2600');
      expect(csv.headers.get('x-next-cursor')).toBeNull();
      const rows = parseCsv(await csv.text());
      expect(rows.slice(1).map((r) => r[0])).toEqual(paged);
      const nd = await get(url, { authorization: `Bearer ${FULL_KEY}`, accept: 'application/x-ndjson' });
      expect(nd.headers.get('content-type')).toBe('application/x-ndjson; charset=utf-8');
      const lines = (await nd.text())
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { person: string; score: number });
      expect(lines.map((l) => l.person)).toEqual(paged);
    });

    it('refuses a forged or altered cursor with a 400 that says why, never a 500', async () => {
      const url = `/v1/topics/${T}/needs?stage=intro&notReached=purchase&limit=1`;
      const first = await json<{ nextCursor: string }>(url);
      const c = JSON.parse(Buffer.from(first.nextCursor, 'base64url').toString()) as Record<string, unknown>;
      const forged = (patch: Record<string, unknown>) => Buffer.from(JSON.stringify({ ...c, ...patch })).toString('base64url');
      for (const patch of [
        { s: 1.5 },
        { s: '1e400' },
        { s: 2 ** 60 },
        { m: '' },
        { m: 'x'.repeat(129) },
        { r: '../../etc' },
        { t: -1 },
        { v: 1 },
        { n: 'now' },
      ]) {
        const res = await get(`${url}&cursor=${forged(patch)}`);
        expect(res.status, JSON.stringify(patch)).toBe(400);
        expect((await errorOf(res)).issues?.[0]?.path).toBe('cursor');
      }
      for (const raw of ['', '%00', 'e30', Buffer.from('[]').toString('base64url'), Buffer.from('null').toString('base64url')]) {
        const res = await get(`${url}&cursor=${raw}`);
        expect(res.status, raw).toBe(400);
      }
      // A cursor placed anywhere in a list it belongs to reads from there, never outside it.
      const anywhere = await get(`${url}&cursor=${forged({ s: 0, m: 'zzz' })}`);
      expect(anywhere.status).toBe(200);
    });
  });

  describe('GET /v1/transitions/stream', () => {
    it('streams live transitions as server-sent events, filtered by topic and stage', async () => {
      const ac = new AbortController();
      const res = await app.request(`/v1/transitions/stream?topic=${T}&to=detail`, { headers: { authorization: `Bearer ${READ_KEY}` }, signal: ac.signal });
      expect(res.status).toBe(200);
      const events = sseReader(res);
      expect(await events.next()).toEqual({
        event: 'ready',
        id: undefined,
        data: JSON.stringify({ topic: T, to: 'detail', audience: null, kinds: ['stage', 'stalled', 'entered', 'exited'] }),
      });
      const t = (id: string, topic: string, to: string): Transition => ({ id, person: 'zoe', topic, from: 'intro', to, at: NOW, channel: 'web' });
      feed.publish([t('x1', 'product:other', 'detail'), t('x2', T, 'purchase'), t('x3', T, 'detail')]);
      expect(await events.next()).toEqual({ event: 'transition', id: 'x3', data: JSON.stringify(t('x3', T, 'detail')) });
      ac.abort();
      await events.cancel();
    });

    it('refuses a bad filter (400), and answers 503 where the process has no live feed', async () => {
      const bad = await get('/v1/transitions/stream?to=bought');
      expect(bad.status).toBe(400);
      expect((await errorOf(bad)).issues?.[0]?.path).toBe('to');
      const noFeed = createQueryApp({ store, logger: createLogger('test', 'silent') });
      const res = await noFeed.request('/v1/transitions/stream');
      expect(res.status).toBe(503);
      expect((await errorOf(res)).code).toBe('no_live_feed');
    });
  });

  describe('GET /v1/crm/model', () => {
    it('answers the fixed scale before a model, then the thresholds and parameters in force, which the person view uses', async () => {
      const none = await json<{ rfmScale: string; thresholds: unknown; ltv: unknown; computedAt: unknown; horizonDays: number; minSample: number }>(
        '/v1/crm/model',
      );
      expect(none).toMatchObject({ rfmScale: 'fixed', thresholds: null, ltv: null, computedAt: null, horizonDays: 365, minSample: 20 });
      const model: CrmModel = {
        computedAt: NOW - HOUR,
        purchasers: 120,
        n: 120,
        thresholds: { last: [NOW - 30 * DAY, NOW - 20 * DAY, NOW - 10 * DAY, NOW - 2 * DAY], count: [2, 2, 3, 5], total: [50, 100, 200, 400] },
        ltv: { bgNbd: { r: 0.8, alpha: 20, a: 1.6, b: 4 }, gammaGamma: { p: 6, q: 4, gamma: 15 }, n: 118, converged: true },
        medianValue: 30,
        excluded: { manyPurchases: 1, extremeValue: 1, nonPositiveValue: 0, noHistory: 0 },
        tookMs: 12,
      };
      await store.setCrmModel(model);
      const body = await json<Record<string, unknown>>('/v1/crm/model');
      expect(body).toMatchObject({
        rfmScale: 'quantiles',
        thresholds: { lastPurchase: model.thresholds!.last.map((t) => new Date(t!).toISOString()), purchases: [2, 2, 3, 5], totalValue: [50, 100, 200, 400] },
        ltv: { model: 'bg-nbd+gamma-gamma', bgNbd: model.ltv!.bgNbd, gammaGamma: model.ltv!.gammaGamma, n: 118, converged: true },
        n: 120,
        computedAt: new Date(NOW - HOUR).toISOString(),
        excluded: model.excluded,
      });
      // carol: last purchase 3 days ago (4 of 5), one purchase (1), 129 (3).
      const carol = await json<{ rfmScale: string; rfmScores: unknown; ltv: { toDate: number; projected: number; model: string } }>('/v1/people/carol');
      expect(carol.rfmScale).toBe('quantiles');
      expect(carol.rfmScores).toEqual({ recency: 4, frequency: 1, monetary: 3, code: '413' });
      expect(carol.ltv).toMatchObject({ toDate: 129, horizonDays: 365, model: 'bg-nbd+gamma-gamma' });
      expect(carol.ltv.projected).toBeGreaterThan(0);
      const exported = await json<{ ltv: unknown }>('/v1/people/carol/export');
      expect(exported.ltv).toEqual(carol.ltv);
      expect((await get('/v1/crm/model', {})).status).toBe(401);
    });
  });

  describe('DELETE /v1/people/:person', () => {
    it('erases the person with their linked visitor ids from every answer; a second time finds nothing held', async () => {
      const res = await app.request('/v1/people/anon-7', { method: 'DELETE', headers: { authorization: `Bearer ${FULL_KEY}` } });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ person: 'user-7', erasedIds: ['user-7', 'anon-7'], held: true, erasedAt: new Date(NOW).toISOString() });
      expect((await get('/v1/people/user-7')).status).toBe(404);
      expect((await get('/v1/people/anon-7')).status).toBe(404);
      const topics = await json<{ topics: { topic: string; people: number }[] }>('/v1/topics');
      expect(topics.topics.find((t) => t.topic === 'plan:pro')?.people).toBe(0);
      const again = await app.request('/v1/people/user-7', { method: 'DELETE', headers: { authorization: `Bearer ${FULL_KEY}` } });
      expect(again.status).toBe(200);
      expect(await again.json()).toMatchObject({ person: 'user-7', erasedIds: ['user-7'], held: false });
    });
  });
});
