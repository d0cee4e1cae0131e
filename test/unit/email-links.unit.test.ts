import { describe, expect, it } from 'vitest';
import { canonicalEmailParams, emailClickUrl, emailOpenUrl, signEmailLink, verifyEmailLink } from '../../contract/email.js';
import { TOPICS, type RawEvent } from '../../contract/raw-event.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import { createIngestApp } from '../../ingest/app.js';
import { compileSites, SitesFile } from '../../ingest/sites.js';
import { createLogger } from '../../lib/logger.js';
import { recordsOf } from '../support/log-records.js';

const SECRET = 'test-secret-0123456789abcdef';
const BASE = 'http://ingest.test';
const GMAIL_PROXY = 'Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)';

function setup(secret: string | null = SECRET, bots: 'drop' | 'flag' = 'drop') {
  const linkSecret = secret ?? undefined;
  const log = new PartitionedLog(1);
  const sites = compileSites(SitesFile.parse({ sites: [{ id: 'shop', redirectHosts: ['shop.example', '*.cdn.example'], bots }] }));
  const app = createIngestApp({
    producer: log.producer(),
    logger: createLogger('test', 'silent'),
    maxBodyBytes: 65536,
    retryAfterSeconds: 2,
    sites,
    linkSecret,
  });
  const get = (url: string, ua = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko)') =>
    app.request(url.replace(BASE, ''), { headers: { accept: 'image/avif,image/webp,image/*,*/*;q=0.8', 'user-agent': ua } });
  const raw = () => recordsOf<RawEvent>(log, TOPICS.raw);
  const invalid = () => recordsOf(log, TOPICS.invalid);
  return { get, raw, invalid };
}

async function expectGif(res: Response) {
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('image/gif');
  expect(res.headers.get('cache-control')).toContain('no-store');
  const bytes = new Uint8Array(await res.arrayBuffer());
  expect(Buffer.from(bytes.subarray(0, 6)).toString('latin1')).toBe('GIF89a');
  expect([bytes[6], bytes[8]]).toEqual([1, 1]); // 1x1
}

describe('e-mail open pixel', () => {
  it('answers a 1x1 GIF and records Email Opened with the person and campaign', async () => {
    const { get, raw } = setup();
    await expectGif(await get(emailOpenUrl(BASE, { site: 'shop', user: 'u-1', campaign: 'spring', msg: 'm-1' })));
    expect(raw()).toMatchObject([
      { site: 'shop', person: 'u-1', user: 'u-1', channel: 'email', type: 'track', name: 'Email Opened', props: { campaign: 'spring', msg: 'm-1' } },
    ]);
  });

  it('still answers the GIF to bad parameters, and dead-letters them with the reason', async () => {
    const { get, raw, invalid } = setup();
    await expectGif(await get(`${BASE}/v1/email/open?site=shop&campaign=spring`));
    await expectGif(await get(`${BASE}/v1/email/open?site=nowhere&user=u&campaign=c`));
    await expectGif(await get(`${BASE}/v1/email/open?site=shop&user=u&user=v&campaign=c`));
    await expectGif(await get(`${BASE}/v1/email/open?site=shop&user=u&campaign=c&p.__proto__=x`));
    expect(raw()).toEqual([]);
    expect(invalid().map((d) => d.reason)).toEqual(['invalid_params', 'unknown_site', 'invalid_params', 'invalid_params']);
    expect(invalid()[0]).toMatchObject({ site: 'shop', issues: [{ path: 'user' }] });
  });

  it('counts an open through a mail image proxy (Gmail) even on a site that drops bots', async () => {
    const { get, raw } = setup(SECRET, 'drop');
    await expectGif(await get(emailOpenUrl(BASE, { site: 'shop', user: 'u-2', campaign: 'c' }), GMAIL_PROXY));
    await expectGif(await get(emailOpenUrl(BASE, { site: 'shop', user: 'u-2', campaign: 'c' }), 'Mozilla/5.0 (compatible; Googlebot/2.1)'));
    expect(raw()).toHaveLength(1);
    expect(raw()[0]!.bot).toBeUndefined();
  });
});

