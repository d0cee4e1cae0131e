import type { ServerType } from '@hono/node-server';
import { createHmac, randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOPICS } from '../../contract/raw-event.js';
import { createIngestApp } from '../../ingest/app.js';
import { createIngestMetrics, type IngestMetrics } from '../../ingest/metrics.js';
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
  /** The last record of each id on clicks.raw (person, user, ip...). */
  records: Map<string, Record<string, unknown>>;
  campaigns: Map<string, number>;
  dead: Map<string, [number, string][]>;
  /** Every dead letter of the read, as written. */
  letters: string[];
}

/**
 * Reads clicks.raw and clicks.invalid from the beginning up to their current ends; keeps the
 * records of `sites` and the dead letters whose request id starts with `ridPrefix`.
 */
async function readBack(sites: ReadonlySet<string> = new Set([SITE]), ridPrefix = `h${RUN}-`): Promise<Consumed> {
  const kafka = new Kafka({ clientId: `hostile-reader-${RUN}`, brokers: kafkaBrokers().split(','), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map<string, bigint>();
  for (const topic of [TOPICS.raw, TOPICS.invalid]) {
    for (const p of await admin.fetchTopicOffsets(topic)) if (BigInt(p.high) > BigInt(p.low)) ends.set(`${topic}/${p.partition}`, BigInt(p.high) - 1n);
  }
  await admin.disconnect();

  const out: Consumed = { raw: new Map(), records: new Map(), campaigns: new Map(), dead: new Map(), letters: [] };
  const consumer = kafka.consumer({ groupId: `hostile-reader-${randomUUID()}`, maxWaitTimeInMs: 100, maxBytes: 64 * 1024 * 1024 });
  await consumer.connect();
  await consumer.subscribe({ topics: [TOPICS.raw, TOPICS.invalid], fromBeginning: true });
  const remaining = new Set(ends.keys());
  const done = new Promise<void>((resolve) => {
    if (remaining.size === 0) resolve();
    void consumer.run({
      eachMessage: async ({ topic, partition, message }) => {
        const text = message.value!.toString();
        const v = JSON.parse(text) as Record<string, unknown>;
        if (topic === TOPICS.raw && sites.has(v.site as string)) {
          out.raw.set(v.id as string, (out.raw.get(v.id as string) ?? 0) + 1);
          out.records.set(v.id as string, v);
          const campaign = (v.props as Record<string, unknown> | undefined)?.campaign;
          if (v.channel === 'email' && typeof campaign === 'string') out.campaigns.set(campaign, (out.campaigns.get(campaign) ?? 0) + 1);
        }
        if (topic === TOPICS.invalid && typeof v.rid === 'string' && v.rid.startsWith(ridPrefix)) {
          const list = out.dead.get(v.rid) ?? [];
          list.push([typeof v.index === 'number' ? v.index : -1, v.reason as string]);
          out.dead.set(v.rid, list);
          out.letters.push(text);
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

/** Sum of a counter's samples, optionally only those whose labels contain `labels`. */
async function counter(metrics: IngestMetrics, name: string, labels = ''): Promise<number> {
  const text = await metrics.registry.metrics();
  return [...text.matchAll(new RegExp(`^${name}(\\{[^}]*\\})? (\\d+)$`, 'gm'))].filter((m) => (m[1] ?? '').includes(labels)).reduce((sum, m) => sum + Number(m[2]), 0);
}

/**
 * Dead letters are written without the answer waiting for them. The producer is FIFO (one
 * produce request at a time, in order), so once this real event is acknowledged, every dead letter
 * queued before it is too, and a read-back sees them all.
 */
async function barrier(base: string): Promise<void> {
  const res = await fetch(`${base}/v1/collect`, { method: 'POST', headers: json, body: JSON.stringify(collectBody([goodCollectEvent()])) });
  expect(res.status).toBe(202);
}

const quantile = (xs: number[], q: number) => Math.round([...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))] ?? 0);

/** Runs `send` for each item with `concurrency` at a time; returns the answers' statuses (0: no answer). */
async function drive<T>(items: T[], concurrency: number, send: (item: T, i: number) => Promise<Response>): Promise<number[]> {
  const statuses = new Array<number>(items.length).fill(0);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        const res = await send(items[i]!, i);
        statuses[i] = res.status;
        await res.arrayBuffer();
      } catch {
        statuses[i] = 0;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return statuses;
}

/** A site that signs user ids, next to SITE on the same ingest. */
const SIGNED = `${SITE}-signed`;
const SIGNED_KEY = `wk_signed_${RUN}`;
const IDENTITY_SECRET = `identity-${RUN}-0123456789`;
/** A site behind one trusted proxy (this test), with a small per-address limit and no refill to speak of. */
const PROXIED = `${SITE}-proxied`;
/** Dead letters per second of the ingest that takes the junk flood. */
const FLOOD_RATE = 50;

describe('hostile input over HTTP into real Kafka', () => {
  let server: ServerType;
  let url: string;
  let port: number;
  let producer: KafkaLogProducer;
  const metrics = createIngestMetrics();
  const proxied = { url: '', server: undefined as ServerType | undefined };
  const flood = { url: '', server: undefined as ServerType | undefined, metrics: createIngestMetrics() };

  beforeAll(async () => {
    const logger = createLogger('hostile', 'silent');
    const kafka = createKafka(kafkaBrokers(), `hostile-${RUN}`, logger);
    await ensureTopics(kafka, 3, 1);
    producer = new KafkaLogProducer(kafka, { ackTimeoutMs: 10_000 });
    await producer.connect();
    const sites = compileSites(
      SitesFile.parse({
        sites: [
          { id: SITE, origins: [ORIGIN], writeKeys: [KEY], bots: 'flag' },
          { id: SIGNED, origins: [ORIGIN], writeKeys: [SIGNED_KEY], identitySecret: IDENTITY_SECRET },
          { id: PROXIED, origins: [ORIGIN], limits: { address: { perSecond: 0.001, burst: 3 } } },
        ],
      }),
    );
    const common = { producer, logger, maxBodyBytes: MAX_BODY, retryAfterSeconds: 1, sites };
    // This ingest is checked for every refusal's dead letter, so it lets them all through; the
    // bounded path (the default) has its own flood test below, on an ingest of its own.
    const app = createIngestApp({ ...common, metrics, clientIp: clientIpResolver(0), linkSecret: `secret-${RUN}-0123456789`, deadLettersPerSecond: 1_000_000 });
    ({ server, port } = await listen(app, 0, '127.0.0.1'));
    url = `http://127.0.0.1:${port}`;
    const behindProxy = await listen(createIngestApp({ ...common, clientIp: clientIpResolver(1) }), 0, '127.0.0.1');
    Object.assign(proxied, { server: behindProxy.server, url: `http://127.0.0.1:${behindProxy.port}` });
    const flooded = await listen(createIngestApp({ ...common, metrics: flood.metrics, clientIp: clientIpResolver(0), deadLettersPerSecond: FLOOD_RATE }), 0, '127.0.0.1');
    Object.assign(flood, { server: flooded.server, url: `http://127.0.0.1:${flooded.port}` });
  });
  afterAll(async () => {
    for (const s of [server, proxied.server, flood.server]) if (s) await closeServer(s);
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
  it('refuses identifies with missing, wrong, foreign or overlong signatures, and keeps unsigned batch users anonymous', async () => {
    const sign = (user: string, secret = IDENTITY_SECRET) => createHmac('sha256', secret).update(user).digest('hex');
    const segAuth = { ...json, authorization: basic(SIGNED_KEY) };
    interface SigCase {
      kind: string;
      path: string;
      headers: Record<string, string>;
      body: unknown;
      status: number;
      /** Event ids that must be on clicks.raw once, with this user (undefined: the anonymous person). */
      land: [id: string, user: string | undefined, person: string][];
      /** Event ids that must not be on clicks.raw. */
      refused: string[];
      dead: [number, string][];
    }
    const goodSigs = new Set<string>();
    const event = (type: string, extra: Record<string, unknown> = {}) => ({ id: id(), type, ts: Date.now(), url: 'https://good.example/p', ...extra });
    const kinds: (() => SigCase)[] = [
      () => {
        const user = `u-${id()}`;
        const sig = sign(user);
        goodSigs.add(sig);
        const [i, p] = [event('identify', { user, sig }), event('page')];
        return { kind: 'signed', path: '/v1/collect', headers: { ...json, origin: ORIGIN }, body: { site: SIGNED, visitor: `v-${id()}`, user, sig, events: [i, p] }, status: 202, land: [[i.id, user, user], [p.id, user, user]], refused: [], dead: [] };
      },
      () => {
        const user = `ceo-${seq % 3}`;
        const bad = pick([undefined, 'f'.repeat(64), sign(user, `other-${RUN}-0123456789`), sign(`${user}-x`), 'z'.repeat(64), sign(user).slice(0, 63), `${sign(user)}0`, ''])!;
        const visitor = `v-${id()}`;
        const [p, i, t] = [event('page'), event('identify', bad === undefined ? { user } : { user, sig: bad }), event('track', { name: 'After' })];
        return { kind: `identify sig ${JSON.stringify(bad)?.slice(0, 12)}`, path: '/v1/collect', headers: { ...json, origin: ORIGIN }, body: { site: SIGNED, visitor, events: [p, i, t] }, status: 202, land: [[p.id, undefined, visitor], [t.id, undefined, visitor]], refused: [i.id], dead: [[1, 'unsigned_identify']] };
      },
      () => {
        const visitor = `v-${id()}`;
        const [p, i] = [event('page'), event('identify', { user: `u-${seq}`, sig: 'a'.repeat(pick([129, 5000])) })];
        return { kind: 'overlong identify sig', path: '/v1/collect', headers: json, body: { site: SIGNED, visitor, events: [p, i] }, status: 400, land: [[p.id, undefined, visitor]], refused: [i.id], dead: [[1, 'invalid_event']] };
      },
      () => {
        const user = `ceo-${seq % 3}`;
        const visitor = `v-${id()}`;
        const sig = pick([undefined, sign(`${user}-x`), 'not hex at all']);
        const events = [event('page'), event('click', { el: { tag: 'a' } })];
        return { kind: 'unsigned batch user', path: '/v1/collect', headers: { 'content-type': 'text/plain' }, body: { site: SIGNED, visitor, user, ...(sig === undefined ? {} : { sig }), events }, status: 202, land: events.map((e) => [e.id, undefined, visitor] as [string, undefined, string]), refused: [], dead: [] };
      },
      () => {
        const e = event('page');
        return { kind: 'overlong batch sig', path: '/v1/collect', headers: json, body: { site: SIGNED, visitor: `v-${id()}`, user: 'u-1', sig: 's'.repeat(129), events: [e] }, status: 400, land: [], refused: [e.id], dead: [[-1, 'invalid_batch']] };
      },
      () => {
        const [m, anon] = [id(), `a-${id()}`];
        return { kind: 'browser segment unsigned identify', path: '/v1/identify', headers: { ...segAuth, origin: ORIGIN }, body: { userId: `ceo-${seq % 3}`, anonymousId: anon, messageId: m }, status: 200, land: [], refused: [m], dead: [[0, 'unsigned_identify']] };
      },
      () => {
        const [m1, m2, anon, user] = [id(), id(), `a-${id()}`, `u-${id()}`];
        const sig = sign(user);
        goodSigs.add(sig);
        const batch = [
          { type: 'identify', userId: user, anonymousId: anon, messageId: m1, context: { clickfold: { sig } } },
          { type: 'track', userId: `ceo-${seq % 3}`, anonymousId: anon, event: 'Unsigned', messageId: m2 },
        ];
        return { kind: 'browser segment batch', path: '/v1/batch', headers: { ...segAuth, origin: ORIGIN }, body: { batch }, status: 200, land: [[m1, user, user], [m2, undefined, anon]], refused: [], dead: [] };
      },
      () => {
        const [m, user] = [id(), `ceo-${seq % 3}`];
        return { kind: 'server segment identify', path: '/v1/identify', headers: segAuth, body: { userId: user, anonymousId: `a-${id()}`, messageId: m }, status: 200, land: [[m, user, user]], refused: [], dead: [] };
      },
    ];
    const cases = Array.from({ length: 400 }, () => pick(kinds)());
    const statuses = await drive(cases, CONCURRENCY, (k, i) =>
      fetch(`${url}${k.path}`, { method: 'POST', headers: { ...k.headers, 'x-request-id': `s${RUN}-${i}` }, body: JSON.stringify(k.body) }),
    );
    expect(cases.map((k, i) => `${k.kind}: ${statuses[i]}`).filter((line, i) => statuses[i] !== cases[i]!.status).slice(0, 10)).toEqual([]);
    await barrier(url);

    const back = await readBack(new Set([SIGNED]), `s${RUN}-`);
    const wrong: string[] = [];
    cases.forEach((k, i) => {
      for (const [eventId, user, person] of k.land) {
        const r = back.records.get(eventId);
        if (back.raw.get(eventId) !== 1 || r?.user !== user || r?.person !== person) wrong.push(`${i} ${k.kind}: ${eventId} landed ${back.raw.get(eventId) ?? 0}x as ${JSON.stringify([r?.user, r?.person])}, expected ${JSON.stringify([user, person])}`);
      }
      for (const eventId of k.refused) if (back.raw.has(eventId)) wrong.push(`${i} ${k.kind}: refused ${eventId} is on clicks.raw`);
      const got = (back.dead.get(`s${RUN}-${i}`) ?? []).map(([idx, r]) => `${idx}:${r}`).sort().join();
      const want = k.dead.map(([idx, r]) => `${idx}:${r}`).sort().join();
      if (got !== want) wrong.push(`${i} ${k.kind}: dead letters [${got}], expected [${want}]`);
    });
    expect(wrong.slice(0, 20)).toEqual([]);
    expect(cases.some((k) => k.dead.some(([, r]) => r === 'unsigned_identify'))).toBe(true);
    // A valid signature lets its holder act as the user: it is kept neither with the events nor in dead letters.
    const stored = `${back.letters.join('\n')}\n${JSON.stringify([...back.records.values()])}`;
    expect([...goodSigs].filter((sig) => stored.includes(sig))).toEqual([]);
  }, 300_000);

  it('keys rate limits by the client behind the trusted proxy: forged X-Forwarded-For chains and IPv6 rotation within a /64 get no fresh buckets', async () => {
    const octet = () => Math.floor(rnd() * 256);
    const hex = () => Math.floor(rnd() * 0x10000).toString(16);
    const forgedLeft = () => Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => pick([`${octet()}.${octet()}.${octet()}.${octet()}`, `2001:db8::${hex()}`, 'unknown', '<script>'])).join(', ');
    const sent = new Map<string, string>();
    const send = (xff: string) => {
      const e = { id: id(), type: 'page', ts: Date.now(), url: '/p' };
      sent.set(e.id, xff);
      return fetch(`${proxied.url}/v1/collect`, { method: 'POST', headers: { ...json, 'x-forwarded-for': xff }, body: JSON.stringify({ site: PROXIED, visitor: `v-${seq}`, events: [e] }) }).then(async (r) => {
        await r.arrayBuffer();
        return { status: r.status, id: e.id };
      });
    };
    const count = (rs: { status: number }[]) => ({ ok: rs.filter((r) => r.status === 202).length, limited: rs.filter((r) => r.status === 429).length });

    // One client, a fresh forged chain in front of its real address on every request, 30 at once.
    const forged = await Promise.all(Array.from({ length: 30 }, () => send(`${forgedLeft()}, 198.51.100.7`)));
    expect(count(forged)).toEqual({ ok: 3, limited: 27 });
    // The same client as an IPv4-mapped IPv6 address, with a port, is still the same client.
    expect((await send(`${forgedLeft()}, [::ffff:198.51.100.7]:50123`)).status).toBe(429);
    // One host rotating through its /64.
    const v6 = `2001:db8:${RUN.slice(0, 4)}:1`;
    const rotated = await Promise.all(Array.from({ length: 30 }, () => send(`${forgedLeft()}, ${v6}:${hex()}:${hex()}:${hex()}:${hex()}`)));
    expect(count(rotated)).toEqual({ ok: 3, limited: 27 });
    // Neighbours are not affected: another /64, another IPv4 client.
    const others = await Promise.all([send(`2001:db8:${RUN.slice(0, 4)}:2::1`), send('198.51.100.8')]);
    expect(others.map((r) => r.status)).toEqual([202, 202]);

    // The accepted events carry the client's (anonymised) address, not the proxy's nor a forged one.
    const back = await readBack(new Set([PROXIED]), `none-${RUN}`);
    const ips = [...forged, ...rotated, ...others].filter((r) => r.status === 202).map((r) => back.records.get(r.id)?.ip);
    expect(ips).toEqual(['198.51.100.0', '198.51.100.0', '198.51.100.0', ...new Array(3).fill(`2001:db8:${RUN.slice(0, 4).replace(/^0+(?=.)/, '')}::`), `2001:db8:${RUN.slice(0, 4).replace(/^0+(?=.)/, '')}::`, '198.51.100.0']);
  }, 120_000);

  it('keeps every real event and bounds the dead letters under a flood of junk', async () => {
    type FloodCase = { real: boolean; body: string; status: number; dead: [number, string][]; ids: string[] };
    const junk: (() => FloodCase)[] = [
      () => ({ real: false, body: pick(['{bad', '[1,2,', '{"site":}', 'undefined']), status: 400, dead: [[-1, 'malformed_json']], ids: [] }),
      () => ({ real: false, body: JSON.stringify({ ...collectBody([goodCollectEvent()]), site: `nowhere-${RUN}` }), status: 403, dead: [[-1, 'unknown_site']], ids: [] }),
      () => ({ real: false, body: JSON.stringify(pick([{ site: 5 }, null, [], { site: SITE, visitor: 'v', events: [] }])), status: 400, dead: [[-1, 'invalid_batch']], ids: [] }),
      () => {
        const bad = Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => pick(badCollectEvents)());
        return { real: false, body: JSON.stringify(collectBody(bad.map(([e]) => e))), status: 400, dead: bad.map(([, r], i) => [i, r]), ids: [] };
      },
    ];
    const cases: FloodCase[] = [];
    for (let i = 0; i < 3000; i++) {
      cases.push(pick(junk)());
      if (i % 10 === 0) {
        const events = Array.from({ length: 1 + Math.floor(rnd() * 5) }, goodCollectEvent);
        cases.push({ real: true, body: JSON.stringify(collectBody(events)), status: 202, dead: [], ids: events.map((e) => e.id) });
      }
    }
    const latency: number[] = [];
    const started = Date.now();
    const statuses = await drive(cases, CONCURRENCY, async (k, i) => {
      const t = performance.now();
      const res = await fetch(`${flood.url}/v1/collect`, { method: 'POST', headers: { ...json, 'x-request-id': `f${RUN}-${i}` }, body: k.body });
      if (k.real) latency.push(performance.now() - t);
      return res;
    });
    const seconds = (Date.now() - started) / 1000;
    expect(cases.map((k, i) => [k.status, statuses[i]]).filter(([want, got]) => want !== got).slice(0, 10)).toEqual([]);
    await barrier(flood.url);

    const back = await readBack(new Set([SITE]), `f${RUN}-`);
    // Every real event exactly once.
    const realIds = cases.flatMap((k) => k.ids);
    expect(realIds.filter((e) => back.raw.get(e) !== 1).slice(0, 10)).toEqual([]);
    // Dead letters: at most the bucket (one second's worth) plus the rate over the flood's duration...
    const expected = cases.reduce((n, k) => n + k.dead.length, 0);
    const written = await counter(flood.metrics, 'clickfold_ingest_dead_letters_written_total');
    const sampledOut = await counter(flood.metrics, 'clickfold_ingest_dead_letters_sampled_out_total');
    console.log(`flood: ${cases.length} requests in ${seconds.toFixed(1)} s, ${expected} refusals, ${written} dead letters written, ${sampledOut} only counted; real requests p50/p99 ${quantile(latency, 0.5)}/${quantile(latency, 0.99)} ms`);
    expect(back.letters.length).toBe(written);
    expect(written).toBeLessThanOrEqual(FLOOD_RATE * (1 + Math.ceil(seconds)));
    expect(sampledOut).toBeGreaterThan(0);
    // ...and every refusal counted by reason, written or not.
    expect(written + sampledOut).toBe(expected);
    expect(await counter(flood.metrics, 'clickfold_ingest_events_rejected_total')).toBe(expected);
    expect(await counter(flood.metrics, 'clickfold_ingest_dead_letter_failures_total')).toBe(0);
    // What was written is what those requests were refused for.
    const mismatched = [...back.dead].filter(([rid, got]) => {
      const want = cases[Number(rid.slice(`f${RUN}-`.length))]!.dead.map(([idx, r]) => `${idx}:${r}`);
      return !got.every(([idx, r]) => want.includes(`${idx}:${r}`));
    });
    expect(mismatched.slice(0, 5)).toEqual([]);
  }, 300_000);
});
