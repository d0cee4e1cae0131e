import type { ServerType } from '@hono/node-server';
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOPICS } from '../../contract/raw-event.js';
import { createIngestApp } from '../../ingest/app.js';
import { createIngestMetrics } from '../../ingest/metrics.js';
import { compileSites, SitesFile } from '../../ingest/sites.js';
import { createKafka, ensureTopics, KafkaLogProducer } from '../../lib/kafka.js';
import { createLogger } from '../../lib/logger.js';
import { clientIpResolver, closeServer, listen } from '../../lib/serve.js';
import { kafkaBrokers } from '../support/services.js';

/**
 * More than 10,000 generated hostile requests mixed with valid ones, over real HTTP (keep-alive,
 * modest concurrency) into ingest on the run's real Kafka. Every bad request gets a 4xx, the
 * process stays up, every valid event is on clicks.raw exactly once, and every rejection is on
 * clicks.invalid with its reason (matched by the X-Request-Id each request carries).
 */
const RUN = randomUUID().slice(0, 8);
const SITE = `hostile-${RUN}`;
const KEY = `wk_hostile_${RUN}`;
const ORIGIN = 'https://good.example';
const MAX_BODY = 64 * 1024;
const BAD_REQUESTS = 10_500;
const CONCURRENCY = 12;

/** What one generated request must produce. */
interface Case {
  kind: string;
  method: 'POST' | 'GET';
  path: string;
  headers: Record<string, string>;
  body?: string | Uint8Array;
  /** Exact status. */
  status: number;
  /** Dead letters expected for this request: `[index or -1 for the whole request, reason]`. */
  dead: [number, string][];
  /** Event ids (or e-mail campaigns) that must be on clicks.raw exactly once. */
  valid: string[];
}

