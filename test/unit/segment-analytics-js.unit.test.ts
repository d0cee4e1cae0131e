import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { TOPICS, type RawEvent } from '../../contract/raw-event.js';
import { SegmentSettings } from '../../contract/segment.js';
import { createIngestApp } from '../../ingest/app.js';
import { compileSites, SitesFile } from '../../ingest/sites.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import { createLogger } from '../../lib/logger.js';
import { recordsOf } from '../support/log-records.js';

const KEY = 'wk_shop_0123456789';
const OTHER_KEY = 'wk_blog_secret_site_9876';
const SHOP = 'https://shop.example';
const CHROME = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36';
const auth = (key: string) => `Basic ${Buffer.from(`${key}:`).toString('base64')}`;

function setup(trustProxy = 0) {
  const log = new PartitionedLog(2);
  const sites = compileSites(
    SitesFile.parse({
      sites: [
        { id: 'acme-store', origins: [SHOP, 'https://*.shop.example'], writeKeys: [KEY] },
        { id: 'blog-internal', origins: ['https://blog.example'], writeKeys: [OTHER_KEY] },
      ],
    }),
  );
  const app = createIngestApp({
    producer: log.producer(),
    logger: createLogger('test', 'silent'),
    maxBodyBytes: 64 * 1024,
    retryAfterSeconds: 2,
    sites,
    clientIp: (c) => c.req.header('x-test-ip'),
    trustProxy,
  });
  /** As analytics.js sends from a page: text/plain, the page's Origin and agent. */
  const browser = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    app.request(path, {
      method: 'POST',
      headers: { 'content-type': 'text/plain', origin: SHOP, 'user-agent': CHROME, 'x-test-ip': '203.0.113.9', ...headers },
      body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
    });
  const raw = () => recordsOf<RawEvent>(log, TOPICS.raw);
  const invalid = () => recordsOf(log, TOPICS.invalid);
  return { app, browser, raw, invalid };
}

const page = (path: string, extra: Record<string, unknown> = {}) => ({
  url: `${SHOP}${path}`,
  path,
  referrer: '',
  search: '',
  title: 'Trail Runner 2',
  ...extra,
});

/** What analytics.js 2.0 (analytics-next 1.84) posts, trimmed of nothing it needs. */
const ajs = (type: string, fields: Record<string, unknown>, path = '/products/sku-1') => ({
  timestamp: new Date().toISOString(),
  integrations: { 'Segment.io': true },
  type,
  context: {
    page: page(path),
    userAgent: CHROME,
    locale: 'en-US',
    library: { name: 'analytics.js', version: 'next-1.84.3' },
    timezone: 'UTC',
  },
  messageId: `ajs-next-${Date.now()}-${Math.random().toString(16).slice(2)}`,
  anonymousId: 'e339ccb7-bdda-445f-94a3-21c8bf559ed9',
  writeKey: KEY,
  userId: null,
  sentAt: new Date().toISOString(),
  ...fields,
});

