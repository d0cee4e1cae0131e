import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startHostileIngests,
  RUN,
  BAD_REQUESTS,
  CONCURRENCY,
  goodCollectEvent,
  json,
  collectBody,
  badCase,
  goodCase,
  RAW_ABUSE,
  rawRequest,
  readBack,
  type Case,
} from '../support/hostile-http.js';

/**
 * More than 10,000 generated hostile requests mixed with valid ones, over real HTTP (keep-alive,
 * modest concurrency) into ingest on the run's real Kafka. Every bad request gets a 4xx, the
 * process stays up, every valid event is on clicks.raw exactly once, and every rejection is on
 * clicks.invalid with its reason (matched by the X-Request-Id each request carries).
 */
type Env = Awaited<ReturnType<typeof startHostileIngests>>;

describe('hostile input over HTTP into real Kafka', () => {
  let env: Env;
  let port: Env['port'];
  let url: Env['url'];
  let metrics: Env['metrics'];
  beforeAll(async () => {
    env = await startHostileIngests();
    ({ port, url, metrics } = env);
  });
  afterAll(async () => {
    await env?.stop();
  });

  it(`answers ${BAD_REQUESTS}+ bad requests with 4xx, keeps every valid event exactly once and dead-letters every rejection`, async () => {
    const cases: Case[] = [];
    for (let i = 0; i < BAD_REQUESTS; i++) {
      cases.push(badCase());
      if (i % 5 === 0) cases.push(goodCase());
    }

    const failures: string[] = [];
    let next = 0;
    const worker = async () => {
      while (next < cases.length) {
        const i = next++;
        const k = cases[i]!;
        const rid = `h${RUN}-${i}`;
        let status = 0;
        try {
          const res = await fetch(`${url}${k.path}`, { method: k.method, headers: { ...k.headers, 'x-request-id': rid }, body: k.body, redirect: 'manual' });
          status = res.status;
          await res.arrayBuffer();
        } catch (err) {
          failures.push(`${i} ${k.kind}: ${(err as Error).message}`);
          continue;
        }
        if (status !== k.status) failures.push(`${i} ${k.kind}: status ${status}, expected ${k.status}`);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const rawStatuses = await Promise.all(RAW_ABUSE.map((a) => rawRequest(port, a)));

    expect(failures.slice(0, 30)).toEqual([]);
    RAW_ABUSE.forEach((a, i) => {
      const s = rawStatuses[i]!;
      expect(a.hangUp ? s === 0 : s >= 400 && s < 500, `raw abuse ${i} answered ${s}`).toBe(true);
    });
    // The process is still up and still accepting.
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const final = goodCollectEvent();
    expect((await fetch(`${url}/v1/collect`, { method: 'POST', headers: json, body: JSON.stringify(collectBody([final])) })).status).toBe(202);

    const bad = cases.filter((k) => k.status >= 400);
    expect(bad.length).toBeGreaterThanOrEqual(BAD_REQUESTS);
    expect(bad.every((k) => k.status < 500)).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();

    const back = await readBack();
    // Every valid event exactly once, and nothing else of this run's site.
    const validIds = new Set([...cases.flatMap((k) => (k.kind === 'good pixel' ? [] : k.valid)), final.id]);
    const campaigns = new Set(cases.filter((k) => k.kind === 'good pixel').flatMap((k) => k.valid));
    const missing = [...validIds].filter((v) => !back.raw.has(v));
    const duplicated = [...back.raw].filter(([, n]) => n > 1).map(([v]) => v);
    const unexpected = [...back.raw.keys()].filter((v) => !validIds.has(v) && !v.startsWith('eo-'));
    expect({ missing: missing.slice(0, 10), duplicated: duplicated.slice(0, 10), unexpected: unexpected.slice(0, 10) }).toEqual({
      missing: [],
      duplicated: [],
      unexpected: [],
    });
    expect([...campaigns].filter((c) => back.campaigns.get(c) !== 1)).toEqual([]);
    expect(back.raw.size).toBe(validIds.size + campaigns.size);

    // Every rejection on clicks.invalid with its reason; nothing else dead-lettered.
    const wrong: string[] = [];
    cases.forEach((k, i) => {
      const got = (back.dead.get(`h${RUN}-${i}`) ?? []).map(([idx, r]) => `${idx}:${r}`).sort();
      const want = k.dead.map(([idx, r]) => `${idx}:${r}`).sort();
      if (got.join() !== want.join()) wrong.push(`${i} ${k.kind}: dead letters [${got.join(' ')}], expected [${want.join(' ')}]`);
    });
    for (const rid of ['raw-chunk', 'raw-cut'])
      if (back.dead.get(`h${RUN}-${rid}`)?.[0]?.[1] !== 'unreadable_body') wrong.push(`${rid}: ${JSON.stringify(back.dead.get(`h${RUN}-${rid}`))}`);
    expect(wrong.slice(0, 20)).toEqual([]);

    const text = await metrics.registry.metrics();
    const accepted = [...text.matchAll(/^clickfold_ingest_events_accepted_total\{route="[^"]+"\} (\d+)$/gm)].reduce((s, m) => s + Number(m[1]), 0);
    expect(accepted).toBe(validIds.size + campaigns.size);
    expect(text.split('\n').filter((l) => /status="5\d\d"/.test(l))).toEqual([]);
  }, 600_000);
});
