import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CrmModel, ltvOf } from '../../history/crm/model.js';
import type { Rfm } from '../../history/fold/fold.js';
import type { BatchRecord } from '../../history/fold/person-batch.js';
import { createQueryApp } from '../../history/query/app.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { RedisHistoryStore } from '../../history/store/redis.js';
import type { HistoryStore } from '../../history/store/store.js';
import { LiveFeed } from '../../history/transitions/live-feed.js';
import { createLogger } from '../../lib/logger.js';
import { parseCsv } from '../support/http-readers.js';
import { redisUrl } from '../support/services.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';

/**
 * Lifetime value in the needs list (issue 18): every row carries `ltv {toDate, projected}`, `minLtv`
 * filters each page as `signal` does, the exports carry both columns, and the order stays the
 * ranking's. Purchases are folded as the worker does, the model is a stored one with known
 * parameters, and the API's clock is fixed, so every value is exact.
 */
const KEY = 'full-key-0123456789abcdef';
const NOW = Date.UTC(2026, 5, 30, 12);
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const TOPIC = 'product:needs-ltv';
const HORIZON = 365;

/** A fitted model (the parameters test/int/crm-model.int.test.ts recovers); medianValue 50 puts a mean of 1e6 per purchase out of the fit. */
const MODEL: CrmModel = {
  computedAt: NOW - HOUR,
  purchasers: 200,
  n: 200,
  thresholds: null,
  ltv: { bgNbd: { r: 0.8, alpha: 20, a: 1.6, b: 4 }, gammaGamma: { p: 6, q: 4, gamma: 15 }, n: 200, converged: true },
  medianValue: 50,
  excluded: { manyPurchases: 0, extremeValue: 0, nonPositiveValue: 0, noHistory: 0 },
  tookMs: 1,
};

/** Purchases (day before NOW, value) per person; everyone also stands at detail on TOPIC, `big` the most recent. */
const PURCHASES: Record<string, [number, number][]> = {
  big: [
    [200, 100],
    [150, 100],
    [100, 100],
    [50, 100],
    [10, 100],
  ],
  small: [[100, 20]],
  none: [],
  whale: [[30, 1e6]],
};
const PEOPLE = ['big', 'small', 'none', 'whale'];

const rfmOf = (person: string): Rfm | null => {
  const ps = PURCHASES[person]!;
  if (ps.length === 0) return null;
  const times = ps.map(([d]) => NOW - d * DAY);
  return { first: Math.min(...times), last: Math.max(...times), count: ps.length, total: ps.reduce((s, [, v]) => s + v, 0) };
};
const expected = (person: string, model: CrmModel | null) => {
  const v = ltvOf(model, rfmOf(person), NOW, HORIZON);
  return { toDate: v.toDate, projected: v.projected };
};

type Row = { person: string; score: number; ltv: { toDate: number; projected: number | null } };
type Page = { needs: Row[]; total: number; nextCursor: string | null };

