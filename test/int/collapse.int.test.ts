import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOPICS } from '../../contract/raw-event.js';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import { keys } from '../../history/store/store.js';
import { batch, eventually, post, startTestApp } from '../support/app.js';
import { startGroupAtEnd } from '../support/kafka-groups.js';
import { readTopic } from '../support/kafka-read.js';
import { redisUrl } from '../support/services.js';

const UA = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';

/** A visitor's walk through one product, as the snippet reports it: about 20 events a dialogue. */
function walk(sku: string, origin: string) {
  const product = `${origin}/products/${sku}`;
  const page = (url: string, title: string, ref: string) => ({ type: 'page', url, title, ref });
  const click = (url: string, text: string, href: string, extra: Record<string, unknown> = {}) => ({
    type: 'click',
    url,
    el: { tag: 'a', cls: 'btn btn-primary card-link', text, href, sel: 'main>section.product>div.actions>a.btn' },
    ...extra,
  });
  return [
    page(product, `Trail Runner ${sku} · Outdoor shop`, `${origin}/`),
    click(product, 'Show colours', `${product}#colours`),
    click(product, 'Size guide', `${product}#sizes`),
    page(product, `Trail Runner ${sku} · Outdoor shop`, `${origin}/search?q=trail`),
    click(product, 'Reviews', `${product}#reviews`),
    page(`${product}/specs`, `Trail Runner ${sku} specs · Outdoor shop`, product),
    click(`${product}/specs`, 'Compare sizes', `${product}/specs#compare`, { topic: `product:${sku}`, stage: 'detail' }),
    click(`${product}/specs`, 'Materials', `${product}/specs#materials`),
    page(product, `Trail Runner ${sku} · Outdoor shop`, `${product}/specs`),
    page(`${product}/specs`, `Trail Runner ${sku} specs · Outdoor shop`, product),
    click(`${product}/specs`, 'Download the spec sheet (PDF)', `${origin}/files/${sku}.pdf`),
    click(`${product}/specs`, 'Ask a question', `${product}/specs#faq`),
    page(product, `Trail Runner ${sku} · Outdoor shop`, `${origin}/`),
    click(product, 'Add to basket', `${origin}/basket`),
    page(`${origin}/checkout/${sku}`, 'Checkout · Outdoor shop', product),
    click(`${origin}/checkout/${sku}`, 'Pay now', `${origin}/checkout/${sku}#pay`, { topic: `product:${sku}`, stage: 'purchase' }),
    page(`${origin}/checkout/${sku}`, 'Checkout · Outdoor shop', `${origin}/checkout/${sku}`),
    {
      type: 'track',
      url: `${origin}/checkout/${sku}`,
      name: 'Order Completed',
      props: { sku, currency: 'EUR' },
      value: 129,
      topic: `product:${sku}`,
      stage: 'purchase',
    },
    page(product, `Trail Runner ${sku} · Outdoor shop`, `${origin}/checkout/${sku}`),
    click(product, 'Write a review', `${product}#write-review`),
  ];
}

