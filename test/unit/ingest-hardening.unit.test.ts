import { describe, expect, it } from 'vitest';
import { TOPICS, type RawEvent } from '../../contract/raw-event.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import { createIngestApp } from '../../ingest/app.js';
import { anonymizeIp, boundedTime, createUaParser } from '../../ingest/enrich.js';
import { createIngestMetrics } from '../../ingest/metrics.js';
import { tokenBuckets } from '../../ingest/rate-limit.js';
import { compileSites, parseSites, SitesFile } from '../../ingest/sites.js';
import { createLogger } from '../../lib/logger.js';
import { recordsOf } from '../support/log-records.js';

const CHROME = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36';
const GOOGLEBOT = 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)';

function setup(sitesJson: unknown, now?: () => number) {
  const log = new PartitionedLog(1);
  const metrics = createIngestMetrics();
  const app = createIngestApp({
    producer: log.producer(),
    logger: createLogger('test', 'silent'),
    maxBodyBytes: 65536,
    retryAfterSeconds: 2,
    sites: compileSites(SitesFile.parse(sitesJson), now),
    clientIp: (c) => c.req.header('x-test-ip'),
    metrics,
  });
  let n = 0;
  const collect = (site: string, headers: Record<string, string> = {}, events = 1) =>
    app.request('/v1/collect', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': CHROME, ...headers },
      body: JSON.stringify({ site, visitor: 'v1', events: Array.from({ length: events }, () => ({ id: `e${++n}`, type: 'page', ts: Date.now(), url: '/p' })) }),
    });
  const raw = () => recordsOf<RawEvent>(log, TOPICS.raw);
  const invalid = () => recordsOf(log, TOPICS.invalid);
  return { app, collect, raw, invalid, metrics };
}

const SITES = {
  sites: [
    { id: 'shop', origins: ['https://shop.example', 'https://*.shop.example'], bots: 'drop' },
    { id: 'blog', origins: ['https://blog.example'], bots: 'flag' },
  ],
};

describe('sites: CORS, unknown sites, bot policy', () => {
  it('answers the CORS preflight per site and refuses origins no site allows', async () => {
    const { app } = setup(SITES);
    const preflight = (origin: string, query = '') =>
      app.request(`/v1/collect${query}`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
      });
    const ok = await preflight('https://m.shop.example', '?site=shop');
    expect(ok.status).toBe(204);
    expect(ok.headers.get('access-control-allow-origin')).toBe('https://m.shop.example');
    expect(ok.headers.get('access-control-allow-headers')).toBe('content-type');
    expect((await preflight('https://blog.example')).status).toBe(204);
    expect((await preflight('https://blog.example', '?site=shop')).status).toBe(403);
    expect((await preflight('https://evil.example')).status).toBe(403);
    expect((await preflight('https://shop.example.evil.example')).status).toBe(403);
  });

  it('accepts a batch from an allowed origin, refuses another site’s origin and unknown sites with 403 and the reason', async () => {
    const { collect, raw, invalid } = setup(SITES);
    const ok = await collect('shop', { origin: 'https://shop.example' });
    expect(ok.status).toBe(202);
    expect(ok.headers.get('access-control-allow-origin')).toBe('https://shop.example');
    expect(ok.headers.get('access-control-expose-headers')).toBe('Retry-After');
    const foreign = await collect('shop', { origin: 'https://blog.example' });
    expect(foreign.status).toBe(403);
    expect(await foreign.json()).toMatchObject({ error: { code: 'origin_not_allowed', message: expect.stringContaining('blog.example') } });
    const unknown = await collect('nowhere');
    expect(unknown.status).toBe(403);
    expect(await unknown.json()).toMatchObject({ error: { code: 'unknown_site', message: 'site "nowhere" is not configured' } });
    // Server-side senders have no Origin: the site decides alone.
    expect((await collect('blog')).status).toBe(202);
    expect(raw()).toHaveLength(2);
    expect(invalid().map((d) => [d.reason, d.site])).toEqual([
      ['origin_not_allowed', 'shop'],
      ['unknown_site', 'nowhere'],
    ]);
  });

  it('drops bots on a `drop` site and flags them on a `flag` site', async () => {
    const { collect, raw } = setup(SITES);
    const dropped = await collect('shop', { 'user-agent': GOOGLEBOT }, 3);
    expect(dropped.status).toBe(202);
    expect(await dropped.json()).toEqual({ accepted: 0, dropped: 3 });
    const flagged = await collect('blog', { 'user-agent': GOOGLEBOT });
    expect(await flagged.json()).toEqual({ accepted: 1 });
    expect(raw()).toMatchObject([{ site: 'blog', bot: true }]);
  });

  it('stops start-up on a bad sites file with the file, the line and the reason', () => {
    expect(() => parseSites('{"sites": [{"id": "a"}, {"id": "a"}]}', 'sites.json')).toThrow(/sites\.json:1: sites\.1\.id: site "a" is defined twice/);
    expect(() => parseSites('{\n "sites": [\n  {"id": "a",\n   "origins": ["ftp://x"]}]}', 's.json')).toThrow(/s\.json:4: sites\.0\.origins\.0: an origin is/);
    expect(() => parseSites('{"sites": [{"id": "a", "bots": "maybe"}]}')).toThrow(/sites\.0\.bots/);
    expect(() => parseSites('{"sites": [{"id": "a", "colour": "red"}]}')).toThrow(/colour/);
    expect(() => parseSites('{"sites": [', 'x.json')).toThrow(/x\.json:1: not valid JSON/);
    const ok = parseSites('{"sites": [{"id": "a", "writeKeys": ["wk_0123456789"], "topicMap": "maps/a.json", "limits": {"address": {"perSecond": 5}}}]}');
    expect(ok.sites[0]).toMatchObject({ id: 'a', bots: 'flag', origins: [], topicMap: 'maps/a.json' });
  });
});