describe('analytics.js (analytics-next) on the Segment-compatible API', () => {
  it('takes its short paths, text/plain bodies, the write key in the body or in Authorization', async () => {
    const { browser, raw } = setup();
    const calls: [string, unknown, Record<string, string>?][] = [
      ['/v1/p', ajs('page', { messageId: 'p-1', properties: page('/products/sku-1') })],
      [
        '/v1/p',
        ajs('page', { messageId: 'p-2', name: 'Specs', properties: page('/products/sku-1/specs', { referrer: `${SHOP}/products/sku-1`, variant: 'b' }) }),
      ],
      [
        '/v1/t',
        ajs('track', { messageId: 't-1', event: 'Order Completed', properties: { revenue: 129, products: [{ product_id: 'sku-1' }] } }, '/checkout/sku-1'),
        { authorization: auth(KEY) },
      ],
      ['/v1/i', ajs('identify', { messageId: 'i-1', userId: 'u-42', traits: { plan: 'pro' } }), { authorization: auth(KEY) }],
      ['/v1/a', ajs('alias', { messageId: 'a-1', userId: 'u-43', previousId: 'u-42' })],
      ['/v1/s', ajs('screen', { messageId: 's-1', name: 'Home' })],
    ];
    for (const [path, body, headers] of calls) {
      const res = await browser(path, body, headers);
      expect([path, res.status, await res.json()]).toEqual([path, 200, { success: true, accepted: 1 }]);
    }
    const byId = new Map(raw().map((r) => [r.id, r]));
    // A page call is the snippet's page view: url, title, no empty referrer, the page fields not again in props.
    expect(byId.get('p-1')).toEqual({
      v: 1,
      id: 'p-1',
      site: 'acme-store',
      person: 'e339ccb7-bdda-445f-94a3-21c8bf559ed9',
      visitor: 'e339ccb7-bdda-445f-94a3-21c8bf559ed9',
      channel: 'web',
      type: 'page',
      ts: expect.any(Number),
      rt: expect.any(Number),
      url: `${SHOP}/products/sku-1`,
      title: 'Trail Runner 2',
      ua: { b: 'Chrome 126', o: 'Linux', d: 'desktop' },
      // The request's own address, anonymised, as for the snippet.
      ip: '203.0.113.0',
    });
    expect(byId.get('p-2')).toMatchObject({ name: 'Specs', ref: `${SHOP}/products/sku-1`, props: { variant: 'b' } });
    expect(byId.get('t-1')).toMatchObject({ type: 'track', name: 'Order Completed', channel: 'web', url: `${SHOP}/checkout/sku-1`, value: 129 });
    expect(byId.get('i-1')).toMatchObject({ type: 'identify', person: 'u-42', user: 'u-42', visitor: 'e339ccb7-bdda-445f-94a3-21c8bf559ed9' });
    expect(byId.get('a-1')).toMatchObject({ type: 'identify', person: 'u-43', user: 'u-43', visitor: 'u-42' });
    expect(byId.get('s-1')).toMatchObject({ type: 'page', channel: 'app', name: 'Home' });
  });

  it('takes its batching delivery on /v1/b, and context.channel over the browser default', async () => {
    const { browser, raw } = setup();
    const res = await browser('/v1/b', {
      writeKey: KEY,
      sentAt: new Date().toISOString(),
      batch: [
        ajs('page', { messageId: 'b-1', properties: page('/products/sku-2') }),
        ajs('track', {
          messageId: 'b-2',
          event: 'Email Link Clicked',
          properties: { product: 'sku-2' },
          context: { channel: 'email', page: page('/welcome') },
        }),
      ],
    });
    expect(await res.json()).toEqual({ success: true, accepted: 2 });
    expect(raw().map((r) => [r.id, r.channel])).toEqual(
      expect.arrayContaining([
        ['b-1', 'web'],
        ['b-2', 'email'],
      ]),
    );
  });

  it('refuses group calls with the reason, on /v1/g and /v1/group', async () => {
    const { browser, raw, invalid } = setup();
    for (const path of ['/v1/g', '/v1/group']) {
      const res = await browser(path, ajs('group', { groupId: 'acme', userId: 'u-1' }));
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({
        error: { code: 'invalid_event', issues: [{ path: 'type', message: expect.stringContaining('group is not supported') }] },
      });
    }
    expect(raw()).toEqual([]);
    expect(invalid().map((d) => [d.route, d.reason])).toEqual([
      ['/v1/g', 'invalid_event'],
      ['/v1/group', 'invalid_event'],
    ]);
  });
});

