import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { TOPICS } from '../../contract/raw-event.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import { createIngestApp } from '../../ingest/app.js';
import { compileSites, SitesFile } from '../../ingest/sites.js';
import { createLogger } from '../../lib/logger.js';
import { rawRecordsOf, recordsOf } from '../support/log-records.js';

const KEY = 'wk_test_0123456789';
const auth = (key: string) => `Basic ${Buffer.from(`${key}:`).toString('base64')}`;

function setup(bots: 'drop' | 'flag' = 'flag') {
  const log = new PartitionedLog(2);
  const sites = compileSites(SitesFile.parse({ sites: [{ id: 'crm', writeKeys: [KEY], bots }] }));
  const app = createIngestApp({ producer: log.producer(), logger: createLogger('test', 'silent'), maxBodyBytes: 64 * 1024, retryAfterSeconds: 2, sites });
  const send = (path: string, body: unknown, headers: Record<string, string> = { authorization: auth(KEY) }) =>
    app.request(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
    });
  const raw = () => rawRecordsOf(log);
  const invalid = () => recordsOf(log, TOPICS.invalid);
  return { app, send, raw, invalid };
}

const now = () => new Date().toISOString();

describe('Segment-compatible API', () => {
  it('maps track, page and identify calls to raw records keyed by person', async () => {
    const { send, raw } = setup();
    const track = await send('/v1/track', {
      userId: 'u-1',
      event: 'Call Completed',
      messageId: 'm-track-1',
      timestamp: now(),
      context: { channel: 'Call' },
      properties: { product: 'sku-7', revenue: 49.5, agent: { name: 'Kim', team: 'B' }, tags: ['a', 'b'] },
    });
    expect(track.status).toBe(200);
    expect(await track.json()).toEqual({ success: true, accepted: 1 });
    expect(
      (await send('/v1/page', { anonymousId: 'anon-9', name: 'Pricing', messageId: 'm-page-1', properties: { url: 'https://shop.example/pricing' } })).status,
    ).toBe(200);
    expect((await send('/v1/identify', { userId: 'auth0|42', anonymousId: 'anon-9', messageId: 'm-id-1', traits: { plan: 'pro' } })).status).toBe(200);

    const [t, p, i] = ['track', 'page', 'identify'].map((type) => raw().find((r) => r.type === type));
    expect(t).toMatchObject({
      key: 'u-1',
      v: 1,
      id: 'm-track-1',
      site: 'crm',
      person: 'u-1',
      user: 'u-1',
      channel: 'call',
      type: 'track',
      name: 'Call Completed',
      value: 49.5,
    });
    // Flattened; a person's name (here the agent's) is not kept by default (ingest/scrub.ts).
    expect(t!.props).toEqual({ product: 'sku-7', revenue: 49.5, 'agent.team': 'B', 'tags.0': 'a', 'tags.1': 'b' });
    expect(t!.ua).toBeUndefined(); // the library's own user agent is not the person's
    expect(t!.bot).toBeUndefined();
    expect(p).toMatchObject({
      key: 'anon-9',
      person: 'anon-9',
      visitor: 'anon-9',
      channel: 'server',
      type: 'page',
      name: 'Pricing',
      url: 'https://shop.example/pricing',
    });
    expect(i).toMatchObject({ key: 'auth0|42', person: 'auth0|42', user: 'auth0|42', visitor: 'anon-9', type: 'identify' });
    // Traits describe the person: none is kept unless the site allow-lists it (privacy.traits).
    expect(i!.props).toBeUndefined();
  });

  it('accepts what @segment/analytics-node sends: {batch, writeKey, sentAt}, write key in the body or in basic auth, gzip', async () => {
    const { send, raw } = setup();
    const sentAt = new Date();
    const event = (id: string, type = 'track') => ({
      type,
      event: 'Email Link Clicked',
      userId: 'u-2',
      messageId: id,
      properties: { channel: 'email', product: 'sku-1' },
      // The sender's clock runs 60 s fast: Segment's correction puts the event 5 s before receipt.
      timestamp: new Date(sentAt.getTime() + 55_000).toISOString(),
      context: { library: { name: '@segment/analytics-node', version: '3.1.0' } },
      integrations: {},
      _metadata: { nodeVersion: process.version, jsRuntime: 'node' },
    });
    const body = { batch: [event('b-1'), event('b-2')], writeKey: KEY, sentAt: new Date(sentAt.getTime() + 60_000).toISOString() };
    const res = await send('/v1/batch', body, { 'user-agent': 'analytics-node-next/latest' });
    expect(res.status).toBe(200);
    const gz = await send('/v1/batch', gzipSync(JSON.stringify({ batch: [event('b-3')] })), { authorization: auth(KEY), 'content-encoding': 'gzip' });
    expect(gz.status).toBe(200);

    const records = raw();
    expect(records.map((r) => r.id)).toEqual(['b-1', 'b-2', 'b-3']);
    expect(records[0]).toMatchObject({ channel: 'email', name: 'Email Link Clicked', props: { product: 'sku-1', channel: 'email' } });
    const skew = records[0]!.rt - records[0]!.ts;
    expect(skew).toBeGreaterThanOrEqual(4_000);
    expect(skew).toBeLessThanOrEqual(6_000);
  });

  it('answers 401 without a known write key, and dead-letters the request', async () => {
    const { send, raw, invalid } = setup();
    for (const headers of [{ authorization: auth('wk_unknown_000000') }, { authorization: 'Bearer abc' }, {} as Record<string, string>]) {
      const res = await send('/v1/track', { userId: 'u', event: 'x' }, headers);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toContain('Basic');
      expect(await res.json()).toMatchObject({ error: { code: 'unknown_write_key' } });
    }
    expect(raw()).toEqual([]);
    expect(invalid().map((d) => d.reason)).toEqual(['unknown_write_key', 'unknown_write_key', 'unknown_write_key']);
  });

  it('accepts the good events of a batch and reports the bad ones by index, each dead-lettered with its reason', async () => {
    const { send, raw, invalid } = setup();
    const res = await send('/v1/batch', {
      batch: [
        { type: 'track', userId: 'u-3', event: 'Ok', messageId: 'ok-1' },
        { type: 'track', event: 'No person', messageId: 'bad-1' },
        { type: 'group', userId: 'u-3', groupId: 'g', messageId: 'bad-2' },
        { type: 'track', userId: 'u-3', event: 5, messageId: 'bad-3' },
        { type: 'track', userId: 'u-3', event: 'Deep', properties: { a: { b: { c: { d: { e: { f: 1 } } } } } } },
        { type: 'track', userId: 'u-3', event: 'Proto', properties: JSON.parse('{"__proto__": {"polluted": true}}') },
        { type: 'track', userId: 'u-3', event: 'Bad channel', context: { channel: 'e mail!' } },
        { type: 'page', anonymousId: 'a-3', messageId: 'ok-2' },
      ],
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { success: boolean; accepted: number; rejected: number[]; error: { issues: { path: string; message: string }[] } };
    expect(body).toMatchObject({ success: false, accepted: 2, rejected: [1, 2, 3, 4, 5, 6] });
    const paths = body.error.issues.map((i) => i.path);
    expect(paths).toEqual(expect.arrayContaining(['batch.1.userId', 'batch.3.event', 'batch.4.properties', 'batch.5.properties', 'batch.6.context.channel']));
    expect(body.error.issues.find((i) => i.path === 'batch.4.properties')!.message).toContain('deeper');
    expect(raw().map((r) => r.id)).toEqual(['ok-1', 'ok-2']);
    expect(invalid()).toHaveLength(6);
    expect(invalid().map((d) => [d.index, d.reason, d.site])).toEqual([1, 2, 3, 4, 5, 6].map((i) => [i, 'invalid_event', 'crm']));
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('maps alias to identify, screen to an app page view, and bounds flattened properties', async () => {
    const { send, raw } = setup();
    const many = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, i]));
    const res = await send('/v1/batch', {
      batch: [
        { type: 'alias', userId: 'u-4', previousId: 'anon-4' },
        { type: 'screen', anonymousId: 'anon-4', name: 'Home' },
        { type: 'track', userId: 'u-4', event: 'Many', properties: { ...many, long: 'x'.repeat(2000) } },
      ],
    });
    expect(res.status).toBe(200);
    // Records of different people sit in different partitions: find them by kind, not by position.
    const alias = raw().find((r) => r.type === 'identify');
    const screen = raw().find((r) => r.type === 'page');
    const track = raw().find((r) => r.type === 'track');
    expect(alias).toMatchObject({ type: 'identify', person: 'u-4', user: 'u-4', visitor: 'anon-4' });
    expect(alias!.id).toMatch(/^seg-/);
    expect(screen).toMatchObject({ type: 'page', channel: 'app', name: 'Home' });
    expect(Object.keys(track!.props!)).toHaveLength(32);
    expect(track!.props!._dropped).toBe(41 - 31);
  });

  it('uses context.userAgent for bots and drops them when the site says so', async () => {
    const flag = setup('flag');
    const drop = setup('drop');
    const bot = {
      userId: 'u-5',
      event: 'Seen',
      context: { userAgent: 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)', ip: '203.0.113.77' },
    };
    expect(await (await flag.send('/v1/track', bot)).json()).toEqual({ success: true, accepted: 1 });
    expect(flag.raw()[0]).toMatchObject({ bot: true, ip: '203.0.113.0' });
    expect(await (await drop.send('/v1/track', bot)).json()).toEqual({ success: true, accepted: 0, dropped: 1 });
    expect(drop.raw()).toEqual([]);
  });

  it('refuses oversized, non-JSON and badly encoded bodies with the reason', async () => {
    const { send, raw, invalid } = setup();
    const big = await send('/v1/track', { userId: 'u', event: 'x', properties: { blob: 'x'.repeat(40_000) } });
    expect(big.status).toBe(413);
    expect((await send('/v1/track', 'userId=u', { authorization: auth(KEY), 'content-type': 'application/x-www-form-urlencoded' })).status).toBe(415);
    expect((await send('/v1/track', '{}', { authorization: auth(KEY), 'content-encoding': 'br' })).status).toBe(415);
    expect((await send('/v1/track', 'not gzip', { authorization: auth(KEY), 'content-encoding': 'gzip' })).status).toBe(400);
    expect((await send('/v1/track', new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]))).status).toBe(400);
    expect((await send('/v1/batch', { batch: [] })).status).toBe(400);
    expect(raw()).toEqual([]);
    expect(invalid().map((d) => d.reason)).toEqual([
      'body_too_large',
      'unsupported_media_type',
      'unsupported_encoding',
      'malformed_gzip',
      'invalid_utf8',
      'invalid_batch',
    ]);
    expect(invalid().every((d) => d.site === 'crm')).toBe(true);
  });

  it('never copies the write key into a dead letter', async () => {
    const { send, invalid } = setup();
    await send('/v1/batch', `{"writeKey":"${KEY}","batch":[{"type":"track"`, {});
    expect(JSON.stringify(invalid())).not.toContain(KEY);
  });
});