// A small deterministic PRNG, so a failure can be replayed.
let seed = 0x9e3779b9;
const rnd = () => ((seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;

const basic = (key: string) => `Basic ${Buffer.from(`${key}:`).toString('base64')}`;
const HOSTILE_TEXT = ['<script>alert(1)</script>', '\u0000\u0001\u001f', '\u202e\u200b', "'; DROP TABLE x;--", '😀'.repeat(20), '{{7*7}}${7*7}', '..\\..\\etc\\passwd'];

let seq = 0;
const id = () => `${RUN}-${++seq}`;
const goodCollectEvent = () => {
  const e = { id: id(), ts: Date.now(), url: `/products/sku-${seq % 9}` };
  return pick([
    { ...e, type: 'page', title: pick(HOSTILE_TEXT) },
    { ...e, type: 'click', el: { tag: 'button', text: pick(HOSTILE_TEXT), data: { topic: 'x' } } },
    { ...e, type: 'track', name: pick(HOSTILE_TEXT), props: { q: pick(HOSTILE_TEXT), n: 1, b: true, z: null } },
  ]);
};
const badCollectEvents: (() => [Record<string, unknown>, string])[] = [
  () => [{ id: id(), type: 'teleport', ts: 1 }, 'invalid_event'],
  () => [{ id: id(), type: 'page', ts: 'yesterday', url: '/' }, 'invalid_event'],
  () => [{ id: id(), type: 'page', ts: 1, url: 5 }, 'invalid_event'],
  () => [{ id: `${id()}\u0000\n`, type: 'page', ts: 1, url: '/' }, 'invalid_event'],
  () => [{ id: id(), type: 'track', ts: 1, name: 'x', props: JSON.parse('{"__proto__": {"polluted": true}}') as object }, 'invalid_event'],
  () => [{ id: id(), type: 'track', ts: 1, name: 'x', props: { constructor: 'y' } }, 'invalid_event'],
  () => [{ id: id(), type: 'track', ts: 1, name: 'x', props: { nested: { a: 1 } } }, 'invalid_event'],
  () => [{ id: id(), type: 'track', ts: 1, name: 'x'.repeat(500) }, 'invalid_event'],
  () => [{ id: id(), type: 'page', ts: -5, url: '/' }, 'invalid_event'],
  () => [{ id: id(), type: 'identify', ts: 1, user: '{tag}' }, 'invalid_event'],
];
const goodSegmentEvent = () =>
  pick([
    { type: 'track', messageId: id(), userId: `u-${seq % 13}`, event: pick(HOSTILE_TEXT), properties: { product: 'sku-1', deep: { a: [1, { b: pick(HOSTILE_TEXT) }] } }, context: { channel: 'call' } },
    { type: 'page', messageId: id(), anonymousId: `a-${seq % 13}`, name: 'Home', properties: { url: 'https://good.example/' } },
    { type: 'identify', messageId: id(), userId: `u-${seq % 13}`, traits: { plan: pick(HOSTILE_TEXT) } },
  ]);
const badSegmentEvents: (() => Record<string, unknown>)[] = [
  () => ({ type: 'track', messageId: id(), event: 'No person' }),
  () => ({ type: 'group', messageId: id(), userId: 'u', groupId: 'g' }),
  () => ({ type: 'track', messageId: id(), userId: 'u', event: 5 }),
  () => ({ type: 'track', messageId: id(), userId: 'u', event: 'x', properties: JSON.parse('{"a": {"__proto__": {"polluted": true}}}') as object }),
  () => ({ type: 'identify', messageId: id(), userId: 'u', traits: { constructor: { prototype: 1 } } }),
  () => ({ type: 'track', messageId: id(), userId: 'u', event: 'x', properties: { a: { b: { c: { d: { e: { f: 1 } } } } } } }),
  () => ({ type: 'track', messageId: id(), userId: 'u', event: 'x', context: { channel: 'Not A Channel!' } }),
  () => ({ type: 'track', messageId: id(), userId: 'u\u0000', event: 'x' }),
  () => ({ type: 'track', messageId: id(), userId: 'u', event: 'x', timestamp: 'not a date' }),
  () => ({ type: 'page', messageId: id(), userId: 'u', properties: 'not an object' }),
];

const json = { 'content-type': 'application/json' };
const segHeaders = { ...json, authorization: basic(KEY) };
const collectBody = (events: unknown[], extra: Record<string, unknown> = {}) => ({ site: SITE, visitor: `v-${seq % 17}`, session: 's', events, ...extra });

/** One bad request of a random kind, with what it must produce. */
function badCase(): Case {
  const c = (kind: string, path: string, headers: Record<string, string>, body: string | Uint8Array | undefined, status: number, dead: [number, string][], valid: string[] = [], method: 'POST' | 'GET' = 'POST'): Case => ({ kind, method, path, headers, body, status, dead, valid });
  const kinds: (() => Case)[] = [
    () => {
      const text = JSON.stringify(collectBody([goodCollectEvent()]));
      return c('truncated json', '/v1/collect', json, text.slice(0, Math.floor(rnd() * (text.length - 1))), 400, [[-1, 'malformed_json']]);
    },
    () => c('garbage', '/v1/collect', json, pick(['{bad', 'undefined', '{"site":}', "{'site':'x'}", '[1,2,', '{"a":1}}', 'NaN', '\u0000']), 400, [[-1, 'malformed_json']]),
    () => c('raw control character', '/v1/collect', json, `{"site":"${SITE}","visitor":"v\u0001","events":[]}`, 400, [[-1, 'malformed_json']]),
    () => {
      const bytes = Buffer.from(JSON.stringify(collectBody([{ ...goodCollectEvent(), title: 'XX' }])));
      const at = bytes.indexOf('XX');
      bytes[at] = pick([0xff, 0xfe, 0xc0, 0x80]); // never valid as a first byte
      bytes[at + 1] = pick([0xfe, 0x28, 0xa0]);
      return c('invalid utf-8', '/v1/collect', json, new Uint8Array(bytes), 400, [[-1, 'invalid_utf8']]);
    },
    () => c('wrong envelope types', '/v1/collect', json, JSON.stringify(pick([{ site: 5, visitor: [], events: 'x' }, { site: SITE, events: [] }, { site: SITE, visitor: 'v', events: {} }, null, [], 'str', 42, { site: SITE, visitor: 'v{x}', events: [{}] }])), 400, [[-1, 'invalid_batch']]),
    () => c('too many events', '/v1/collect', json, JSON.stringify(collectBody(Array.from({ length: 101 }, goodCollectEvent))), 400, [[-1, 'invalid_batch']]),
    () => {
      const bad = Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => pick(badCollectEvents)());
      return c('bad events', '/v1/collect', json, JSON.stringify(collectBody(bad.map(([e]) => e))), 400, bad.map(([, r], i) => [i, r]));
    },
    () => {
      // Good and bad events in one batch: the good ones must land, the bad ones be reported by index.
      const events: unknown[] = [];
      const dead: [number, string][] = [];
      const valid: string[] = [];
      for (let i = 0; i < 2 + Math.floor(rnd() * 5); i++) {
        if (rnd() < 0.5) {
          const e = goodCollectEvent();
          valid.push(e.id);
          events.push(e);
        } else {
          const [e, reason] = pick(badCollectEvents)();
          dead.push([i, reason]);
          events.push(e);
        }
      }
      if (dead.length === 0) {
        dead.push([events.length, 'invalid_event']);
        events.push(badCollectEvents[0]!()[0]);
      }
      return c('mixed batch', '/v1/collect', json, JSON.stringify(collectBody(events)), 400, dead, valid);
    },
    () => c('deeply nested body', '/v1/collect', json, `${'['.repeat(20_000)}${']'.repeat(20_000)}`, 400, [[-1, 'too_deep']]),
    () => {
      let deep: unknown = 1;
      for (let i = 0; i < 40; i++) deep = { a: deep };
      return c('deep props', '/v1/collect', json, JSON.stringify(collectBody([{ ...goodCollectEvent(), type: 'track', name: 'x', props: deep }])), 400, [[-1, 'too_deep']]);
    },
    () => c('huge body', '/v1/collect', json, JSON.stringify(collectBody([{ ...goodCollectEvent(), url: `/${'x'.repeat(MAX_BODY)}` }])), 413, [[-1, 'body_too_large']]),
    () => c('wrong media type', '/v1/collect', { 'content-type': pick(['application/xml', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', 'image/png', 'application/jsonp']) }, JSON.stringify(collectBody([goodCollectEvent()])), 415, [[-1, 'unsupported_media_type']]),
    () => c('content encoding on collect', '/v1/collect', { ...json, 'content-encoding': pick(['gzip', 'br', 'deflate', 'x-evil']) }, JSON.stringify(collectBody([goodCollectEvent()])), 415, [[-1, 'unsupported_encoding']]),
    () => c('unknown site', '/v1/collect', json, JSON.stringify({ ...collectBody([goodCollectEvent()]), site: `nowhere-${RUN}` }), 403, [[-1, 'unknown_site']]),
    () => c('foreign origin', '/v1/collect', { ...json, origin: pick(['https://evil.example', 'null', 'https://good.example.evil.example']) }, JSON.stringify(collectBody([goodCollectEvent()])), 403, [[-1, 'origin_not_allowed']]),
    () => c('no write key', '/v1/batch', json, JSON.stringify({ batch: [goodSegmentEvent()] }), 401, [[-1, 'unknown_write_key']]),
    () => c('wrong write key', '/v1/batch', { ...json, authorization: pick([basic('wk_wrong_00000000'), 'Bearer x', 'Basic !!!', `Basic ${'A'.repeat(5000)}`]) }, JSON.stringify({ batch: [goodSegmentEvent()] }), 401, [[-1, 'unknown_write_key']]),
    () => {
      const bad = Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => pick(badSegmentEvents)());
      return c('bad segment events', '/v1/batch', segHeaders, JSON.stringify({ batch: bad }), 400, bad.map((_, i) => [i, 'invalid_event']));
    },
    () => {
      const good = goodSegmentEvent();
      return c('mixed segment batch', '/v1/batch', segHeaders, JSON.stringify({ batch: [good, pick(badSegmentEvents)()] }), 400, [[1, 'invalid_event']], [good.messageId]);
    },
    () => c('segment envelope', '/v1/batch', segHeaders, JSON.stringify(pick([{ batch: [] }, { batch: 'x' }, { events: [] }, []])), 400, [[-1, 'invalid_batch']]),
    () => c('segment single not an object', pick(['/v1/track', '/v1/page', '/v1/identify']), segHeaders, JSON.stringify(pick([[], 'str', 5, null])), 400, [[-1, 'invalid_event']]),
    () => c('segment truncated', '/v1/batch', segHeaders, JSON.stringify({ batch: [goodSegmentEvent()] }).slice(0, 20), 400, [[-1, 'malformed_json']]),
    () => c('segment bad gzip', '/v1/batch', { ...segHeaders, 'content-encoding': 'gzip' }, 'certainly not gzip', 400, [[-1, 'malformed_gzip']]),
    () => c('segment gzip bomb', '/v1/batch', { ...segHeaders, 'content-encoding': 'gzip' }, new Uint8Array(gzipSync(Buffer.alloc(2 * 1024 * 1024, 0x20))), 413, [[-1, 'body_too_large']]),
    () => c('unsigned redirect', `/v1/email/click?site=${SITE}&user=u&campaign=c&url=${encodeURIComponent(pick(['https://evil.example/', '//evil.example', 'javascript:alert(1)', 'data:text/html,x']))}`, {}, undefined, 400, [[-1, pick(['unsigned_redirect', 'invalid_target'])]], [], 'GET'),
    () => c('huge header', '/v1/collect', { ...json, 'x-junk': 'j'.repeat(20_000) }, JSON.stringify(collectBody([goodCollectEvent()])), 431, []),
  ];
  const made = pick(kinds)();
  // The unsigned-redirect reason depends on the URL; fix it up after the fact.
  if (made.kind === 'unsigned redirect') {
    const target = decodeURIComponent(made.path.split('url=')[1]!);
    made.dead = [[-1, target === 'https://evil.example/' ? 'unsigned_redirect' : 'invalid_target']];
  }
  return made;
}

function goodCase(): Case {
  const r = rnd();
  if (r < 0.5) {
    const events = Array.from({ length: 1 + Math.floor(rnd() * 5) }, goodCollectEvent);
    const headers = rnd() < 0.5 ? { ...json, origin: ORIGIN } : { 'content-type': 'text/plain;charset=UTF-8' };
    return { kind: 'good collect', method: 'POST', path: '/v1/collect', headers, body: JSON.stringify(collectBody(events)), status: 202, dead: [], valid: events.map((e) => e.id) };
  }
  if (r < 0.85) {
    const events = Array.from({ length: 1 + Math.floor(rnd() * 5) }, goodSegmentEvent);
    const gzip = rnd() < 0.3;
    const text = JSON.stringify({ batch: events, sentAt: new Date().toISOString() });
    return {
      kind: 'good segment',
      method: 'POST',
      path: '/v1/batch',
      headers: gzip ? { ...segHeaders, 'content-encoding': 'gzip' } : segHeaders,
      body: gzip ? new Uint8Array(gzipSync(text)) : text,
      status: 200,
      dead: [],
      valid: events.map((e) => e.messageId),
    };
  }
  const campaign = `c-${id()}`;
  return { kind: 'good pixel', method: 'GET', path: `/v1/email/open?site=${SITE}&user=u-1&campaign=${campaign}`, headers: { accept: 'image/*' }, status: 200, dead: [], valid: [campaign] };
}

/**
 * Raw-socket abuse the fetch API refuses to send. Node's HTTP parser answers most with a 400 before
 * the app sees them; the ones with sane headers but a broken body reach the app, which dead-letters
 * them (`unreadable_body`) instead of failing with a 500.
 */
const RAW_ABUSE: { text: string; hangUp?: boolean; dead?: string }[] = [
  { text: 'POST /v1/collect HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' },
  { text: 'POST /v1/collect HTTP/1.1\r\nHost: x\r\nBad Header: \u0001\r\nContent-Length: 2\r\n\r\n{}' },
  { text: 'POST /v1/collect HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}' },
  { text: 'POST /v1/collect HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}' },
  { text: 'GARBAGE\r\n\r\n' },
  { text: `POST /v1/collect HTTP/1.1\r\nHost: x\r\nX-Request-Id: h${RUN}-raw-chunk\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`, dead: 'unreadable_body' },
  { text: `POST /v1/batch HTTP/1.1\r\nHost: x\r\nX-Request-Id: h${RUN}-raw-cut\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"batch":`, hangUp: true, dead: 'unreadable_body' },
];

function rawRequest(port: number, abuse: (typeof RAW_ABUSE)[number]): Promise<number> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(abuse.text);
      if (abuse.hangUp) setTimeout(() => socket.destroy(), 200);
    });
    let data = '';
    socket.on('data', (d) => (data += d.toString()));
    socket.on('error', () => {});
    socket.setTimeout(5000, () => socket.destroy());
    socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0)));
  });
}

