import { describe, expect, it } from 'vitest';
import { TOPICS, type RawEvent } from '../../contract/raw-event.js';
import { compileTopicMap } from '../../history/fold/topic-map.js';
import { parseTopicMap } from '../../history/fold/topic-map-file.js';
import { readFileSync } from 'node:fs';
import { createIngestApp } from '../../ingest/app.js';
import {
  compilePrivacy,
  DEFAULT_PRIVACY,
  isPersonalKey,
  MASK,
  maskText,
  PrivacyConfig,
  scrubEvent,
  scrubExcerpt,
  scrubProps,
  scrubUrl,
} from '../../ingest/scrub.js';
import { compileSites, parseSites, SitesFile } from '../../ingest/sites.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import { createLogger } from '../../lib/logger.js';
import { HOSTILE_PRIVACY_CONFIGS } from '../support/hostile-cases.js';
import { recordsOf } from '../support/log-records.js';

const policy = (c: Record<string, unknown>) => compilePrivacy(PrivacyConfig.parse(c));
const JWT = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkFsaWNlIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c';

describe('privacy by default: the rules (ingest/scrub.ts)', () => {
  it('drops a URL’s fragment', () => {
    expect(scrubUrl('https://shop.example/products/sku-1#access_token=abc')).toBe('https://shop.example/products/sku-1');
    expect(scrubUrl('/products/sku-1#top')).toBe('/products/sku-1');
  });

  it('drops every query parameter but utm_*, and masks what the kept ones carry', () => {
    expect(scrubUrl('https://shop.example/p?email=alice%40example.com&utm_source=news&q=alice+smith&utm_medium=mail')).toBe(
      'https://shop.example/p?utm_source=news&utm_medium=mail',
    );
    expect(scrubUrl('https://shop.example/p?q=1')).toBe('https://shop.example/p');
    expect(scrubUrl('https://shop.example/p?utm_content=alice%40example.com')).toBe(`https://shop.example/p?utm_content=${encodeURIComponent(MASK.email)}`);
  });

  it('drops user:password@ from a URL', () => {
    expect(scrubUrl('https://alice:s3cret@shop.example/p')).toBe('https://shop.example/p');
  });

  it('masks e-mail addresses in a URL path, also percent-encoded', () => {
    expect(scrubUrl('https://shop.example/users/alice@example.com/orders')).toBe(`https://shop.example/users/${MASK.email}/orders`);
    expect(scrubUrl('/users/alice%40example.com')).toBe(`/users/${MASK.email}`);
  });

  it('masks long tokens in a URL path, and keeps ids and slugs', () => {
    expect(scrubUrl('https://shop.example/reset/3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c')).toBe(`https://shop.example/reset/${MASK.token}`);
    for (const kept of ['/products/sku-1/specs', '/orders/0b4c6f2e-8d1a-4c3b-9e2f-7a5d6c8b9e0f', '/products/trail-runner-2-limited-edition-blue'])
      expect(scrubUrl(`https://shop.example${kept}`)).toBe(`https://shop.example${kept}`);
  });

  it('drops link targets that are not http(s), keeps relative ones', () => {
    for (const href of ['mailto:alice@example.com', 'tel:+4930123456', 'javascript:alert(1)', 'sms:+4930123456', 'MAILTO:a@b.example'])
      expect(scrubUrl(href), href).toBeUndefined();
    expect(scrubUrl('/checkout/sku-1?coupon=ALICE')).toBe('/checkout/sku-1');
    const el = scrubEvent({ type: 'click', el: { tag: 'a', href: 'mailto:alice@example.com', text: 'alice@example.com' } }).el;
    expect(el).toEqual({ tag: 'a', text: MASK.email });
  });

  it('scrubs referrers like URLs', () => {
    const s = scrubEvent({ type: 'page', url: '/p', ref: 'https://www.google.com/search?q=alice+smith+berlin&utm_source=x' });
    expect(s.ref).toBe('https://www.google.com/search?utm_source=x');
  });

  it('masks e-mail addresses in collected text', () => {
    expect(maskText('Write to alice.smith+shop@example.co.uk today')).toBe(`Write to ${MASK.email} today`);
  });

  it('masks phone-number-like digit runs in collected text, and keeps prices, years and ids', () => {
    for (const phone of ['+49 30 1234567', '(555) 123-4567', '0171/1234567', '01711234567', '+1-555-123-4567', '4111 1111 1111 1111'])
      expect(maskText(`Call ${phone} now`), phone).toBe(`Call ${MASK.phone} now`);
    for (const kept of ['Only 1,299.00 EUR', 'Since 2019', 'sku12345678', 'Size 42 / 44', 'Room 101']) expect(maskText(kept), kept).toBe(kept);
  });

  it('masks long tokens in collected text, and keeps words', () => {
    expect(maskText(`Bearer ${JWT}`)).toBe(`Bearer ${MASK.token}.${MASK.token}.${MASK.token}`);
    expect(maskText('id 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12')).toBe(`id ${MASK.token}`);
    expect(maskText('Incomprehensibilities_and_more_words')).toBe('Incomprehensibilities_and_more_words');
  });

  it('masks e-mail addresses and tokens in element ids, classes and selectors, and keeps numbers there', () => {
    const el = scrubEvent({
      type: 'click',
      el: { tag: 'button', id: 'alice@example.com', cls: 'btn col-12345678', sel: `#s${'a1'.repeat(15)} button` },
    }).el;
    expect(el).toEqual({ tag: 'button', id: MASK.email, cls: 'btn col-12345678', sel: `#${MASK.token} button` });
  });

  it('masks page titles like text', () => {
    expect(scrubEvent({ type: 'page', title: 'Orders of alice@example.com · +49 30 1234567' }).title).toBe(`Orders of ${MASK.email} · ${MASK.phone}`);
  });

  it('drops properties whose key names personal data, masks e-mails in the others, keeps ids', () => {
    const props = {
      email: 'alice@example.com',
      first_name: 'Alice',
      'billingAddress.city': 'Berlin',
      customerName: 'Alice Smith',
      'contact.phone': '+49 30 1234567',
      accessToken: 'x',
      'products.0.name': 'Trail Runner 2',
      productName: 'Trail Runner 2',
      product_id: '5f8d0d55b54764421b7156c9',
      ean: '4006381333931',
      note: 'ping alice@example.com',
      revenue: 129,
      _dropped: 3,
    };
    expect(scrubProps(props, DEFAULT_PRIVACY, 'props')).toEqual({
      productName: 'Trail Runner 2',
      product_id: '5f8d0d55b54764421b7156c9',
      ean: '4006381333931',
      note: `ping ${MASK.email}`,
      revenue: 129,
      _dropped: 3,
    });
    for (const k of ['Email', 'e-mail', 'user.email_address', 'dob', 'ip', 'shipping_address.zip', 'cardholder_name']) expect(isPersonalKey(k), k).toBe(true);
    for (const k of ['sku', 'product', 'plan', 'campaign', 'products.0.product_id', 'page_title', 'username_hint_shown'])
      expect(isPersonalKey(k), k).toBe(false);
  });

  it('drops the data-* attributes of a clicked element that look personal', () => {
    const el = scrubEvent({ type: 'click', el: { tag: 'a', data: { userEmail: 'alice@example.com', sku: 'sku-1' } } }).el;
    expect(el?.data).toEqual({ sku: 'sku-1' });
  });

  it('keeps no identify trait by default', () => {
    expect(scrubEvent({ type: 'identify', props: { email: 'a@b.example', plan: 'pro', company: 'Acme' } }).props).toBeUndefined();
    expect(scrubProps({ _dropped: 4 }, DEFAULT_PRIVACY, 'traits')).toBeUndefined();
  });

  it('masks e-mail addresses in event names and topic hints', () => {
    const s = scrubEvent({ type: 'track', name: 'Invited bob@example.com', topic: 'user:bob@example.com' });
    expect(s).toMatchObject({ name: `Invited ${MASK.email}`, topic: `user:${MASK.email}` });
  });

  it('keeps what the demo topic map classifies on', () => {
    const map = compileTopicMap(parseTopicMap(readFileSync('history/fold/topic-maps/demo.json', 'utf8')));
    const url = scrubUrl('https://shop.example/products/SKU-1/specs?email=alice%40example.com&utm_campaign=spring#token=abc');
    expect(url).toBe('https://shop.example/products/SKU-1/specs?utm_campaign=spring');
    expect(map.classify({ channel: 'web', type: 'page', url })).toEqual({ topic: 'product:sku-1', stage: 1 });
    const props = scrubProps({ product: 'sku-1', email: 'a@b.example' }, DEFAULT_PRIVACY, 'props');
    expect(map.classify({ channel: 'email', type: 'track', name: 'Email Link Clicked', props })).toEqual({ topic: 'product:sku-1', stage: 1 });
  });
});

