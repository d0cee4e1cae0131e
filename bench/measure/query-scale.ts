/**
 * Query at scale: one topic with `queryPeople` people (1,000,000; 200,000 with --quick), written by
 * the store's own batch path (HistoryStore.foldBatch, what the worker calls), on Redis and on the
 * in-memory store; then, through the query API (createQueryApp, in this process: the API process
 * the figures are about), the latency of the first page of needs, of a page 10,000 deep, of the
 * funnel (whole and a 7-day window, p50 and p99), and the CSV export of the whole list with the memory it takes.
 *
 *   npm run bench -- --only query [--quick]
 *
 * The people: last active over 30 days, everyone at intro, 75% went on to detail (1 to 4 views),
 * 5% of those to purchase. The needs list read is detail-not-purchase (about 710,000 people).
 */
import { Redis } from 'ioredis';
import { createLogger } from '../../lib/logger.js';
import type { FoldOptions } from '../../history/fold/fold.js';
import type { BatchRecord } from '../../history/fold/person-batch.js';
import { createQueryApp } from '../../history/query/app.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { RedisHistoryStore } from '../../history/store/redis.js';
import type { HistoryStore } from '../../history/store/store.js';
import type { Services } from '../harness.js';
import { percentile, sleep } from '../lib.js';
import { log, round, type Figure } from '../report.js';
import type { Settings } from '../settings.js';
import { meets, targetText, TARGETS } from '../targets.js';

const OPTIONS: FoldOptions = { ladder: ['intro', 'detail', 'purchase'], quietMs: 30 * 86_400_000, seenSize: 32 };
const TOPIC = 'product:scale';
const DAY = 86_400_000;
/** Records per foldBatch call (the worker's batches are of this order). */
const BATCH = 4000;
/** Latency samples per figure. */
const SAMPLES = 200;

export interface QueryScaleResult {
  figures: Record<string, Figure[]>;
  details: { queryScale: Record<string, unknown> };
}

/** The records of people [from, to), deterministic. */
function recordsOf(from: number, to: number, now: number, offset: { n: number }): BatchRecord[] {
  const out: BatchRecord[] = [];
  for (let i = from; i < to; i++) {
    // A cheap deterministic spread (no Math.random: the same population every run).
    const h = Math.imul(i ^ 0x9e3779b9, 0x85ebca6b) >>> 0;
    const last = now - (h % (30 * DAY));
    const person = `qs-${i}`;
    const ev = (stage: number, ts: number, k: number) => ({
      offset: offset.n++,
      person,
      event: { id: `${person}-${k}`, ts, channel: 'web', topic: TOPIC, stage },
    });
    out.push(ev(0, last - 60_000, 0));
    if (h % 4 !== 0) {
      const views = 1 + ((h >>> 8) % 4);
      for (let k = 0; k < views; k++) out.push(ev(1, last - views + k, 1 + k));
      if ((h >>> 12) % 20 === 0) out.push(ev(2, last, 9));
    }
  }
  return out;
}

async function populate(store: HistoryStore, people: number, now: number): Promise<number> {
  const t0 = performance.now();
  const offset = { n: 0 };
  const perBatch = Math.floor(BATCH / 2);
  for (let i = 0; i < people; i += perBatch) {
    const outcome = await store.foldBatch('qs/0', recordsOf(i, Math.min(people, i + perBatch), now, offset));
    await outcome.published();
    if (i % 100_000 < perBatch) log(`query at scale: ${i.toLocaleString('en-US')} people written`);
  }
  return (performance.now() - t0) / 1000;
}

/** Latencies (ms) of `n` sequential calls, after a few not counted (scripts loaded, code compiled). */
async function timed(n: number, call: () => Promise<void>): Promise<number[]> {
  for (let i = 0; i < 5; i++) await call();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await call();
    out.push(performance.now() - t);
  }
  return out.sort((a, b) => a - b);
}

