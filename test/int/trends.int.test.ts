import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Trend } from '../../contract/query.js';
import type { Transition } from '../../contract/transition.js';
import { bucketOf, DAY_MS, DEFAULT_TREND_RETENTION, HOUR_MS, oldestKept, type TrendIncrement } from '../../history/crm/trends.js';
import type { FieldBackend } from '../../history/fold/fold-batch.js';
import type { BatchRecord } from '../../history/fold/person-batch.js';
import { createQueryApp } from '../../history/query/app.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { RedisHistoryStore } from '../../history/store/redis.js';
import { keys, type HistoryStore } from '../../history/store/store.js';
import { createLogger } from '../../lib/logger.js';
import { deleteNamespace } from '../support/redis-inspect.js';
import { redisClient } from '../support/services.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';
import { trendContract } from '../support/trend-contract.js';

// The trend contract on one Redis and on a local three-master cluster (the counters live in the
// topic's slot, the latest transitions in a key of their own).
for (const [name, mode] of [
  ['Redis', 'real'],
  ['Redis Cluster', 'cluster'],
] as const) {
  const redis = redisClient(mode);
  const namespaces: string[] = [];
  trendContract(
    name,
    async (clock) => {
      const ns = `tr-${randomUUID().slice(0, 8)}:`;
      namespaces.push(ns);
      const store = new RedisHistoryStore(redis, FOLD_OPTIONS, ns);
      store.clock = clock;
      return store;
    },
    async () => {
      for (const ns of namespaces) await deleteNamespace(redis, ns);
      redis.disconnect();
    },
  );
}

const backendOf = (store: HistoryStore) => (store as unknown as { backend: FieldBackend }).backend;

describe('trend counters in Redis: what they cost', () => {
  const redis = redisClient('real') as Redis;
  const ns = `trm-${randomUUID().slice(0, 8)}:`;
  afterAll(async () => {
    await deleteNamespace(redis, ns);
    redis.disconnect();
  });

  it('keeps a topic within its retention: every hour and day counted, measured with MEMORY USAGE', async () => {
    const store = new RedisHistoryStore(redis, FOLD_OPTIONS, ns);
    const now = Date.UTC(2026, 10, 30, 12);
    const increments: TrendIncrement[] = [];
    for (const g of ['hour', 'day'] as const) {
      for (let b = oldestKept(g, now); b <= bucketOf(now, g); b++) {
        // Busy counts (two and three digits per stage), so the values are as long as a busy topic's.
        FOLD_OPTIONS.ladder.forEach((stage, s) => {
          increments.push({ topic: 'product:busy', granularity: g, bucket: b, stage, by: 900 - 300 * s + (b % 7) });
        });
      }
    }
    const measure = async (topic: string) => {
      await backendOf(store).trend({ increments: increments.map((i) => ({ ...i, topic })), recent: [], now });
      const ks = [keys.trend(ns, topic, 'h'), keys.trend(ns, topic, 'd')];
      // Every bucket, plus `p`.
      expect(await redis.hlen(ks[0]!)).toBe(DEFAULT_TREND_RETENTION.hours + 1);
      expect(await redis.hlen(ks[1]!)).toBe(DEFAULT_TREND_RETENTION.days + 1);
      let bytes = 0;
      for (const k of ks) bytes += Number(await redis.call('MEMORY', 'USAGE', k, 'SAMPLES', '0'));
      return { bytes, encoding: await redis.object('ENCODING', ks[0]!) };
    };
    // redis-server's built-in limit (512 entries) keeps both hashes listpacks; the shipped
    // redis.conf's 128 makes them hashtables: the README gives both.
    const compact = await measure('product:busy');
    const limit = ((await redis.config('GET', 'hash-max-listpack-entries')) as string[])[1]!;
    await redis.config('SET', 'hash-max-listpack-entries', '128');
    const table = await measure('product:busy-128').finally(() => redis.config('SET', 'hash-max-listpack-entries', limit));
    console.log(
      `trend counters of one topic, every bucket of the retention counted (3 stages): ${compact.bytes} bytes (${compact.encoding}, hash-max-listpack-entries ${limit}), ${table.bytes} bytes (${table.encoding}, 128)`,
    );
    expect(compact.bytes).toBeLessThan(32 * 1024);
    expect(table.bytes).toBeLessThan(96 * 1024);
    const hourKey = keys.trend(ns, 'product:busy', 'h');
    // A new hour prunes the one that fell out; nothing else moves.
    await backendOf(store).trend({ increments: [], recent: [], now: now + HOUR_MS });
    await backendOf(store).trend({
      increments: [{ topic: 'product:busy', granularity: 'hour', bucket: bucketOf(now, 'hour') + 1, stage: 'intro', by: 1 }],
      recent: [],
      now: now + HOUR_MS,
    });
    expect(await redis.hlen(hourKey)).toBe(DEFAULT_TREND_RETENTION.hours + 1);
    expect(await redis.hget(hourKey, String(oldestKept('hour', now)))).toBeNull();
    expect(await redis.hget(hourKey, String(bucketOf(now, 'hour') + 1))).toBe('1,0,0');
  });
});

type Kind = 'Redis' | 'in-memory';