interface Consumed {
  raw: Map<string, number>;
  campaigns: Map<string, number>;
  dead: Map<string, [number, string][]>;
}

/** Reads clicks.raw and clicks.invalid from the beginning up to their current ends; keeps this run's records. */
async function readBack(): Promise<Consumed> {
  const kafka = new Kafka({ clientId: `hostile-reader-${RUN}`, brokers: kafkaBrokers().split(','), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map<string, bigint>();
  for (const topic of [TOPICS.raw, TOPICS.invalid]) {
    for (const p of await admin.fetchTopicOffsets(topic)) if (BigInt(p.high) > BigInt(p.low)) ends.set(`${topic}/${p.partition}`, BigInt(p.high) - 1n);
  }
  await admin.disconnect();

  const out: Consumed = { raw: new Map(), campaigns: new Map(), dead: new Map() };
  const consumer = kafka.consumer({ groupId: `hostile-reader-${randomUUID()}`, maxWaitTimeInMs: 100, maxBytes: 64 * 1024 * 1024 });
  await consumer.connect();
  await consumer.subscribe({ topics: [TOPICS.raw, TOPICS.invalid], fromBeginning: true });
  const remaining = new Set(ends.keys());
  const done = new Promise<void>((resolve) => {
    if (remaining.size === 0) resolve();
    void consumer.run({
      eachMessage: async ({ topic, partition, message }) => {
        const v = JSON.parse(message.value!.toString()) as Record<string, unknown>;
        if (topic === TOPICS.raw && v.site === SITE) {
          out.raw.set(v.id as string, (out.raw.get(v.id as string) ?? 0) + 1);
          const campaign = (v.props as Record<string, unknown> | undefined)?.campaign;
          if (v.channel === 'email' && typeof campaign === 'string') out.campaigns.set(campaign, (out.campaigns.get(campaign) ?? 0) + 1);
        }
        if (topic === TOPICS.invalid && typeof v.rid === 'string' && v.rid.startsWith(`h${RUN}-`)) {
          const list = out.dead.get(v.rid) ?? [];
          list.push([typeof v.index === 'number' ? v.index : -1, v.reason as string]);
          out.dead.set(v.rid, list);
        }
        const key = `${topic}/${partition}`;
        if (BigInt(message.offset) >= (ends.get(key) ?? -1n) && remaining.delete(key) && remaining.size === 0) resolve();
      },
    });
  });
  try {
    await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error(`read-back timed out; partitions left: ${[...remaining].join(', ')}`)), 120_000))]);
  } finally {
    await consumer.disconnect();
  }
  return out;
}