describe('e-mail click redirect', () => {
  const params = { site: 'shop', user: 'u-3', campaign: 'spring', link: 'cta', url: 'https://elsewhere.example/p/1?x=1', 'p.product': 'sku-1' };

  it('redirects a signed link with 302 and records Email Link Clicked with its props', async () => {
    const { get, raw } = setup();
    const res = await get(emailClickUrl(BASE, SECRET, params));
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('https://elsewhere.example/p/1?x=1');
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    expect(raw()).toMatchObject([
      {
        person: 'u-3',
        channel: 'email',
        name: 'Email Link Clicked',
        // The reader goes to the whole target; the record keeps it without its query (privacy by default).
        url: 'https://elsewhere.example/p/1',
        props: { campaign: 'spring', link: 'cta', product: 'sku-1' },
      },
    ]);
  });

  it('keeps the signature valid when a mail system appends tracking parameters', async () => {
    const { get } = setup();
    const res = await get(`${emailClickUrl(BASE, SECRET, params)}&utm_source=newsletter`);
    expect(res.status).toBe(302);
  });

  it('redirects unsigned links only to the site’s allow-listed hosts', async () => {
    const { get, raw } = setup(null);
    const ok = await get(`${BASE}/v1/email/click?site=shop&user=u-4&campaign=c&url=${encodeURIComponent('https://img.cdn.example/a')}`);
    expect(ok.status).toBe(302);
    expect(ok.headers.get('location')).toBe('https://img.cdn.example/a');
    expect(raw()).toHaveLength(1);
  });

  it('refuses unsigned, tampered, foreign and non-http targets with 400 and never redirects', async () => {
    const { get, raw, invalid } = setup();
    const signed = new URL(emailClickUrl(BASE, SECRET, params));
    const tampered = new URL(signed);
    tampered.searchParams.set('url', 'https://evil.example/');
    const cases: [string, string][] = [
      [`${BASE}/v1/email/click?site=shop&user=u&campaign=c&url=${encodeURIComponent('https://evil.example/')}`, 'unsigned_redirect'],
      [`${BASE}/v1/email/click?site=other&user=u&campaign=c&url=${encodeURIComponent('https://shop.example/')}`, 'unsigned_redirect'],
      [tampered.href, 'bad_signature'],
      [`${BASE}/v1/email/click?site=shop&user=u&campaign=c&url=${encodeURIComponent('javascript:alert(1)')}`, 'invalid_target'],
      [`${BASE}/v1/email/click?site=shop&user=u&campaign=c&url=${encodeURIComponent('https://shop.example@evil.example/')}`, 'invalid_target'],
      [`${BASE}/v1/email/click?site=shop&user=u&campaign=c`, 'invalid_target'],
      [`${signed.href}&url=${encodeURIComponent('https://evil.example/')}`, 'invalid_params'],
    ];
    for (const [url, reason] of cases) {
      const res = await get(url);
      expect(res.status, url).toBe(400);
      expect(res.headers.get('location')).toBeNull();
      expect(await res.json()).toMatchObject({ error: { code: reason } });
    }
    expect(raw()).toEqual([]);
    expect(invalid().map((d) => d.reason)).toEqual(cases.map(([, r]) => r));
  });

  it('refuses signed links when no secret is configured', async () => {
    const { get } = setup(null);
    const res = await get(emailClickUrl(BASE, SECRET, params));
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: 'bad_signature' } });
  });

  it('signs a canonical, order-independent form of the known parameters', () => {
    expect(
      canonicalEmailParams([
        ['user', 'u'],
        ['site', 's'],
        ['utm_x', '1'],
        ['p.a b', 'c&d'],
      ]),
    ).toBe('p.a%20b=c%26d&site=s&user=u');
    const sig = signEmailLink(SECRET, { site: 's', user: 'u' });
    expect(
      verifyEmailLink(
        SECRET,
        [
          ['user', 'u'],
          ['site', 's'],
        ],
        sig,
      ),
    ).toBe(true);
    expect(
      verifyEmailLink(
        SECRET,
        [
          ['user', 'v'],
          ['site', 's'],
        ],
        sig,
      ),
    ).toBe(false);
    expect(
      verifyEmailLink(
        'another-secret-000000',
        [
          ['user', 'u'],
          ['site', 's'],
        ],
        sig,
      ),
    ).toBe(false);
    expect(
      verifyEmailLink(
        SECRET,
        [
          ['user', 'u'],
          ['site', 's'],
        ],
        'short',
      ),
    ).toBe(false);
  });
});