describe.each<Kind>(['Redis', 'in-memory'])('GET /v1/topics/{topic}/trend and /v1/transitions/recent on the %s store', (kind) => {
  const NOW = Date.UTC(2026, 10, 30, 12, 30);
  const ns = `tra-${randomUUID().slice(0, 8)}:`;
  let redis: Redis | undefined;
  let store: HistoryStore;
  let app: ReturnType<typeof createQueryApp>;
  const published: Transition[] = [];
  let offset = 0;
  const rec = (person: string, stage: number, at: number): BatchRecord => ({
    offset: offset++,
    person,
    event: { id: `ta-${offset}`, ts: at, channel: 'web', topic: 'product:t', stage },
  });

  beforeAll(async () => {
    if (kind === 'Redis') {
      redis = redisClient('real') as Redis;
      const r = new RedisHistoryStore(redis, FOLD_OPTIONS, ns);
      r.clock = () => NOW;
      store = r;
    } else {
      store = new MemoryHistoryStore(FOLD_OPTIONS, () => NOW);
    }
    app = createQueryApp({ store, logger: createLogger('test', 'silent'), dashboard: false, now: () => NOW });
    const o = await store.foldBatch('clicks.raw/0', [
      rec('a', 0, NOW - 3 * DAY_MS),
      rec('a', 1, NOW - 3 * DAY_MS + 1),
      rec('b', 0, NOW - 2 * HOUR_MS),
      rec('c', 0, NOW - 10 * 60_000),
      rec('c', 2, NOW - 5 * 60_000),
    ]);
    await o.published();
    published.push(...(o.transitions as Transition[]));
  });

  afterAll(async () => {
    if (redis) {
      await deleteNamespace(redis, ns);
      redis.disconnect();
    }
  });

  const get = (path: string) => app.request(path);
  const issues = async (res: Response) => ((await res.json()) as { error: { issues: { path: string }[] } }).error.issues.map((i) => i.path);

  it('answers the last 48 hours by default, every hour present, counts by stage', async () => {
    const res = await get('/v1/topics/product:t/trend');
    expect(res.status).toBe(200);
    const body = Trend.parse(await res.json());
    expect(body.by).toBe('hour');
    expect(body.buckets).toHaveLength(48);
    expect(body.until).toBe('2026-11-30T12:59:59.999Z');
    expect(body.since).toBe('2026-11-28T13:00:00.000Z');
    expect(body.buckets.at(-1)).toEqual({ start: '2026-11-30T12:00:00.000Z', counts: { intro: 1, detail: 0, purchase: 1 } });
    expect(body.buckets.at(-3)).toEqual({ start: '2026-11-30T10:00:00.000Z', counts: { intro: 1, detail: 0, purchase: 0 } });
    expect(body.buckets.reduce((n, b) => n + b.counts.intro! + b.counts.detail! + b.counts.purchase!, 0)).toBe(3);
  });

  it('answers by day over a window, and leaves out what lies after now', async () => {
    const body = Trend.parse(await (await get('/v1/topics/product:t/trend?by=day&since=2026-11-25&until=2026-12-05')).json());
    expect(body.since).toBe('2026-11-25T00:00:00.000Z');
    expect(body.until).toBe('2026-11-30T23:59:59.999Z');
    expect(body.buckets.map((b) => [b.start.slice(0, 10), b.counts.intro, b.counts.detail, b.counts.purchase])).toEqual([
      ['2026-11-25', 0, 0, 0],
      ['2026-11-26', 0, 0, 0],
      ['2026-11-27', 1, 1, 0],
      ['2026-11-28', 0, 0, 0],
      ['2026-11-29', 0, 0, 0],
      ['2026-11-30', 2, 0, 1],
    ]);
  });

  it('refuses a window longer than the retention, one that ends before it starts, and an unknown grain; 404 for an unknown topic', async () => {
    const long = await get('/v1/topics/product:t/trend?by=hour&since=15d');
    expect(long.status).toBe(400);
    expect(await issues(long)).toEqual(['since']);
    expect((await get('/v1/topics/product:t/trend?by=hour&since=14d')).status).toBe(200);
    expect((await get('/v1/topics/product:t/trend?by=day&since=401d')).status).toBe(400);
    expect((await get('/v1/topics/product:t/trend?by=day&since=399d')).status).toBe(200);
    expect((await get('/v1/topics/product:t/trend?since=1d&until=2d')).status).toBe(400);
    expect((await get('/v1/topics/product:t/trend?by=week')).status).toBe(400);
    expect((await get('/v1/topics/product:t/trend?since=yesterday')).status).toBe(400);
    expect((await get('/v1/topics/product:nope/trend')).status).toBe(404);
  });

  it('answers an empty series for a window wholly past the retention', async () => {
    const body = Trend.parse(await (await get('/v1/topics/product:t/trend?by=hour&since=2026-10-01&until=2026-10-02')).json());
    expect(body.buckets).toEqual([]);
    expect(body.since).toBe('2026-10-01T00:00:00.000Z');
  });

  it('lists the latest transitions, newest first', async () => {
    const res = await get('/v1/transitions/recent?limit=2');
    expect(res.status).toBe(200);
    const body = (await res.json()) as { transitions: Transition[] };
    const newest = [...published].sort((a, b) => b.at - a.at);
    expect(body.transitions).toEqual(newest.slice(0, 2));
    expect(((await (await get('/v1/transitions/recent')).json()) as { transitions: Transition[] }).transitions).toHaveLength(published.length);
    expect((await get('/v1/transitions/recent?limit=0')).status).toBe(400);
    expect((await get('/v1/transitions/recent?limit=51')).status).toBe(400);
  });
});