describe('hostile input over HTTP into real Kafka', () => {
  let server: ServerType;
  let url: string;
  let port: number;
  let producer: KafkaLogProducer;
  const metrics = createIngestMetrics();

  beforeAll(async () => {
    const logger = createLogger('hostile', 'silent');
    const kafka = createKafka(kafkaBrokers(), `hostile-${RUN}`, logger);
    await ensureTopics(kafka, 3, 1);
    producer = new KafkaLogProducer(kafka, { ackTimeoutMs: 10_000 });
    await producer.connect();
    const sites = compileSites(SitesFile.parse({ sites: [{ id: SITE, origins: [ORIGIN], writeKeys: [KEY], bots: 'flag' }] }));
    const app = createIngestApp({ producer, logger, maxBodyBytes: MAX_BODY, retryAfterSeconds: 1, sites, metrics, clientIp: clientIpResolver(false), linkSecret: `secret-${RUN}-0123456789` });
    ({ server, port } = await listen(app, 0, '127.0.0.1'));
    url = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    if (server) await closeServer(server);
    await producer?.close();
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
    expect({ missing: missing.slice(0, 10), duplicated: duplicated.slice(0, 10), unexpected: unexpected.slice(0, 10) }).toEqual({ missing: [], duplicated: [], unexpected: [] });
    expect([...campaigns].filter((c) => back.campaigns.get(c) !== 1)).toEqual([]);
    expect(back.raw.size).toBe(validIds.size + campaigns.size);

    // Every rejection on clicks.invalid with its reason; nothing else dead-lettered.
    const wrong: string[] = [];
    cases.forEach((k, i) => {
      const got = (back.dead.get(`h${RUN}-${i}`) ?? []).map(([idx, r]) => `${idx}:${r}`).sort();
      const want = k.dead.map(([idx, r]) => `${idx}:${r}`).sort();
      if (got.join() !== want.join()) wrong.push(`${i} ${k.kind}: dead letters [${got.join(' ')}], expected [${want.join(' ')}]`);
    });
    for (const rid of ['raw-chunk', 'raw-cut']) if (back.dead.get(`h${RUN}-${rid}`)?.[0]?.[1] !== 'unreadable_body') wrong.push(`${rid}: ${JSON.stringify(back.dead.get(`h${RUN}-${rid}`))}`);
    expect(wrong.slice(0, 20)).toEqual([]);

    const text = await metrics.registry.metrics();
    const accepted = [...text.matchAll(/^clickfold_ingest_events_accepted_total\{route="[^"]+"\} (\d+)$/gm)].reduce((s, m) => s + Number(m[1]), 0);
    expect(accepted).toBe(validIds.size + campaigns.size);
    expect(text.split('\n').filter((l) => /status="5\d\d"/.test(l))).toEqual([]);
  }, 600_000);
});