describe('CORS on the Segment-compatible API', () => {
  const preflight = (app: ReturnType<typeof setup>['app'], path: string, origin: string) =>
    app.request(path, {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' },
    });

  it('answers preflights for the sites’ origins, with the headers analytics.js sends', async () => {
    const { app } = setup();
    for (const path of ['/v1/t', '/v1/p', '/v1/i', '/v1/a', '/v1/b', '/v1/batch']) {
      const ok = await preflight(app, path, 'https://m.shop.example');
      expect(ok.status).toBe(204);
      expect(ok.headers.get('access-control-allow-origin')).toBe('https://m.shop.example');
      expect(ok.headers.get('access-control-allow-headers')).toBe('authorization, content-type, x-retry-count');
      expect((await preflight(app, path, 'https://evil.example')).status).toBe(403);
    }
  });

  it('refuses a page of an origin its site does not allow, and says so to that page', async () => {
    const { browser, raw, invalid } = setup();
    // The blog's page using the shop's write key, in the body and in Authorization.
    for (const headers of [{ origin: 'https://blog.example' }, { origin: 'https://blog.example', authorization: auth(KEY) }] as Record<string, string>[]) {
      const res = await browser('/v1/t', ajs('track', { event: 'x' }), headers);
      expect(res.status).toBe(403);
      expect(res.headers.get('access-control-allow-origin')).toBe('https://blog.example');
      expect(await res.json()).toMatchObject({ error: { code: 'origin_not_allowed' } });
    }
    expect(raw()).toEqual([]);
    expect(invalid().map((d) => [d.reason, d.site])).toEqual([
      ['origin_not_allowed', 'acme-store'],
      ['origin_not_allowed', 'acme-store'],
    ]);
    expect(JSON.stringify(invalid())).not.toContain(KEY);
    // Its own origin: accepted, and readable by the page (Retry-After too).
    const ok = await browser('/v1/t', ajs('track', { event: 'x' }));
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBe(SHOP);
    expect(ok.headers.get('access-control-expose-headers')).toBe('Retry-After');
  });
});

