import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import { TOPICS, type RawEvent } from '../../contract/raw-event.js';
import type { Transition } from '../../contract/transition.js';
import { batch, post, startTestApp } from '../support/app.js';
import { readTopic } from '../support/kafka-read.js';
import { JOURNEY_MAP, purchased } from '../support/segment-journey.js';

/**
 * Privacy by default, end to end on the run's Kafka and Redis: a visitor's events carrying personal
 * data in every place a tracker meets it (query strings, fragments, referrers, link targets, element
 * text and attributes, track properties, identify traits; through the snippet's endpoint, the
 * Segment-compatible API and an e-mail click), one of them refused. Then every record of
 * `clicks.raw`, `clicks.invalid` and `history.transitions` is read back: none of the personal data is
 * anywhere, the allow-listed utm_* parameters are, and the stages fold as before.
 */
const RUN = randomUUID().slice(0, 8);
const EMAIL = `alice.${RUN}@example.com`;
const NAME = `Alice${RUN}Smith`;
const PHONE = `+49 (0)30 555-${RUN.replace(/\D/g, '7').slice(0, 4)} 12`;
const TOKEN = `tk${RUN}${RUN}${RUN}9z`;
const STREET = `Elm Street ${RUN}`;
/** Every form the personal data could take on the log. */
const PERSONAL = [EMAIL, encodeURIComponent(EMAIL), NAME, PHONE, encodeURIComponent(PHONE), PHONE.replace(/\D/g, ''), TOKEN, STREET, 'access_token'];

describe('nothing personal reaches Kafka (real backends)', () => {
  let app: RunningApp;
  beforeAll(async () => {
    app = await startTestApp('real', {}, JOURNEY_MAP);
  });
  afterAll(async () => {
    await app?.stop();
  });

  it('sends personal data through every channel; no record on clicks.raw, clicks.invalid or history.transitions holds it', async () => {
    const visitor = `pv-${RUN}`;
    const user = `pu-${RUN}`;
    const sku = `sku-p${RUN}`;
    const shop = 'https://shop.example';
    const snippet = batch(visitor, [
      {
        type: 'page',
        url: `${shop}/products/${sku}?email=${encodeURIComponent(EMAIL)}&utm_source=news-${RUN}&session=${TOKEN}#access_token=${TOKEN}`,
        ref: `https://mail.example/inbox?to=${encodeURIComponent(EMAIL)}&name=${NAME}`,
        title: `Welcome back ${EMAIL}`,
      },
      { type: 'page', url: `${shop}/products/${sku}/specs?phone=${encodeURIComponent(PHONE)}&utm_campaign=spring-${RUN}`, ref: `${shop}/u/${EMAIL}` },
      {
        type: 'click',
        url: `${shop}/contact`,
        el: { tag: 'a', id: `mail-${EMAIL}`, href: `mailto:${EMAIL}`, text: `Write to ${EMAIL} or call ${PHONE}`, data: { userEmail: EMAIL, sku } },
      },
      { type: 'click', url: `${shop}/contact`, el: { tag: 'a', href: `tel:${PHONE.replace(/\D/g, '')}`, text: 'Call us', sel: `a#${TOKEN}` } },
      { type: 'track', name: 'Newsletter Signup', props: { email: EMAIL, first_name: NAME, plan: 'pro' } },
      { type: 'identify', user, props: { email: EMAIL, name: NAME, phone: PHONE } },
      // Refused (a bad ts): its dead letter must not carry what it carried either.
      { type: 'page', ts: 'now', url: `${shop}/products/${sku}?email=${EMAIL}`, title: `Call ${PHONE}` },
    ]);
    const res = await post(app.url, snippet, { 'x-request-id': `privacy-${RUN}` });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ accepted: 6, rejected: [6] });

    const basic = `Basic ${Buffer.from('demo-write-key:').toString('base64')}`;
    const segment = await fetch(`${app.url}/v1/batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: basic },
      body: JSON.stringify({
        batch: [
          {
            type: 'identify',
            userId: user,
            anonymousId: visitor,
            messageId: `seg-id-${RUN}`,
            traits: { email: EMAIL, name: NAME, phone: PHONE, address: { street: STREET, city: 'Berlin' } },
          },
          {
            type: 'track',
            userId: user,
            messageId: `seg-order-${RUN}`,
            event: 'Order Completed',
            properties: { revenue: 129, email: EMAIL, products: [{ product_id: sku, name: NAME }] },
            context: { page: { url: `${shop}/checkout/${sku}?email=${encodeURIComponent(EMAIL)}#${TOKEN}`, referrer: `mailto:${EMAIL}` } },
          },
        ],
      }),
    });
    expect(segment.status).toBe(200);

    const target = `http://localhost/products/${sku}?email=${encodeURIComponent(EMAIL)}&utm_medium=email-${RUN}`;
    const click = await fetch(
      `${app.url}/v1/email/click?site=demo&user=${user}&campaign=c-${RUN}&url=${encodeURIComponent(target)}&p.product=${sku}&p.email=${encodeURIComponent(EMAIL)}`,
      { redirect: 'manual' },
    );
    expect(click.status).toBe(302);

    // The stages fold as before: the visitor's views and the user's order, merged by the identify.
    const person = await purchased(app.url, user, `product:${sku}`);
    expect(person.dialogues.find((d) => d.topic === `product:${sku}`)).toMatchObject({ stage: 'purchase' });
    expect(person.rfm).toMatchObject({ purchases: 1, totalValue: 129 });

    // Every record of the three topics (other files' too: the personal data is this run's own).
    const all = (key: string, value: string) => ({ key, value });
    const raw = await readTopic(TOPICS.raw, all, (found) => found.filter((r) => r.key === visitor || r.key === user).length >= 9);
    const invalid = await readTopic(TOPICS.invalid, all, (found) => found.some((r) => r.value.includes(`privacy-${RUN}`)));
    const transitions = await readTopic(TOPICS.transitions, all, (found) =>
      found.some((r) => r.key === user && (JSON.parse(r.value) as Transition).to === 'purchase'),
    );
    for (const [topic, records] of [
      [TOPICS.raw, raw],
      [TOPICS.invalid, invalid],
      [TOPICS.transitions, transitions],
    ] as const) {
      for (const r of records) for (const p of PERSONAL) expect(`${r.key} ${r.value}`, `${topic}: ${r.value}`).not.toContain(p);
    }

    // What was allow-listed is there.
    const ours = raw.filter((r) => r.key === visitor || r.key === user).map((r) => JSON.parse(r.value) as RawEvent);
    expect(ours.map((r) => r.url)).toEqual(
      expect.arrayContaining([
        `${shop}/products/${sku}?utm_source=news-${RUN}`,
        `${shop}/products/${sku}/specs?utm_campaign=spring-${RUN}`,
        `http://localhost/products/${sku}?utm_medium=email-${RUN}`,
        `${shop}/checkout/${sku}`,
      ]),
    );
    const signup = ours.find((r) => r.name === 'Newsletter Signup');
    expect(signup?.props).toEqual({ plan: 'pro' });
    const mailto = ours.find((r) => r.type === 'click' && r.el?.data);
    expect(mailto?.el).toMatchObject({ tag: 'a', data: { sku } });
    expect(mailto?.el?.href).toBeUndefined();
    const letter = invalid.find((r) => r.value.includes(`privacy-${RUN}`));
    expect(JSON.parse(letter!.value)).toMatchObject({ reason: 'invalid_event', index: 6, payload: expect.stringContaining(`/products/${sku}`) });
  });
});
