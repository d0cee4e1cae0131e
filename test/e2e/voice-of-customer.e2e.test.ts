import { randomUUID } from 'node:crypto';
import { Analytics } from '@segment/analytics-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import { DEFAULT_TOPIC_MAP, TopicMapConfig } from '../../history/fold/topic-map.js';
import { eventually, startTestApp } from '../support/app.js';

/** The demo shop's rules plus the call centre's: complaints and inquiries are signals on the product's dialogue. */
const MAP = TopicMapConfig.parse({
  rules: [
    ...DEFAULT_TOPIC_MAP.rules,
    { channel: 'call', event: 'Complaint Filed', topic: 'product:{props.product}', stage: 'detail', signal: 'complaint' },
    { channel: 'call', event: 'Inquiry', topic: 'product:{props.product}', stage: 'detail', signal: 'inquiry' },
    { channel: 'call', event: 'Inquiry Resolved', topic: 'product:{props.product}', stage: 'detail', signal: 'inquiry', close: true },
  ],
  signals: { complaint: { weight: 100 }, inquiry: {} },
});

interface PersonView {
  person: string;
  dialogues: { topic: string; stage: string; channels: string[]; counts: Record<string, number>; signals: Record<string, { count: number; open: boolean }> }[];
}

// The real @segment/analytics-node client against the all-in-one app on the run's Kafka and Redis:
// a call-centre system files a complaint and an inquiry; they land on the person's dialogue.
describe('the voice of the customer: call-centre signals through the Segment API (real backends)', () => {
  let app: RunningApp;
  beforeAll(async () => {
    app = await startTestApp('real', {}, MAP);
  });
  afterAll(async () => {
    await app?.stop();
  });

  const dialogueOf = (user: string, topic: string, until: (d: PersonView['dialogues'][number]) => boolean) =>
    eventually(
      async () => {
        const r = await fetch(`${app.url}/v1/people/${encodeURIComponent(user)}`);
        if (r.status !== 200) return undefined;
        const d = ((await r.json()) as PersonView).dialogues.find((x) => x.topic === topic);
        return d && until(d) ? d : undefined;
      },
      30_000,
      `dialogue ${topic} of ${user}`,
    );
  const needs = async (topic: string, query: string) => {
    const r = await fetch(`${app.url}/v1/topics/${encodeURIComponent(topic)}/needs?stage=detail&${query}`);
    return { status: r.status, body: (await r.json()) as { needs?: { person: string }[]; error?: unknown } };
  };

  it('counts a Complaint Filed and an inquiry on the person’s dialogue, filters needs by them, ranks the complaint first', async () => {
    const analytics = new Analytics({ writeKey: 'demo-write-key', host: app.url, flushAt: 5, flushInterval: 200, maxRetries: 2 });
    const failures: unknown[] = [];
    analytics.on('error', (err) => failures.push(err));
    const sku = `sku-${randomUUID().slice(0, 8)}`;
    const topic = `product:${sku}`;
    const angry = `u-angry-${randomUUID().slice(0, 8)}`;
    const curious = `u-curious-${randomUUID().slice(0, 8)}`;
    const quiet = `u-quiet-${randomUUID().slice(0, 8)}`;
    const send = (m: Parameters<Analytics['track']>[0]) => new Promise<void>((resolve, reject) => analytics.track(m, (err) => (err ? reject(err) : resolve())));
    const specs = (userId: string) => analytics.page({ userId, name: 'Specs', properties: { url: `https://shop.example/products/${sku}/specs` } });
    specs(quiet);
    specs(curious);
    specs(angry);
    await Promise.all([
      send({ userId: angry, event: 'Complaint Filed', properties: { product: sku, reason: 'late' }, context: { channel: 'call' } }),
      send({ userId: curious, event: 'Inquiry', properties: { product: sku }, context: { channel: 'call' } }),
    ]);
    await analytics.closeAndFlush({ timeout: 10_000 });
    expect(failures).toEqual([]);

    const d = await dialogueOf(angry, topic, (x) => x.signals.complaint !== undefined);
    expect(d).toMatchObject({ stage: 'detail', counts: { detail: 2 }, signals: { complaint: { count: 1, open: true } } });
    expect(d.channels.sort()).toEqual(['call', 'server']);
    await dialogueOf(curious, topic, (x) => x.signals.inquiry?.open === true);
    const plain = await dialogueOf(quiet, topic, () => true);
    expect(plain.signals).toEqual({});

    // The complaint's weight puts the angry customer first, whatever the order of the calls.
    const all = await needs(topic, 'limit=10');
    expect(all.body.needs?.[0]?.person).toBe(angry);
    expect((await needs(topic, 'signal=inquiry&open=true')).body.needs?.map((n) => n.person)).toEqual([curious]);
    expect((await needs(topic, 'signal=complaint')).body.needs?.map((n) => n.person)).toEqual([angry]);
    expect((await needs(topic, 'signal=refund')).status).toBe(400);
    expect((await needs(topic, 'open=true')).status).toBe(400);

    // Resolved: closed, still counted.
    const later = new Analytics({ writeKey: 'demo-write-key', host: app.url, flushAt: 1, maxRetries: 2 });
    await new Promise<void>((resolve, reject) =>
      later.track({ userId: curious, event: 'Inquiry Resolved', properties: { product: sku }, context: { channel: 'call' } }, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
    await later.closeAndFlush({ timeout: 10_000 });
    await dialogueOf(curious, topic, (x) => x.signals.inquiry?.open === false && x.signals.inquiry.count === 1);
    expect((await needs(topic, 'signal=inquiry&open=true')).body.needs).toEqual([]);
    expect((await needs(topic, 'signal=inquiry&open=false')).body.needs?.map((n) => n.person)).toEqual([curious]);

    // An audience "at detail, with an open complaint".
    const put = await fetch(`${app.url}/v1/audiences/open-complaints`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ topic: 'product:*', exactly: 'detail', signal: 'complaint', open: true }),
    });
    expect(put.status).toBeLessThan(300);
    const members = await eventually(
      async () => {
        const r = await fetch(`${app.url}/v1/audiences/open-complaints/members`);
        const body = (await r.json()) as { members?: { person: string }[] };
        return body.members?.some((m) => m.person === angry) ? body.members : undefined;
      },
      30_000,
      'the audience backfilled',
    );
    expect(members.map((m) => m.person)).toEqual([angry]);
    const refused = await fetch(`${app.url}/v1/audiences/nope`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ signal: 'refund' }),
    });
    expect(refused.status).toBe(400);
    expect(JSON.stringify(await refused.json())).toContain('is not a signal of the topic map');
  });
});
