import { randomUUID } from 'node:crypto';
import { Analytics } from '@segment/analytics-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import { DEFAULT_TOPIC_MAP, TopicMapConfig } from '../../history/fold/topic-map.js';
import { eventually, startTestApp } from '../support/app.js';
import { JOURNEY_MAP, purchased, serverJourney } from '../support/segment-journey.js';

/** The demo shop's rules plus channel rules: an e-mail click and a completed call about a product. */
const MAP = TopicMapConfig.parse({
  rules: [
    ...DEFAULT_TOPIC_MAP.rules,
    { channel: 'email', event: 'Email Link Clicked', topic: 'product:{props.product}', stage: 'detail' },
    { channel: 'call', event: 'Call Completed', topic: 'product:{props.product}', stage: 'purchase' },
    ...JOURNEY_MAP.rules.filter((r) => r.event === 'Order Completed'),
  ],
});

interface PersonView {
  person: string;
  dialogues: { topic: string; stage: string; channels: string[]; counts: Record<string, number> }[];
}

async function person(app: RunningApp, id: string, until: (p: PersonView) => boolean): Promise<PersonView> {
  return eventually(
    async () => {
      const r = await fetch(`${app.url}/v1/people/${encodeURIComponent(id)}`);
      if (r.status !== 200) return undefined;
      const p = (await r.json()) as PersonView;
      return until(p) ? p : undefined;
    },
    30_000,
    `person ${id}`,
  );
}

// The real @segment/analytics-node client, unchanged but for `host`, against the all-in-one app on
// the run's Kafka and Redis: its events must fold into dialogues exactly like the snippet's.
describe('Segment client → ingest → Kafka → worker → dialogues (real backends)', () => {
  let app: RunningApp;
  beforeAll(async () => {
    app = await startTestApp('real', {}, MAP);
  });
  afterAll(async () => {
    await app?.stop();
  });

  it('folds e-mail and call-centre events sent with analytics-node into the person’s dialogues', async () => {
    const analytics = new Analytics({ writeKey: 'demo-write-key', host: app.url, flushAt: 3, flushInterval: 200, maxRetries: 2 });
    const responses: number[] = [];
    analytics.on('http_response', (r) => responses.push(r.status));
    const failures: unknown[] = [];
    analytics.on('error', (err) => failures.push(err));

    const user = `u-${randomUUID()}`;
    const sku = `sku-${randomUUID().slice(0, 8)}`;
    const delivered = (done: (err?: unknown) => void) => (err?: unknown) => done(err);
    const calls: Promise<unknown>[] = [];
    const call = (f: (cb: (err?: unknown) => void) => void) =>
      calls.push(new Promise<void>((resolve, reject) => f(delivered((err) => (err ? reject(err) : resolve())))));

    call((cb) => analytics.identify({ userId: user, anonymousId: `a-${user}`, traits: { plan: 'pro' } }, cb));
    call((cb) =>
      analytics.track({ userId: user, event: 'Email Link Clicked', properties: { product: sku, campaign: 'spring' }, context: { channel: 'email' } }, cb),
    );
    call((cb) => analytics.page({ userId: user, name: 'Specs', properties: { url: `https://shop.example/products/${sku}/specs` } }, cb));
    await Promise.all(calls);

    const afterEmail = await person(app, user, (p) => p.dialogues.some((d) => d.topic === `product:${sku}` && d.stage === 'detail' && d.counts.detail === 2));
    const dialogue = afterEmail.dialogues.find((d) => d.topic === `product:${sku}`)!;
    expect(dialogue.channels.sort()).toEqual(['email', 'server']);

    // A call-centre system reports the purchase; `properties.channel` works as well as context.channel.
    await new Promise<void>((resolve, reject) =>
      analytics.track({ userId: user, event: 'Call Completed', properties: { channel: 'call', product: sku, revenue: 129 } }, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
    await analytics.closeAndFlush({ timeout: 10_000 });

    const bought = await person(app, user, (p) => p.dialogues.some((d) => d.topic === `product:${sku}` && d.stage === 'purchase'));
    expect(bought.dialogues.find((d) => d.topic === `product:${sku}`)).toMatchObject({ stage: 'purchase', counts: { detail: 2, purchase: 1 } });
    expect(bought.dialogues.find((d) => d.topic === `product:${sku}`)!.channels.sort()).toEqual(['call', 'email', 'server']);
    expect(failures).toEqual([]);
    expect(responses.every((s) => s === 200)).toBe(true);
  });

  it('lands a page view, an e-mail click and an order in the user’s dialogue at purchase', async () => {
    const analytics = new Analytics({ writeKey: 'demo-write-key', host: app.url, flushAt: 2, flushInterval: 200, maxRetries: 1 });
    const statuses: number[] = [];
    analytics.on('http_response', (r) => statuses.push(r.status));
    const sku = `sku-${randomUUID().slice(0, 8)}`;
    const user = `u-${randomUUID().slice(0, 8)}`;
    const delivered = serverJourney(`a-${user}`, user, sku).map(
      ([method, message]) =>
        new Promise<unknown>((resolve) => (analytics[method] as (m: unknown, cb: (err?: unknown) => void) => void).call(analytics, message, resolve)),
    );
    await analytics.closeAndFlush({ timeout: 10_000 });
    expect((await Promise.all(delivered)).filter((e) => e !== undefined)).toEqual([]);
    expect(statuses.length).toBeGreaterThan(0);
    expect(statuses.every((s) => s === 200)).toBe(true);

    const view = await purchased(app.url, user, `product:${sku}`, { intro: 1, detail: 1, purchase: 1 });
    expect(view.dialogues.find((d) => d.topic === `product:${sku}`)).toMatchObject({ stage: 'purchase', counts: { intro: 1, detail: 1, purchase: 1 } });
    expect(view.dialogues.find((d) => d.topic === `product:${sku}`)!.channels.sort()).toEqual(['email', 'server']);
    expect(view.rfm).toMatchObject({ purchases: 1, totalValue: 129 });
  });

  it('the client sees a 401 for a wrong write key and does not retry it', async () => {
    const analytics = new Analytics({ writeKey: 'wrong-key-000000', host: app.url, flushAt: 1, maxRetries: 3 });
    const statuses: number[] = [];
    analytics.on('http_response', (r) => statuses.push(r.status));
    const err = await new Promise<unknown>((resolve) => analytics.track({ userId: 'u-x', event: 'Nope' }, (e) => resolve(e)));
    await analytics.closeAndFlush({ timeout: 5_000 });
    expect(err).toBeTruthy();
    expect(statuses).toEqual([401]);
  });
});