describe('rate limits', () => {
  it('token buckets allow a burst, then refill at the rate, and say how long to wait', () => {
    let t = 0;
    const take = tokenBuckets({ perSecond: 2, burst: 3, now: () => t });
    expect([take('a'), take('a'), take('a')]).toEqual([0, 0, 0]);
    expect(take('a')).toBe(1);
    expect(take('b')).toBe(0); // another key, its own bucket
    t = 500;
    expect(take('a')).toBe(0);
    expect(take('a')).toBe(1);
    const slow = tokenBuckets({ perSecond: 0.1, burst: 1, now: () => t });
    expect(slow('x')).toBe(0);
    expect(slow('x')).toBe(10);
  });

  it('answers 429 with Retry-After per client address and per site, and counts it', async () => {
    let t = 1_000_000;
    const { collect, metrics } = setup(
      { sites: [{ id: 'shop', limits: { address: { perSecond: 1, burst: 2 }, site: { perSecond: 10, burst: 4 } } }] },
      () => t,
    );
    const from = (ip: string) => collect('shop', { 'x-test-ip': ip });
    expect((await from('198.51.100.1')).status).toBe(202);
    expect((await from('198.51.100.1')).status).toBe(202);
    const limited = await from('198.51.100.1');
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('1');
    expect(await limited.json()).toMatchObject({ error: { code: 'rate_limited' } });
    expect((await from('198.51.100.2')).status).toBe(202);
    // The request refused by its address's bucket took nothing from the site's: a 4th fits.
    expect((await from('198.51.100.3')).status).toBe(202);
    // The site's bucket (4) is empty now, whatever the address.
    expect((await from('198.51.100.4')).status).toBe(429);
    t += 1000;
    expect((await from('198.51.100.1')).status).toBe(202);
    const text = await metrics.registry.metrics();
    expect(text).toContain('clickfold_ingest_events_rejected_total{route="/v1/collect",reason="rate_limited"} 2');
    expect(text).toContain('clickfold_ingest_requests_total{route="/v1/collect",status="429"} 2');
  });
});