for (const kind of ['memory', 'Redis'] as const) {
  describe(`needs with lifetime value on the ${kind} store`, () => {
    let redis: Redis | undefined;
    const ns = `nl-${randomUUID().slice(0, 8)}:`;
    let store: HistoryStore;
    let app: ReturnType<typeof createQueryApp>;

    const get = (path: string, accept?: string) => app.request(path, { headers: { authorization: `Bearer ${KEY}`, ...(accept ? { accept } : {}) } });
    const json = async <T>(path: string): Promise<T> => {
      const res = await get(path);
      expect(res.status, `${path}: ${await res.clone().text()}`).toBe(200);
      return (await res.json()) as T;
    };
    /** Every row of the list, page by page of `limit`. */
    const allPages = async (url: string, limit: number) => {
      const rows: Row[] = [];
      const sizes: number[] = [];
      for (let cursor: string | null = null, first = true; first || cursor; first = false) {
        const page: Page = await json(`${url}&limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        rows.push(...page.needs);
        sizes.push(page.needs.length);
        cursor = page.nextCursor;
      }
      return { rows, sizes };
    };

    beforeAll(async () => {
      if (kind === 'Redis') {
        redis = new Redis(redisUrl());
        const s = new RedisHistoryStore(redis, FOLD_OPTIONS, ns);
        s.clock = () => NOW;
        store = s;
      } else {
        store = new MemoryHistoryStore(FOLD_OPTIONS, () => NOW);
      }
      app = createQueryApp({
        store,
        logger: createLogger('test', 'silent'),
        feed: new LiveFeed(),
        keys: { full: [KEY], read: [] },
        now: () => NOW,
        crm: { horizonDays: HORIZON, everySeconds: 600 },
      });
      const records: BatchRecord[] = [];
      let offset = 0;
      PEOPLE.forEach((person, i) => {
        PURCHASES[person]!.forEach(([d, value], k) => {
          records.push({
            offset: offset++,
            person,
            event: { id: `${person}-buy-${k}`, ts: NOW - d * DAY, channel: 'web', topic: 'product:bought', stage: 2, value },
          });
        });
        records.push({ offset: offset++, person, event: { id: `${person}-look`, ts: NOW - (i + 1) * HOUR, channel: 'web', topic: TOPIC, stage: 1 } });
      });
      await (await store.foldBatch('clicks.raw/0', records)).published();
    });

    afterAll(async () => {
      if (redis) {
        const found = await redis.keys(`${ns}*`);
        if (found.length) await redis.del(...found);
        redis.disconnect();
      }
    });

    const url = `/v1/topics/${TOPIC}/needs?stage=detail`;

    it('carries each person’s value to date, and no projection before a model is fitted; minLtv then compares the value to date', async () => {
      expect(await store.crmModel()).toBeNull();
      const page = await json<Page>(url);
      expect(page.needs.map((n) => n.person)).toEqual(PEOPLE);
      expect(page.needs.map((n) => n.ltv)).toEqual(PEOPLE.map((p) => expected(p, null)));
      expect(page.needs.find((n) => n.person === 'big')!.ltv).toEqual({ toDate: 500, projected: null });
      const rich = await json<Page>(`${url}&minLtv=100`);
      expect(rich.needs.map((n) => n.person)).toEqual(['big', 'whale']);
      expect(rich.total).toBe(4);
      expect((await json<Page>(`${url}&minLtv=0`)).needs).toHaveLength(4);
    });

    it('with a fitted model, carries the projection; minLtv compares it (the value to date for a history the fit leaves out)', async () => {
      await store.setCrmModel(MODEL);
      const page = await json<Page>(url);
      // The order is the ranking's, whatever the values.
      expect(page.needs.map((n) => n.person)).toEqual(PEOPLE);
      const want = PEOPLE.map((p) => expected(p, MODEL));
      expect(page.needs.map((n) => n.ltv)).toEqual(want);
      const [big, small, none, whale] = want;
      expect(big!.projected).toBeGreaterThan(small!.projected!);
      expect(small!.projected).toBeGreaterThan(0);
      expect(none).toEqual({ toDate: 0, projected: 0 });
      expect(whale).toEqual({ toDate: 1e6, projected: null });

      const between = Math.round(((big!.projected! + small!.projected!) / 2) * 100) / 100;
      const rich = await json<Page>(`${url}&minLtv=${between}`);
      expect(rich.needs.map((n) => n.person)).toEqual(['big', 'whale']);
      expect((await json<Page>(`${url}&minLtv=${small!.projected}`)).needs.map((n) => n.person)).toEqual(['big', 'small', 'whale']);
      expect((await json<Page>(`${url}&minLtv=2000000`)).needs).toEqual([]);

      // Page by page: a page may hold fewer rows than the limit (none, even) while the cursor leads on; together, the filtered list.
      const paged = await allPages(`${url}&minLtv=${between}`, 1);
      expect(paged.rows.map((n) => n.person)).toEqual(['big', 'whale']);
      expect(paged.sizes).toEqual([1, 0, 0, 1]);
      // A cursor belongs to its minLtv.
      const first = await json<Page>(`${url}&minLtv=${between}&limit=1`);
      const other = await get(`${url}&limit=1&cursor=${encodeURIComponent(first.nextCursor!)}`);
      expect(other.status).toBe(400);
      expect(((await other.json()) as { error: { message: string } }).error.message).toContain('minLtv');
    });

    it('exports both values as CSV and NDJSON, a page or the whole list, filtered by minLtv', async () => {
      await store.setCrmModel(MODEL);
      const res = await get(url, 'text/csv');
      expect(res.status).toBe(200);
      const rows = parseCsv(await res.text());
      expect(rows[0]!.slice(-2)).toEqual(['ltv_to_date', 'ltv_projected']);
      expect(rows.slice(1).map((r) => [r[0], r.at(-2), r.at(-1)])).toEqual(
        PEOPLE.map((p) => {
          const v = expected(p, MODEL);
          return [p, String(v.toDate), v.projected === null ? '' : String(v.projected)];
        }),
      );
      const page = await get(`${url}&limit=2`, 'text/csv');
      expect(parseCsv(await page.text()).map((r) => r.at(-1))).toEqual([
        'ltv_projected',
        String(expected('big', MODEL).projected),
        String(expected('small', MODEL).projected),
      ]);

      const nd = await get(`${url}&minLtv=100`, 'application/x-ndjson');
      expect(nd.status).toBe(200);
      const lines = (await nd.text())
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Row);
      expect(lines.map((l) => [l.person, l.ltv])).toEqual(['big', 'whale'].map((p) => [p, expected(p, MODEL)]));
    });

    it('refuses a bad minLtv and any sort with a 400 that names the parameter', async () => {
      for (const bad of ['abc', '-1', '1e3', '', '12.', 'NaN', 'Infinity']) {
        const res = await get(`${url}&minLtv=${encodeURIComponent(bad)}`);
        expect(res.status, bad).toBe(400);
        expect(JSON.stringify(await res.json())).toContain('minLtv');
      }
      const sorted = await get(`${url}&sort=ltv`);
      expect(sorted.status).toBe(400);
      const err = ((await sorted.json()) as { error: { issues: { path: string }[] } }).error;
      expect(err.issues[0]!.path).toBe('sort');
    });
  });
}