describe('privacy opt-ins, one field at a time', () => {
  it('queryParams: keeps the named parameters and prefixes (case-insensitive), instead of utm_*', () => {
    const p = policy({ queryParams: ['variant', 'gclid', 'ref_*'] });
    expect(scrubUrl('https://shop.example/p?Variant=blue&utm_source=x&ref_site=blog&email=a%40b.example&GCLID=abc', p)).toBe(
      'https://shop.example/p?Variant=blue&ref_site=blog&GCLID=abc',
    );
  });

  it('keepFragment: keeps the fragment (hash routers), masked like text', () => {
    const p = policy({ keepFragment: true });
    expect(scrubUrl('https://shop.example/#/products/sku-1', p)).toBe('https://shop.example/#/products/sku-1');
    expect(scrubUrl(`https://shop.example/#/login?token=${'ab12'.repeat(8)}`, p)).toBe(`https://shop.example/#/login?token=${MASK.token}`);
    expect(scrubUrl('https://shop.example/#/products/sku-1')).toBe('https://shop.example/');
  });

  it('keepPathTokens: keeps long ids in paths (e-mail addresses stay masked)', () => {
    const p = policy({ keepPathTokens: true });
    const id = '5f8d0d55b54764421b7156c9a1b2';
    expect(scrubUrl(`/products/${id}`, p)).toBe(`/products/${id}`);
    expect(scrubUrl(`/products/${id}`)).toBe(`/products/${MASK.token}`);
    expect(scrubUrl('/u/alice@example.com', p)).toBe(`/u/${MASK.email}`);
  });

  it('props: keeps the allow-listed properties as sent, also nested and with * for a segment', () => {
    const p = policy({ props: ['products.*.name', 'contact', 'email'] });
    const props = {
      'products.0.name': 'Trail Runner',
      'products.1.name': 'Rain Jacket',
      'contact.email': 'c@shop.example',
      email: 'a@b.example',
      first_name: 'A',
    };
    expect(scrubProps(props, p, 'props')).toEqual({
      'products.0.name': 'Trail Runner',
      'products.1.name': 'Rain Jacket',
      'contact.email': 'c@shop.example',
      email: 'a@b.example',
    });
  });

  it('traits: keeps the allow-listed identify traits, and only those', () => {
    const p = policy({ traits: ['plan', 'company'] });
    expect(scrubEvent({ type: 'identify', props: { plan: 'pro', 'company.name': 'Acme', email: 'a@b.example', name: 'Alice' } }, p).props).toEqual({
      plan: 'pro',
      'company.name': 'Acme',
    });
  });

  it('refuses a privacy block that is not what it says, naming the file, the line and the field', () => {
    const file = (privacy: unknown) => JSON.stringify({ sites: [{ id: 'shop', privacy }] }, null, 1);
    for (const [privacy, message] of HOSTILE_PRIVACY_CONFIGS) expect(() => parseSites(file(privacy), 'sites.json'), JSON.stringify(privacy)).toThrow(message);
    expect(() => parseSites(file({ queryParams: ['x'] }), 'sites.json')).not.toThrow();
    // Metacharacters in a name are just characters of it.
    const p = policy({ props: ['a-b.c_d'], queryParams: ['a.b[]'] });
    expect(p.allowsProp('a-b.c_d')).toBe(true);
    expect(p.allowsProp('aXb.c_d')).toBe(false);
    expect(p.keepParam('a.b[]')).toBe(true);
    expect(p.keepParam('aXb[]')).toBe(false);
  });
});