describe('enrichment', () => {
  it('anonymises IPv4, IPv6 and IPv4-mapped IPv6 addresses', () => {
    expect(anonymizeIp('203.0.113.195')).toBe('203.0.113.0');
    expect(anonymizeIp('::ffff:203.0.113.195')).toBe('203.0.113.0');
    expect(anonymizeIp('::FFFF:10.1.2.3')).toBe('10.1.2.0');
    expect(anonymizeIp('2001:db8:85a3:8d3:1319:8a2e:370:7348')).toBe('2001:db8:85a3::');
    expect(anonymizeIp('2001:db8::1')).toBe('2001:db8:0::');
    expect(anonymizeIp('fe80::1%eth0')).toBe('fe80:0:0::');
    expect(anonymizeIp('::1')).toBe('0:0:0::');
    expect(anonymizeIp('not an ip')).toBeUndefined();
    expect(anonymizeIp('1:2:3:4:5:6:7:8:9')).toBeUndefined();
    expect(anonymizeIp(undefined)).toBeUndefined();
  });

  it('stores the anonymised address and the receive time next to a bounded client time', async () => {
    const rt = Date.UTC(2026, 0, 10);
    const log = new PartitionedLog(1);
    const app = createIngestApp({
      producer: log.producer(),
      logger: createLogger('test', 'silent'),
      maxBodyBytes: 65536,
      retryAfterSeconds: 2,
      clientIp: () => '2001:db8:1:2:3:4:5:6',
      now: () => rt,
    });
    const events = [
      { id: 'ok', type: 'page', ts: rt - 60_000, url: '/' },
      { id: 'future', type: 'page', ts: rt + 3_600_000, url: '/' },
      { id: 'ancient', type: 'page', ts: rt - 30 * 86_400_000, url: '/' },
    ];
    await app.request('/v1/collect', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ site: 'demo', visitor: 'v', events }),
    });
    const raw = log
      .read(TOPICS.raw)
      .flat()
      .map((m) => JSON.parse(m.value) as RawEvent);
    expect(raw.map((r) => [r.id, r.ts, r.rt, r.ip])).toEqual([
      ['ok', rt - 60_000, rt, '2001:db8:1::'],
      ['future', rt, rt, '2001:db8:1::'],
      ['ancient', rt, rt, '2001:db8:1::'],
    ]);
    expect(boundedTime(5, 10, 10, 0)).toBe(5);
  });

  it('parses user agents once and detects bots', () => {
    const parse = createUaParser(2);
    const a = parse(CHROME);
    expect(parse(CHROME)).toBe(a); // cached: the same object
    expect(a).toEqual({ ua: { b: 'Chrome 126', o: 'Linux', d: 'desktop' }, bot: false });
    expect(parse(GOOGLEBOT).bot).toBe(true);
    parse('curl/8.0');
    expect(parse(CHROME)).not.toBe(a); // evicted by the bound of 2
  });
});

describe('operations', () => {
  it('serves health, readiness and Prometheus metrics whose counters follow the traffic', async () => {
    const { app, collect } = setup({ sites: [{ id: 'shop' }] });
    expect((await app.request('/healthz')).status).toBe(200);
    expect(await (await app.request('/readyz')).json()).toEqual({ ready: true });
    await collect('shop', {}, 3);
    await collect('nowhere');
    await app.request('/v1/collect', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{oops' });
    const res = await app.request('/metrics');
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    expect(text).toContain('clickfold_ingest_events_accepted_total{route="/v1/collect"} 3');
    expect(text).toContain('clickfold_ingest_events_rejected_total{route="/v1/collect",reason="unknown_site"} 1');
    expect(text).toContain('clickfold_ingest_events_rejected_total{route="/v1/collect",reason="malformed_json"} 1');
    expect(text).toContain('clickfold_ingest_requests_total{route="/v1/collect",status="202"} 1');
    expect(text).toContain('clickfold_ingest_requests_total{route="/v1/collect",status="403"} 1');
    expect(text).toContain('clickfold_ingest_requests_total{route="/v1/collect",status="400"} 1');
    expect(text).toContain('clickfold_ingest_requests_in_flight{route="/v1/collect"} 0');
    expect(text).toMatch(/clickfold_ingest_produce_duration_seconds_count\{topic="clicks.raw"\} 1\n/);
    expect(text).toMatch(/clickfold_ingest_produce_duration_seconds_count\{topic="clicks.invalid"\} 2\n/);
    // Every answer carries a request id; a sane one from the sender is kept.
    const rid = await collect('shop', { 'x-request-id': 'req-42' });
    expect(rid.headers.get('x-request-id')).toBe('req-42');
    const generated = await collect('shop', { 'x-request-id': 'bad id\u0001' });
    expect(generated.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('body depth (ingest/body.ts)', () => {
  const app = createIngestApp({
    producer: new PartitionedLog(1).producer(),
    logger: createLogger('test', 'silent'),
    maxBodyBytes: 256 * 1024,
    retryAfterSeconds: 2,
  });
  const post = (body: string) => app.request('/v1/collect', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const nested = (levels: number) => {
    let v: unknown = 1;
    for (let i = 1; i < levels; i++) v = i % 2 ? [v] : { a: v };
    return v;
  };
  const codeOf = async (r: Response) => ((await r.json()) as { error?: { code?: string } }).error?.code;

  it('takes 16 levels, refuses 17 and 100,000 (as too_deep, before any validation)', async () => {
    // The envelope's own levels count: body, events, event, props, then the nested value.
    const at = (levels: number) =>
      JSON.stringify({
        site: 'demo',
        visitor: 'v-1',
        session: 's',
        events: [{ id: 'e', type: 'track', name: 'n', ts: Date.now(), props: { x: nested(levels - 3) } }],
      });
    expect(await codeOf(await post(at(16)))).not.toBe('too_deep');
    expect(await codeOf(await post(at(17)))).toBe('too_deep');
    expect(await codeOf(await post(`${'['.repeat(100_000)}${']'.repeat(100_000)}`))).toBe('too_deep');
  });
});