describe('collapse: Redis bytes per dialogue against the raw Kafka bytes that built it', () => {
  let app: RunningApp;
  const redis = new Redis(redisUrl());
  const prefix = `collapse-${randomUUID().slice(0, 8)}:`;
  beforeAll(async () => {
    // The group folds from now on: not the records other test files left on the shared broker,
    // whose topics would land in this namespace's stage indexes and skew the figure.
    const group = `collapse-${randomUUID().slice(0, 8)}`;
    await startGroupAtEnd(group);
    app = await startTestApp('real', { REDIS_PREFIX: prefix, KAFKA_GROUP_ID: group });
  });
  afterAll(async () => {
    await app?.stop();
    const found = await redis.keys(`${prefix}*`);
    if (found.length) await redis.del(...found);
    redis.disconnect();
  });

  it('keeps each dialogue at least 50x smaller than its raw events (listpack hash), and reports the figures', async () => {
    const tag = `cx${randomUUID().slice(0, 8)}`;
    const origin = 'https://outdoor-shop.example.com';
    const people: string[] = [];
    let dialogues = 0;
    for (let p = 0; p < 60; p++) {
      const visitor = `${tag}${randomUUID().replace(/-/g, '').slice(0, 12)}`;
      people.push(visitor);
      const topics = 1 + (p % 3); // one to three products per person, two on average
      const events = Array.from({ length: topics }, (_, t) => walk(`sku-${(p * 7 + t) % 40}`, origin)).flat();
      dialogues += topics;
      // Batches of 10, as the snippet flushes.
      for (let i = 0; i < events.length; i += 10) {
        const res = await post(app.url, batch(visitor, events.slice(i, i + 10)), { 'user-agent': UA });
        expect(res.status).toBe(202);
      }
    }
    const expectedEvents = dialogues * 20;
    const raw = await readTopic(
      TOPICS.raw,
      (key, value) => (key.startsWith(tag) ? Buffer.byteLength(key) + Buffer.byteLength(value) : undefined),
      (found) => found.length >= expectedEvents,
      { timeoutMs: 60_000, settleMs: 0 },
    );
    expect(raw).toHaveLength(expectedEvents);
    const rawBytes = raw.reduce((a, b) => a + b, 0);

    await eventually(
      async () => {
        const last = await fetch(`${app.url}/v1/people/${people.at(-1)}`);
        if (last.status !== 200) return undefined;
        const v = (await last.json()) as { dialogues: { counts: Record<string, number> }[] };
        return v.dialogues.length === 3 && v.dialogues.every((d) => Object.values(d.counts).reduce((a, b) => a + b, 0) === 20) ? true : undefined;
      },
      60_000,
      'every event folded',
    );

    const usage = async (key: string) => ((await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) as number | null) ?? 0;
    let hashBytes = 0;
    let seenBytes = 0;
    for (const p of people) {
      hashBytes += await usage(keys.person(prefix, p));
      seenBytes += await usage(keys.seen(prefix, p));
      expect(await redis.object('ENCODING', keys.person(prefix, p))).toBe('listpack');
    }
    let indexBytes = 0;
    // Only this test's topics: another file may fold into the shared topic meanwhile.
    const ours = new Set(Array.from({ length: 40 }, (_, n) => `product:sku-${n}`));
    for (const k of await redis.keys(`${prefix}ix:*`)) if (ours.has(k.slice(prefix.length + 4, k.lastIndexOf('}')))) indexBytes += await usage(k);
    // The stages' hour counters (windowed counts) are part of the index's cost.
    let hoursBytes = 0;
    for (const k of await redis.keys(`${prefix}ih:*`)) if (ours.has(k.slice(prefix.length + 4, k.lastIndexOf('}')))) hoursBytes += await usage(k);

    const perDialogue = {
      rawKafkaBytes: Math.round(rawBytes / dialogues),
      redisHashBytes: Math.round(hashBytes / dialogues),
      stageIndexBytes: Math.round(indexBytes / dialogues),
      hourCountersBytes: Math.round(hoursBytes / dialogues),
      recentIdsBytes: Math.round(seenBytes / dialogues),
    };
    const ratio = rawBytes / hashBytes;
    console.log(
      `[collapse] ${dialogues} dialogues, ${expectedEvents} events: per dialogue raw ${perDialogue.rawKafkaBytes} B on Kafka -> ` +
        `${perDialogue.redisHashBytes} B Redis hash (${ratio.toFixed(1)}x); with the stage index ${(rawBytes / (hashBytes + indexBytes)).toFixed(1)}x, ` +
        `and its hour counters (${(hoursBytes / dialogues).toFixed(1)} B) ${(rawBytes / (hashBytes + indexBytes + hoursBytes)).toFixed(1)}x; ` +
        `the recent-id key (expires after a day) adds ${perDialogue.recentIdsBytes} B while a person is active`,
    );
    expect(ratio).toBeGreaterThanOrEqual(50);
    expect(rawBytes / (hashBytes + indexBytes)).toBeGreaterThanOrEqual(50);
    // The hour counters are one small hash per topic (a listpack of integer fields), not a cost per
    // dialogue: here 3 dialogues share each topic, so their per-dialogue figure is mostly that key.
    expect(hoursBytes / ours.size).toBeLessThanOrEqual(128);
  });
});
