import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Clients } from '../support/http-clients.js';
import { spawnLogged, type LoggedProcess } from '../support/process-log.js';
import { kafkaBrokers, redisUrl } from '../support/services.js';

/**
 * SIGTERM stops every process within its grace period plus a second, whatever its clients do:
 * the dashboard's live feed and a browser reconnecting it on its kept-alive connection, an idle
 * kept-alive connection, a request still arriving (it is answered), one that never finishes (it is
 * cut at the end of the grace period).
 */
const GRACE_MS = 3000;
const KEY = `shutdown-key-${randomUUID()}`;
const tag = () => randomUUID().slice(0, 8);

interface Case {
  name: string;
  script: string;
  env: () => Record<string, string>;
  ready: RegExp;
  /** Event streams it serves (the dashboard's live feed), with the headers they need. */
  streams: { path: string; headers: Record<string, string> }[];
  /** A request it answers, written as a slow client sends it: head first, the rest after SIGTERM. */
  slow: { head: string; rest: string; status: number };
}

const collect = (visitor: string) =>
  JSON.stringify({ site: 'demo', visitor, events: [{ id: `${visitor}-1`, type: 'page', ts: Date.now(), url: 'https://shop.example/products/sku-1' }] });
const slowCollect = (visitor: string) => {
  const body = collect(visitor);
  return {
    head: `POST /v1/collect HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, 20)}`,
    rest: body.slice(20),
    status: 202,
  };
};
const slowHealth = { head: 'GET /healthz HTTP/1.1\r\nHost: x\r\n', rest: '\r\n', status: 200 };
const real = () => ({
  KAFKA_BROKERS: kafkaBrokers(),
  REDIS_URL: redisUrl(),
  KAFKA_PARTITIONS: '3',
  KAFKA_GROUP_ID: `shutdown-${tag()}`,
  REDIS_PREFIX: `shutdown-${tag()}:`,
});
const stream = (headers: Record<string, string> = {}) => ({ path: '/v1/transitions/stream', headers });

const dirs: string[] = [];
const cases: Case[] = [
  {
    name: 'npm start (all-in-one, embedded, with a data directory)',
    script: 'apps/all-in-one.ts',
    env: () => {
      const dir = mkdtempSync(join(tmpdir(), 'clickfold-shutdown-'));
      dirs.push(dir);
      // Embedded, whatever the test run's environment points at.
      return { DATA_DIR: join(dir, 'data'), KAFKA_BROKERS: '', REDIS_URL: '', REDIS_CLUSTER_NODES: '' };
    },
    ready: /clickfold is running/,
    streams: [stream()],
    slow: slowCollect('v-shutdown-aio'),
  },
  {
    name: 'npm run api',
    script: 'apps/api.ts',
    env: () => ({ ...real(), API_KEYS: KEY }),
    ready: /query API is listening/,
    streams: [stream({ authorization: `Bearer ${KEY}` })],
    slow: slowHealth,
  },
  {
    name: 'ingest',
    script: 'apps/ingest.ts',
    env: () => ({ KAFKA_BROKERS: kafkaBrokers(), KAFKA_PARTITIONS: '3' }),
    ready: /ingest is listening/,
    streams: [],
    slow: slowCollect('v-shutdown-ingest'),
  },
  {
    // With Redis it also serves the visitor API (reads Redis, follows history.transitions).
    name: 'ingest with Redis',
    script: 'apps/ingest.ts',
    env: () => real(),
    ready: /ingest is listening/,
    streams: [],
    slow: slowCollect('v-shutdown-ingest-redis'),
  },
  {
    name: 'npm run worker (its probes)',
    script: 'apps/worker.ts',
    env: () => ({ ...real(), WORKER_PORT: '0' }),
    ready: /worker probes are listening/,
    streams: [],
    slow: slowHealth,
  },
];

describe.each(cases)('SIGTERM: $name', (c) => {
  const clients = new Clients();
  let proc: LoggedProcess | undefined;
  afterEach(async () => {
    clients.close();
    proc?.proc.kill('SIGKILL');
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it(`exits within the grace period (${GRACE_MS} ms) plus a second, answering what was in flight`, async () => {
    const p = (proc = spawnLogged(c.script, { PORT: '0', HOST: '127.0.0.1', INGEST_SHUTDOWN_GRACE_MS: String(GRACE_MS), ...c.env() }));
    const url = String((await p.line(c.ready)).url);
    if (c.script === 'apps/worker.ts') await p.line(/worker is folding/);

    await clients.idle(url, '/healthz');
    const streams = await Promise.all(c.streams.map((s) => clients.stream(url, s.path, s.headers)));
    const browsers = c.streams.map((s) => clients.reconnecting(url, s.path, s.headers));
    const slow = clients.raw(url, c.slow.head);
    // Its headers never end: only the end of the grace period ends it.
    const stalled = clients.raw(url, 'GET /healthz HTTP/1.1\r\nHost: x\r\n');
    await new Promise((r) => setTimeout(r, 200));

    const t0 = performance.now();
    p.proc.kill('SIGTERM');
    await p.line(/shutting down/);
    // Streams end at once, not at the end of the grace period: they are over before the slow client finishes.
    for (const s of streams) expect(await s.ended).toBeDefined();
    slow.send(c.slow.rest);
    const answer = await slow.answer;
    expect(answer?.split('\r\n')[0]).toBe(`HTTP/1.1 ${c.slow.status} ${c.slow.status === 202 ? 'Accepted' : 'OK'}`);
    expect(answer).toMatch(/\r\nconnection: close\r\n/i);

    const code = await p.exited;
    const elapsed = performance.now() - t0;
    expect(await stalled.answer).toBeNull();
    for (const b of browsers) b.stop();
    await Promise.all(browsers.map((b) => b.running));
    expect({ code, withinDeadline: elapsed <= GRACE_MS + 1000 }).toEqual({ code: 0, withinDeadline: true });
    expect(p.lines.some((l) => l.msg === 'stopped cleanly')).toBe(true);
  });
});