async function measureOn(kind: 'Redis' | 'in-memory', store: HistoryStore, s: Settings): Promise<{ figures: Figure[]; details: Record<string, unknown> }> {
  const now = Date.now();
  const people = s.queryPeople;
  log(`query at scale (${kind}): writing ${people.toLocaleString('en-US')} people on ${TOPIC} through the store's batch fold…`);
  const writeSeconds = await populate(store, people, now);
  const app = createQueryApp({ store, logger: createLogger('bench', 'silent'), now: () => now });
  const base = `/v1/topics/${encodeURIComponent(TOPIC)}`;
  const get = async (path: string, accept = 'application/json') => {
    const res = await app.request(path, { headers: { accept } });
    if (res.status !== 200) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return res;
  };
  const needs = `${base}/needs?stage=detail`;

  const first = await timed(SAMPLES, async () => {
    await (await get(`${needs}&limit=50`)).json();
  });
  // A cursor 10,000 deep (10 pages of 1,000), then that page of 50 read again and again.
  let cursor = '';
  let total = 0;
  for (let depth = 0; depth < 10_000; depth += 1000) {
    const page = (await (await get(`${needs}&limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)).json()) as {
      nextCursor: string;
      total: number;
    };
    cursor = page.nextCursor;
    total = page.total;
  }
  const deep = await timed(SAMPLES, async () => {
    await (await get(`${needs}&limit=50&cursor=${encodeURIComponent(cursor)}`)).json();
  });
  const funnel = await timed(50, async () => {
    await (await get(`${base}/funnel`)).json();
  });
  const funnelWeek = await timed(50, async () => {
    await (await get(`${base}/funnel?since=7d`)).json();
  });

  // The CSV export of the whole list, read as a client would, with the process's memory sampled.
  global.gc?.();
  await sleep(100);
  const rssBefore = process.memoryUsage().rss;
  const heapBefore = process.memoryUsage().heapUsed;
  let rssPeak = rssBefore;
  let heapPeak = heapBefore;
  // Sampled as the body is read (with the in-memory store the export never yields to timers).
  const sample = () => {
    const m = process.memoryUsage();
    rssPeak = Math.max(rssPeak, m.rss);
    heapPeak = Math.max(heapPeak, m.heapUsed);
  };
  const t0 = performance.now();
  const res = await get(needs, 'text/csv');
  const reader = res.body!.getReader();
  let bytes = 0;
  let lines = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
    for (const b of value) if (b === 10) lines++;
    sample();
  }
  const csvSeconds = (performance.now() - t0) / 1000;
  const mib = (b: number) => round(b / 2 ** 20, 1);
  const key = kind === 'Redis' ? 'query.redis' : 'query.memory';
  const p = (xs: number[], q: number) => round(percentile(xs, q), 1);
  const figures: Figure[] = [
    {
      key: `${key}.firstPageP99`,
      what: `needs, first page of 50, ${kind}, ${people.toLocaleString('en-US')} people on one topic: p99 of ${SAMPLES}`,
      unit: 'ms',
      value: p(first, 99),
      target: targetText(TARGETS.queryPageP99),
      ok: meets(TARGETS.queryPageP99, p(first, 99)),
      note: `p50 ${p(first, 50)} ms; ${total.toLocaleString('en-US')} in the list`,
    },
    {
      key: `${key}.deepPageP99`,
      what: `needs, the page of 50 at 10,000 deep (by cursor), ${kind}: p99 of ${SAMPLES}`,
      unit: 'ms',
      value: p(deep, 99),
      target: targetText(TARGETS.queryPageP99),
      ok: meets(TARGETS.queryPageP99, p(deep, 99)),
      note: `p50 ${p(deep, 50)} ms`,
    },
    { key: `${key}.funnelP99`, what: `funnel of the topic, no window, ${kind}: p99 of 50`, unit: 'ms', value: p(funnel, 99), note: `p50 ${p(funnel, 50)} ms` },
    {
      key: `${key}.funnelWeekP99`,
      what: `funnel of the topic, since=7d (exact to the hour: the stages' hour counters summed), ${kind}: p99 of 50`,
      unit: 'ms',
      value: p(funnelWeek, 99),
      target: targetText(TARGETS.queryPageP99),
      ok: meets(TARGETS.queryPageP99, p(funnelWeek, 99)),
      note: `p50 ${p(funnelWeek, 50)} ms`,
    },
    {
      key: `${key}.writeSeconds`,
      what: `writing the people through HistoryStore.foldBatch (the fold and its index update, hour counters included), ${kind}`,
      unit: 's',
      value: round(writeSeconds, 1),
      note: `${round(people / writeSeconds)} people/s`,
    },
    {
      key: `${key}.csvSeconds`,
      what: `CSV export of the whole list, streamed, ${kind}`,
      unit: 's',
      value: round(csvSeconds, 1),
      note: `${(lines - 1).toLocaleString('en-US')} rows, ${mib(bytes)} MiB, ${round((lines - 1) / csvSeconds)} rows/s`,
    },
    {
      key: `${key}.csvMemory`,
      what: `API process memory while the CSV streams: peak heap used above the start of the export, ${kind}`,
      unit: 'MiB',
      value: mib(heapPeak - heapBefore),
      note: `RSS ${mib(rssBefore)} → peak ${mib(rssPeak)} MiB; the CSV itself is ${mib(bytes)} MiB`,
    },
  ];
  return {
    figures,
    details: { kind, people, writeSeconds: round(writeSeconds, 1), listTotal: total, csvRows: lines - 1, csvBytes: bytes, first, deep, funnel, funnelWeek },
  };
}

export async function measureQueryScale(services: Pick<Services, 'redis'>, s: Settings): Promise<QueryScaleResult> {
  const figures: Record<string, Figure[]> = {};
  const details: Record<string, unknown> = {};
  const redis = new Redis(services.redis.url);
  try {
    const ns = `qs-${Date.now()}:`;
    const r = await measureOn('Redis', new RedisHistoryStore(redis, OPTIONS, ns), s);
    figures.redis = r.figures;
    details.redis = { ...r.details, usedMemoryMiB: round(Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1]) / 2 ** 20, 1) };
    // Leave Redis as the other measurements expect it.
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${ns}*`, 'COUNT', 10_000);
      cursor = next;
      if (keys.length) await redis.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  {
    const store = new MemoryHistoryStore(OPTIONS);
    const m = await measureOn('in-memory', store, s);
    figures.memory = m.figures;
    details.memory = m.details;
  }
  return { figures, details: { queryScale: details } };
}
