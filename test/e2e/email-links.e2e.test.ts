import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emailClickUrl, emailOpenUrl } from '../../contract/email.js';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import { TopicMapConfig } from '../../history/fold/topic-map.js';
import { eventually, startTestApp } from '../support/app.js';

const SECRET = `e2e-secret-${randomUUID()}`;
const MAP = TopicMapConfig.parse({
  rules: [
    { channel: 'email', event: 'Email Opened', topic: 'campaign:{props.campaign}', stage: 'intro' },
    { channel: 'email', event: 'Email Link Clicked', topic: 'product:{props.product}', stage: 'detail' },
  ],
});

/** What a desktop mail client sends for an image and for a link. */
const OUTLOOK = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 Edg/126.0 Microsoft Outlook/16.0';
const image = (url: string) => fetch(url, { headers: { accept: 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8', 'user-agent': OUTLOOK } });
const click = (url: string) => fetch(url, { redirect: 'manual', headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8', 'user-agent': OUTLOOK } });

describe('e-mail pixel and click redirect over HTTP (real backends)', () => {
  let app: RunningApp;
  beforeAll(async () => {
    app = await startTestApp('real', { INGEST_LINK_SECRET: SECRET }, MAP);
  });
  afterAll(async () => {
    await app?.stop();
  });

  it('the pixel answers an uncacheable 1x1 GIF and the open reaches the person’s history', async () => {
    const user = `u-${randomUUID()}`;
    const campaign = `spring-${randomUUID().slice(0, 6)}`;
    const res = await image(emailOpenUrl(app.url, { site: 'demo', user, campaign, msg: 'm-1' }));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/gif');
    expect(res.headers.get('cache-control')).toMatch(/no-store/);
    expect(res.headers.get('pragma')).toBe('no-cache');
    const gif = Buffer.from(await res.arrayBuffer());
    expect(gif.subarray(0, 6).toString('latin1')).toBe('GIF89a');

    // Broken parameters still get the image (a mail client shows no errors).
    const broken = await image(`${app.url}/v1/email/open?site=demo&campaign=${campaign}`);
    expect(broken.status).toBe(200);
    expect(broken.headers.get('content-type')).toBe('image/gif');

    await eventually(
      async () => {
        const r = await fetch(`${app.url}/v1/people/${user}`);
        if (r.status !== 200) return undefined;
        const p = (await r.json()) as { dialogues: { topic: string; stage: string; channels: string[] }[] };
        return p.dialogues.some((d) => d.topic === `campaign:${campaign}` && d.stage === 'intro' && d.channels.includes('email')) || undefined;
      },
      30_000,
      'the open in the history',
    );
  });

  it('a signed click redirects with 302 to its target and moves the product dialogue to detail', async () => {
    const user = `u-${randomUUID()}`;
    const sku = `sku-${randomUUID().slice(0, 8)}`;
    const target = `https://shop.example/products/${sku}?utm_campaign=spring`;
    const res = await click(emailClickUrl(app.url, SECRET, { site: 'demo', user, campaign: 'spring', link: 'hero', url: target, 'p.product': sku }));
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe(target);
    expect(res.headers.get('cache-control')).toBe('no-store');

    const p = await eventually(
      async () => {
        const r = await fetch(`${app.url}/v1/people/${user}`);
        if (r.status !== 200) return undefined;
        const view = (await r.json()) as { dialogues: { topic: string; stage: string; channels: string[] }[] };
        return view.dialogues.find((d) => d.topic === `product:${sku}`);
      },
      30_000,
      'the click in the history',
    );
    expect(p).toMatchObject({ stage: 'detail', channels: ['email'] });
  });

  it('refuses unsigned and tampered targets with 400 and no Location (no open redirect)', async () => {
    const unsigned = await click(`${app.url}/v1/email/click?site=demo&user=u-1&campaign=c&url=${encodeURIComponent('https://evil.example/login')}`);
    expect(unsigned.status).toBe(400);
    expect(unsigned.headers.get('location')).toBeNull();
    expect(await unsigned.json()).toMatchObject({ error: { code: 'unsigned_redirect' } });

    const signed = new URL(emailClickUrl(app.url, SECRET, { site: 'demo', user: 'u-1', campaign: 'c', url: 'https://shop.example/' }));
    signed.searchParams.set('url', 'https://evil.example/login');
    const tampered = await click(signed.href);
    expect(tampered.status).toBe(400);
    expect(tampered.headers.get('location')).toBeNull();
    expect(await tampered.json()).toMatchObject({ error: { code: 'bad_signature' } });
  });
});