describe('dead-letter excerpts (ingest/scrub.ts scrubExcerpt)', () => {
  it('redacts personal values whatever their shape, scrubs URLs, masks text, and survives being cut', () => {
    const body = JSON.stringify({
      type: 'identify',
      userId: 'u-1',
      traits: { name: 'Alice Smith', address: { street: 'Main St 1', city: 'Berlin' }, plan: 'pro', tags: ['x'] },
      context: { page: { url: 'https://shop.example/p?email=alice%40example.com#t=1', referrer: 'mailto:alice@example.com' } },
      note: 'call +49 30 1234567',
    });
    const s = scrubExcerpt(body);
    expect(s).not.toMatch(/Alice|Main St|Berlin|alice|1234567/);
    expect(s).toContain('"plan":"pro"');
    expect(s).toContain('"name":"[redacted]"');
    expect(s).toContain('"address":"[redacted]"');
    expect(s).toContain('"url":"https://shop.example/p"');
    expect(s).toContain('"referrer":"mailto:"');
    expect(scrubExcerpt(body.slice(0, body.indexOf('Main St') + 4))).not.toContain('Main');
    expect(scrubExcerpt('/v1/email/open?site=shop&email=alice%40example.com&p.first_name=Alice')).toBe(
      '/v1/email/open?site=shop&email=[redacted]&p.first_name=[redacted]',
    );
  });
});

