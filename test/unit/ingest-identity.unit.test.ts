import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { TOPICS } from '../../contract/raw-event.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import { createIngestApp } from '../../ingest/app.js';
import { signUser, userVerifier } from '../../ingest/identity.js';
import { createIngestMetrics } from '../../ingest/metrics.js';
import { compileSites, parseSites, SitesFile } from '../../ingest/sites.js';
import { createLogger } from '../../lib/logger.js';
import { rawRecordsOf, recordsOf } from '../support/log-records.js';

const SECRET = 'identity-secret-0123456789';
const OTHER_SECRET = 'another-secret-0123456789';
/** What the site's own server computes (written out here, not taken from ingest). */
const sign = (user: string, secret = SECRET) => createHmac('sha256', secret).update(user).digest('hex');
const KEY = 'wk_signed_0123456789';
const OPEN_KEY = 'wk_open_0123456789';
const ORIGIN = 'https://shop.example';

function setup() {
  const log = new PartitionedLog(2);
  const metrics = createIngestMetrics();
  const sites = compileSites(
    SitesFile.parse({
      sites: [
        { id: 'signed', origins: [ORIGIN], writeKeys: [KEY], identitySecret: SECRET },
        { id: 'open', origins: [ORIGIN], writeKeys: [OPEN_KEY] },
      ],
    }),
  );
  const app = createIngestApp({ producer: log.producer(), logger: createLogger('test', 'silent'), maxBodyBytes: 65536, retryAfterSeconds: 2, sites, metrics });
  let n = 0;
  const ev = (type: string, extra: Record<string, unknown> = {}) => ({ id: `e${++n}`, type, ts: Date.now(), url: 'https://shop.example/p', ...extra });
  const collect = async (body: Record<string, unknown>) => {
    const res = await app.request('/v1/collect', { method: 'POST', headers: { 'content-type': 'text/plain', origin: ORIGIN }, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const segment = async (path: string, body: unknown, headers: Record<string, string>) => {
    const res = await app.request(path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const raw = () => rawRecordsOf(log);
  const invalid = () => recordsOf(log, TOPICS.invalid);
  return { ev, collect, segment, raw, invalid, metrics };
}

describe('user id signatures', () => {
  it('accept exactly hex HMAC-SHA256(secret, user id)', () => {
    const verify = userVerifier(SECRET);
    const sig = sign('user-42');
    expect(signUser(SECRET, 'user-42')).toBe(sig);
    expect(verify('user-42', sig)).toBe(true);
    expect(verify('user-42', sig.toUpperCase())).toBe(true);
    for (const bad of [
      undefined,
      '',
      sig.slice(0, 63),
      `${sig}0`,
      `${sig}${sig}`,
      sig.replace(/.$/, 'g'),
      sign('user-43'),
      sign('user-42', OTHER_SECRET),
      'x'.repeat(100_000),
    ]) {
      expect(verify('user-42', bad), String(bad).slice(0, 80)).toBe(false);
    }
  });

  it('need a secret of 16+ characters in the sites file', () => {
    expect(() => parseSites('{"sites": [{"id": "a", "identitySecret": "short"}]}', 'sites.json')).toThrow(
      /sites\.json:1: sites\.0\.identitySecret: an identity secret has at least 16 characters/,
    );
    expect(parseSites(`{"sites": [{"id": "a", "identitySecret": "${SECRET}"}]}`).sites[0]!.identitySecret).toBe(SECRET);
  });
});

describe('signed identify on /v1/collect', () => {
  it('produces a signed identify and the signed batch user', async () => {
    const { ev, collect, raw, invalid } = setup();
    const res = await collect({
      site: 'signed',
      visitor: 'v-1',
      user: 'u-1',
      sig: sign('u-1'),
      events: [ev('identify', { user: 'u-1', sig: sign('u-1') }), ev('page')],
    });
    expect(res).toEqual({ status: 202, body: { accepted: 2 } });
    expect(raw().map((r) => [r.type, r.key, r.person, r.user, r.visitor])).toEqual([
      ['identify', 'u-1', 'u-1', 'u-1', 'v-1'],
      ['page', 'u-1', 'u-1', 'u-1', 'v-1'],
    ]);
    // The signature itself is not stored with the event.
    expect(JSON.stringify(raw())).not.toContain(sign('u-1'));
    expect(invalid()).toEqual([]);
  });

  it('refuses an identify with a missing, wrong or foreign signature, and accepts the rest of the batch', async () => {
    const { ev, collect, raw, invalid, metrics } = setup();
    const res = await collect({
      site: 'signed',
      visitor: 'v-2',
      events: [
        ev('page'),
        ev('identify', { user: 'ceo' }),
        ev('identify', { user: 'ceo', sig: 'f'.repeat(64) }),
        ev('identify', { user: 'ceo', sig: sign('someone-else') }),
        ev('identify', { user: 'ceo', sig: sign('ceo', OTHER_SECRET) }),
        ev('track', { name: 'After' }),
      ],
    });
    expect(res).toEqual({ status: 202, body: { accepted: 2, refused: 4 } });
    expect(raw().map((r) => [r.type, r.person, r.user])).toEqual([
      ['page', 'v-2', undefined],
      ['track', 'v-2', undefined],
    ]);
    const letters = invalid();
    expect(letters.map((d) => [d.reason, d.index, d.site])).toEqual([1, 2, 3, 4].map((i) => ['unsigned_identify', i, 'signed']));
    expect(letters[0]).toMatchObject({ issues: [{ path: 'events.1.sig', message: 'this site signs user ids: sig is required' }] });
    expect(letters[1]).toMatchObject({ issues: [{ path: 'events.2.sig', message: 'sig is not the signature of user' }] });
    expect(await metrics.registry.metrics()).toContain('clickfold_ingest_events_rejected_total{route="/v1/collect",reason="unsigned_identify"} 4');
  });

  it('refuses an overlong signature as an invalid event (400 naming it), the rest accepted', async () => {
    const { ev, collect, raw, invalid } = setup();
    const res = await collect({ site: 'signed', visitor: 'v-3', events: [ev('page'), ev('identify', { user: 'u-3', sig: 'a'.repeat(129) })] });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ accepted: 1, rejected: [1], error: { code: 'invalid_event', issues: [{ path: 'events.1.sig' }] } });
    expect(raw()).toHaveLength(1);
    expect(invalid().map((d) => d.reason)).toEqual(['invalid_event']);
    // On the envelope it makes the whole batch invalid, like any other bad envelope field.
    const envelope = await collect({ site: 'signed', visitor: 'v-3', user: 'u-3', sig: 'a'.repeat(10_000), events: [ev('page')] });
    expect(envelope.status).toBe(400);
    expect(envelope.body).toMatchObject({ error: { code: 'invalid_batch', issues: [{ path: 'sig' }] } });
  });

  it('keeps the events of a batch whose user is not signed as the anonymous visitor’s', async () => {
    const { ev, collect, raw, invalid, metrics } = setup();
    for (const sig of [undefined, sign('u-other'), 'not hex']) {
      const res = await collect({
        site: 'signed',
        visitor: 'v-4',
        user: 'u-4',
        ...(sig === undefined ? {} : { sig }),
        events: [ev('page'), ev('track', { name: 'x' })],
      });
      expect(res).toEqual({ status: 202, body: { accepted: 2, unsigned: 2 } });
    }
    expect(raw().every((r) => r.person === 'v-4' && r.key === 'v-4' && r.user === undefined && r.visitor === 'v-4')).toBe(true);
    expect(raw()).toHaveLength(6);
    // Not a refusal: nothing dead-lettered, but counted for the site's operators.
    expect(invalid()).toEqual([]);
    expect(await metrics.registry.metrics()).toContain('clickfold_ingest_unsigned_users_total{route="/v1/collect"} 6');
    // A signed identify in such a batch still names its own user.
    const events = [ev('identify', { user: 'u-4', sig: sign('u-4') }), ev('page')];
    const mixed = await collect({ site: 'signed', visitor: 'v-4', user: 'u-4', events });
    expect(mixed.body).toEqual({ accepted: 2, unsigned: 1 });
    const ids = new Set(events.map((e) => e.id));
    // Different people, so possibly different partitions: compare as a set.
    expect(
      raw()
        .filter((r) => ids.has(r.id))
        .map((r) => `${r.type} ${r.person}`)
        .sort(),
    ).toEqual(['identify u-4', 'page v-4']);
  });

  it('leaves sites without a secret exactly as before', async () => {
    const { ev, collect, raw, invalid } = setup();
    const res = await collect({ site: 'open', visitor: 'v-5', user: 'u-5', sig: 'whatever', events: [ev('identify', { user: 'u-5' }), ev('page')] });
    expect(res).toEqual({ status: 202, body: { accepted: 2 } });
    expect(raw().map((r) => [r.type, r.person, r.user])).toEqual([
      ['identify', 'u-5', 'u-5'],
      ['page', 'u-5', 'u-5'],
    ]);
    expect(invalid()).toEqual([]);
  });
});

describe('signed identify on the Segment-compatible API', () => {
  const auth = (key: string) => ({ authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}` });

  it('trusts server calls (no Origin) with any userId', async () => {
    const { segment, raw } = setup();
    const res = await segment('/v1/identify', { userId: 'u-10', anonymousId: 'a-10', traits: { plan: 'pro' } }, auth(KEY));
    expect(res).toEqual({ status: 200, body: { success: true, accepted: 1 } });
    expect(raw()[0]).toMatchObject({ type: 'identify', person: 'u-10', user: 'u-10', visitor: 'a-10' });
  });

  it('needs context.clickfold.sig on browser calls (Origin) to a site with a secret', async () => {
    const { segment, raw, invalid, metrics } = setup();
    const browser = { ...auth(KEY), origin: ORIGIN };
    const res = await segment(
      '/v1/batch',
      {
        batch: [
          { type: 'identify', userId: 'u-11', anonymousId: 'a-11', messageId: 'signed-identify', context: { clickfold: { sig: sign('u-11') } } },
          { type: 'identify', userId: 'ceo', anonymousId: 'a-11', messageId: 'unsigned-identify' },
          { type: 'alias', userId: 'ceo', previousId: 'a-11', messageId: 'unsigned-alias', context: { clickfold: { sig: sign('u-11') } } },
          { type: 'track', userId: 'ceo', anonymousId: 'a-11', event: 'Viewed', messageId: 'anonymous-track' },
          { type: 'track', userId: 'ceo', event: 'Viewed', messageId: 'nobody-track' },
          { type: 'page', userId: 'u-11', anonymousId: 'a-11', messageId: 'signed-page', context: { clickfold: { sig: sign('u-11') } } },
          { type: 'page', anonymousId: 'a-11', messageId: 'anonymous-page' },
        ],
      },
      browser,
    );
    expect(res).toEqual({ status: 200, body: { success: true, accepted: 4, refused: 3, unsigned: 1 } });
    expect(
      raw()
        .map((r) => [r.id, r.person, r.user])
        .sort(),
    ).toEqual(
      [
        ['anonymous-page', 'a-11', undefined],
        ['anonymous-track', 'a-11', undefined],
        ['signed-identify', 'u-11', 'u-11'],
        ['signed-page', 'u-11', 'u-11'],
      ].sort(),
    );
    expect(invalid().map((d) => [d.index, d.reason])).toEqual([
      [1, 'unsigned_identify'],
      [2, 'unsigned_identify'],
      [4, 'unsigned_identify'],
    ]);
    expect(invalid()[0]).toMatchObject({ issues: [{ path: 'batch.1.context.clickfold.sig' }] });
    const text = await metrics.registry.metrics();
    expect(text).toContain('clickfold_ingest_events_rejected_total{route="/v1/batch",reason="unsigned_identify"} 3');
    expect(text).toContain('clickfold_ingest_unsigned_users_total{route="/v1/batch"} 1');
  });

  it('takes the signature from the batch context too, and refuses an overlong one', async () => {
    const { segment, raw } = setup();
    const browser = { ...auth(KEY), origin: ORIGIN };
    const res = await segment(
      '/v1/batch',
      { context: { clickfold: { sig: sign('u-12') } }, batch: [{ type: 'identify', userId: 'u-12', anonymousId: 'a-12' }] },
      browser,
    );
    expect(res.body).toEqual({ success: true, accepted: 1 });
    expect(raw()[0]).toMatchObject({ person: 'u-12' });
    const long = await segment('/v1/identify', { userId: 'u-12', context: { clickfold: { sig: 'a'.repeat(129) } } }, browser);
    expect(long.status).toBe(400);
    expect(long.body).toMatchObject({ error: { code: 'invalid_event', issues: [{ path: 'context.clickfold.sig' }] } });
    const single = await segment('/v1/identify', { userId: 'ceo', anonymousId: 'a-12' }, browser);
    expect(single).toEqual({ status: 200, body: { success: true, accepted: 0, refused: 1 } });
  });

  it('leaves browser calls to a site without a secret as before', async () => {
    const { segment, raw } = setup();
    const res = await segment('/v1/identify', { userId: 'u-13', anonymousId: 'a-13' }, { ...auth(OPEN_KEY), origin: ORIGIN });
    expect(res).toEqual({ status: 200, body: { success: true, accepted: 1 } });
    expect(raw()[0]).toMatchObject({ person: 'u-13', user: 'u-13' });
  });
});