describe('the settings document (GET /v1/projects/:writeKey/settings)', () => {
  const get = (app: ReturnType<typeof setup>['app'], key: string, headers: Record<string, string> = {}) =>
    app.request(`/v1/projects/${key}/settings`, { headers: { host: 'ingest.example:8443', ...headers } });

  it('points analytics.js at ingest, and says nothing but what the page already knows', async () => {
    const { app } = setup();
    const res = await get(app, KEY, { origin: SHOP });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(SHOP);
    expect(res.headers.get('cache-control')).toBe('private, max-age=300');
    const text = await res.text();
    // Strict: any field beyond the one destination would fail here.
    const settings = SegmentSettings.parse(JSON.parse(text));
    expect(settings.integrations['Segment.io']).toMatchObject({ apiKey: KEY, apiHost: 'ingest.example:8443/v1', protocol: 'http' });
    expect(settings.metrics.sampleRate).toBe(0);
    for (const secret of ['acme-store', OTHER_KEY, 'blog', 'https://']) expect(text).not.toContain(secret);
  });

  it('names the host and scheme the browser used behind trusted proxies, counted from the right as X-Forwarded-For', async () => {
    const apiOf = async (res: Response) => SegmentSettings.parse(await res.json()).integrations['Segment.io'];
    // Two proxies: the outer one saw the browser's host, the inner one the outer's.
    const two = setup(2).app;
    expect(await apiOf(await get(two, KEY, { 'x-forwarded-host': 'T.Shop.Example, ingest.internal', 'x-forwarded-proto': 'https, http' }))).toMatchObject({
      apiHost: 't.shop.example/v1',
      protocol: 'https',
    });
    // One proxy that appends: what a client sent ahead of it is not believed.
    const one = setup(1).app;
    expect(await apiOf(await get(one, KEY, { 'x-forwarded-host': 'evil.example, t.shop.example', 'x-forwarded-proto': 'https' }))).toMatchObject({
      apiHost: 't.shop.example/v1',
      protocol: 'https',
    });
    const bad = await get(one, KEY, { 'x-forwarded-host': 'evil.example/"><script>' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { code: 'invalid_host' } });
  });

  it('ignores forwarded host and scheme without a trusted proxy (TRUST_PROXY 0): the request’s own Host', async () => {
    const { app } = setup();
    const res = await get(app, KEY, { host: 'ingest.example:8443', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' });
    expect(SegmentSettings.parse(await res.json()).integrations['Segment.io']).toMatchObject({ apiHost: 'ingest.example:8443/v1', protocol: 'http' });
  });

  it('answers 404 to unknown, overlong and path-like write keys, and 403 to a foreign origin', async () => {
    const { app } = setup();
    const keys = [
      'wk_unknown_0000000',
      KEY.toUpperCase(),
      `${KEY}x`,
      '%2e%2e',
      '..%2f..%2fetc%2fpasswd',
      encodeURIComponent(`${KEY}/../${OTHER_KEY}`),
      '%00',
      '%E0%A4%A',
      'k'.repeat(5000),
      encodeURIComponent('__proto__'),
      'constructor',
    ];
    for (const key of keys) {
      const res = await get(app, key);
      const text = await res.text();
      expect([key.slice(0, 40), res.status]).toEqual([key.slice(0, 40), 404]);
      // `%2e%2e` is `..` to the URL parser: no such route at all, the plain 404.
      if (key !== '%2e%2e') expect(JSON.parse(text)).toEqual({ error: { code: 'unknown_write_key', message: 'no site has this write key' } });
      for (const secret of [KEY, OTHER_KEY, 'acme-store', 'blog-internal']) expect(text).not.toContain(secret);
    }
    const foreign = await get(app, KEY, { origin: 'https://blog.example' });
    expect(foreign.status).toBe(403);
    expect(await foreign.text()).not.toContain(KEY);
    // Another site's key gives that site's document, naming nothing of the first.
    const other = await get(app, OTHER_KEY, { origin: 'https://blog.example' });
    expect(other.status).toBe(200);
    expect(await other.text()).not.toContain(KEY);
  });
});

describe('what the server libraries send', () => {
  it('takes RudderStack’s gzipped JSON labelled application/x-www-form-urlencoded, and refuses a real form', async () => {
    const { app, raw, invalid } = setup();
    const post = (path: string, body: string | Uint8Array, headers: Record<string, string>) => app.request(path, { method: 'POST', headers, body });
    const rudder = {
      'content-type': 'application/x-www-form-urlencoded',
      'content-encoding': 'gzip',
      authorization: auth(KEY),
      'user-agent': 'analytics-node/3.0.13',
    };
    const batch = {
      batch: [
        {
          type: 'track',
          event: 'Call Completed',
          userId: 'u-7',
          messageId: 'r-1',
          channel: 'server',
          properties: { revenue: 40 },
          context: { library: { name: 'analytics-node', version: '3.0.13' } },
          _metadata: { nodeVersion: '20' },
          originalTimestamp: new Date().toISOString(),
        },
      ],
      timestamp: new Date().toISOString(),
      sentAt: new Date().toISOString(),
    };
    const ok = await post('/v1/batch', new Uint8Array(gzipSync(JSON.stringify(batch))), rudder);
    expect([ok.status, await ok.json()]).toEqual([200, { success: true, accepted: 1 }]);
    expect(raw()).toMatchObject([{ id: 'r-1', channel: 'server', value: 40 }]);
    // Not gzipped, with a charset: the same.
    expect(
      (
        await post('/v1/batch', JSON.stringify({ batch: [{ ...batch.batch[0], messageId: 'r-2' }] }), {
          ...rudder,
          'content-encoding': 'identity',
          'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
        })
      ).status,
    ).toBe(200);

    const form = await post('/v1/track', `writeKey=${KEY}&userId=u-7&event=x`, { 'content-type': 'application/x-www-form-urlencoded' });
    expect(form.status).toBe(415);
    expect(await form.json()).toMatchObject({ error: { code: 'unsupported_media_type', message: expect.stringContaining('form') } });
    const gzForm = await post('/v1/batch', new Uint8Array(gzipSync('batch=1')), rudder);
    expect(gzForm.status).toBe(415);
    const bomb = await post('/v1/batch', new Uint8Array(gzipSync(Buffer.alloc(2 * 1024 * 1024, 0x20))), rudder);
    expect(bomb.status).toBe(413);
    const plain = await post('/v1/t', 'hello', { 'content-type': 'text/plain', authorization: auth(KEY) });
    expect([plain.status, ((await plain.json()) as { error: { code: string } }).error.code]).toEqual([400, 'malformed_json']);
    // The snippet's endpoint keeps refusing form bodies, JSON or not.
    const collect = await post('/v1/collect', JSON.stringify({ site: 'acme-store', visitor: 'v', events: [] }), {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(collect.status).toBe(415);

    expect(raw().map((r) => r.id)).toEqual(['r-1', 'r-2']);
    expect(invalid().map((d) => d.reason)).toEqual([
      'unsupported_media_type',
      'unsupported_media_type',
      'body_too_large',
      'malformed_json',
      'unsupported_media_type',
    ]);
    // A form's fields escape the JSON redaction: its text is not kept.
    expect(JSON.stringify(invalid())).not.toContain(KEY);
  });
});