describe('every channel goes through the same rules (toRawMessage)', () => {
  const KEY = 'wk_privacy_0123456789';
  function setup(privacy: Record<string, unknown> = {}) {
    const log = new PartitionedLog(2);
    const sites = compileSites(SitesFile.parse({ sites: [{ id: 'shop', origins: ['*'], writeKeys: [KEY], redirectHosts: ['shop.example'], privacy }] }));
    const app = createIngestApp({ producer: log.producer(), logger: createLogger('test', 'silent'), maxBodyBytes: 64 * 1024, retryAfterSeconds: 2, sites });
    const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
      app.request(path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    return { app, post, raw: () => recordsOf<RawEvent>(log, TOPICS.raw), invalid: () => recordsOf<{ payload?: string }>(log, TOPICS.invalid) };
  }
  const ts = Date.now();

  it('the snippet, the Segment API and e-mail links leave nothing personal on clicks.raw and clicks.invalid', async () => {
    const { app, post, raw, invalid } = setup();
    const collect = await post('/v1/collect', {
      site: 'shop',
      visitor: 'v-1',
      events: [
        {
          id: 'c1',
          type: 'page',
          ts,
          url: 'https://shop.example/products/sku-1?email=alice%40example.com&utm_source=news#access_token=abc',
          ref: 'https://mail.example/?to=alice@example.com',
          title: 'Hi alice@example.com',
        },
        { id: 'c2', type: 'click', ts, url: 'https://shop.example/contact', el: { tag: 'a', href: 'tel:+4930123456', text: 'Call +49 30 123456' } },
        { id: 'c3', type: 'track', ts, name: 'Signup', props: { email: 'alice@example.com', plan: 'pro' } },
        { id: 'bad', type: 'page', ts: 'now', url: 'https://shop.example/?email=alice@example.com' },
      ],
    });
    expect(collect.status).toBe(400);
    const basic = `Basic ${Buffer.from(`${KEY}:`).toString('base64')}`;
    const seg = await post(
      '/v1/batch',
      {
        batch: [
          {
            type: 'identify',
            userId: 'u-1',
            anonymousId: 'v-1',
            messageId: 's1',
            traits: { email: 'alice@example.com', name: 'Alice', phone: '+49 30 1234567' },
          },
          {
            type: 'page',
            anonymousId: 'v-1',
            messageId: 's2',
            properties: { url: 'https://shop.example/products/sku-1?name=Alice', referrer: 'https://shop.example/?q=alice' },
          },
        ],
      },
      { authorization: basic },
    );
    expect(seg.status).toBe(200);
    const click = await app.request(
      `/v1/email/click?site=shop&user=u-1&campaign=spring&url=${encodeURIComponent('https://shop.example/products/sku-1?email=alice@example.com&utm_medium=email')}&p.email=alice@example.com&p.product=sku-1`,
    );
    expect(click.status).toBe(302);
    expect(click.headers.get('location')).toBe('https://shop.example/products/sku-1?email=alice@example.com&utm_medium=email');

    const records = raw();
    expect(records).toHaveLength(6);
    const text = JSON.stringify([...records, ...invalid()]);
    expect(text).not.toMatch(/alice|Alice|123456|access_token|to=|q=/);
    const byId = new Map(records.map((r) => [r.id, r]));
    expect(byId.get('c1')).toMatchObject({
      url: 'https://shop.example/products/sku-1?utm_source=news',
      ref: 'https://mail.example/',
      title: `Hi ${MASK.email}`,
    });
    expect(byId.get('c2')?.el).toEqual({ tag: 'a', text: `Call ${MASK.phone}` });
    expect(byId.get('c3')?.props).toEqual({ plan: 'pro' });
    expect(byId.get('s1')?.props).toBeUndefined();
    expect(byId.get('s1')?.traits).toBeUndefined();
    expect(records.find((r) => r.channel === 'email')).toMatchObject({
      url: 'https://shop.example/products/sku-1?utm_medium=email',
      props: { campaign: 'spring', product: 'sku-1' },
    });
  });

  it('a site’s opt-ins reach the records of every channel', async () => {
    const { app, post, raw } = setup({ queryParams: ['variant'], traits: ['plan'], props: ['email'] });
    await post('/v1/collect', {
      site: 'shop',
      visitor: 'v-2',
      events: [
        { id: 'o1', type: 'page', ts, url: 'https://shop.example/products/sku-1?variant=blue&utm_source=x' },
        { id: 'o2', type: 'identify', ts, user: 'u-2', props: { plan: 'pro', email: 'b@example.com' } },
      ],
    });
    const basic = `Basic ${Buffer.from(`${KEY}:`).toString('base64')}`;
    await post('/v1/identify', { userId: 'u-2', messageId: 'o3', traits: { plan: 'team', name: 'Bob' } }, { authorization: basic });
    await app.request(`/v1/email/open?site=shop&user=u-2&campaign=c&p.email=b@example.com`);
    const byId = new Map(raw().map((r) => [r.id, r]));
    expect(byId.get('o1')?.url).toBe('https://shop.example/products/sku-1?variant=blue');
    expect(byId.get('o2')?.props).toEqual({ plan: 'pro' });
    expect(byId.get('o3')?.props).toEqual({ plan: 'team' });
    // What the person keeps of them (history/fold/codec.ts): the same allow-listed traits.
    expect([byId.get('o2')?.traits, byId.get('o3')?.traits]).toEqual([{ plan: 'pro' }, { plan: 'team' }]);
    expect(byId.get('o1')?.traits).toBeUndefined();
    expect(raw().find((r) => r.channel === 'email')?.props).toEqual({ campaign: 'c', email: 'b@example.com' });
  });
});
