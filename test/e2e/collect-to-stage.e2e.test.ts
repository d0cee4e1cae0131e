import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import type { PartitionedLog } from '../../lib/log-memory.js';
import { TOPICS } from '../../contract/raw-event.js';
import { kafkaBrokers } from '../support/services.js';
import { batch, eventually, post, startTestApp, type Mode } from '../support/app.js';

/** Reads every record of clicks.raw whose event id is in `ids`, from the real broker. */
async function readRawFromKafka(ids: Set<string>): Promise<{ key: string; id: string; person: string }[]> {
  const kafka = new Kafka({ clientId: 'e2e-reader', brokers: kafkaBrokers().split(','), logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: `reader-${randomUUID()}`, maxWaitTimeInMs: 100 });
  const found: { key: string; id: string; person: string }[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic: TOPICS.raw, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      // Other files may have written anything to the shared topic, junk included.
      let raw: { id: string; person: string };
      try {
        raw = JSON.parse(message.value?.toString() ?? '') as { id: string; person: string };
      } catch {
        return;
      }
      if (raw && ids.has(raw.id)) found.push({ key: message.key!.toString(), id: raw.id, person: raw.person });
    },
  });
  try {
    await eventually(async () => (found.length >= ids.size ? true : undefined), 30_000, 'raw records');
  } finally {
    await consumer.disconnect();
  }
  return found;
}

function readRawFromLog(log: PartitionedLog, ids: Set<string>) {
  return log
    .read(TOPICS.raw)
    .flat()
    .map((m) => ({ key: m.key!, ...(JSON.parse(m.value) as { id: string; person: string }) }))
    .filter((r) => ids.has(r.id));
}

describe.each<Mode>(['real', 'cluster', 'embedded'])('collect to queryable stage (%s backends)', (mode) => {
  let app: RunningApp;
  beforeAll(async () => {
    app = await startTestApp(mode);
  });
  afterAll(async () => {
    await app?.stop();
  });

  it('shows product:sku-1 at detail after an intro and a detail page view', async () => {
    const visitor = `v-${randomUUID()}`;
    const body = batch(visitor, [
      { type: 'page', url: 'https://shop.example/products/sku-1' },
      { type: 'page', url: 'https://shop.example/products/sku-1/specs' },
    ]);
    const res = await post(app.url, body);
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ accepted: 2 });

    const person = await eventually(
      async () => {
        const r = await fetch(`${app.url}/v1/people/${visitor}`);
        if (r.status !== 200) return undefined;
        const p = (await r.json()) as { person: string; dialogues: { topic: string; stage: string; counts: Record<string, number> }[] };
        return p.dialogues[0]?.stage === 'detail' ? p : undefined;
      },
      20_000,
      'the person at detail',
    );
    expect(person).toMatchObject({ person: visitor, dialogues: [{ topic: 'product:sku-1', stage: 'detail', counts: { intro: 1, detail: 1, purchase: 0 } }] });

    const ids = new Set(body.events.map((e) => e.id));
    const records = mode !== 'embedded' ? await readRawFromKafka(ids) : readRawFromLog(app.backends.log!, ids);
    expect(records).toHaveLength(2);
    for (const r of records) {
      expect(r.key).toBe(visitor);
      expect(r.person).toBe(visitor);
    }
  });

  it('keys events by the user id once the batch carries one, and answers 404 for an unknown person', async () => {
    const user = `u-${randomUUID()}`;
    const res = await post(app.url, batch(`v-${randomUUID()}`, [{ type: 'page', url: '/checkout/sku-2' }], { user }));
    expect(res.status).toBe(202);
    await eventually(
      async () => {
        const r = await fetch(`${app.url}/v1/people/${user}`);
        return r.status === 200 ? ((await r.json()) as { dialogues: { stage: string }[] }).dialogues[0]?.stage === 'purchase' || undefined : undefined;
      },
      20_000,
      'the user at purchase',
    );
    const missing = await fetch(`${app.url}/v1/people/nobody-${randomUUID()}`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { code: 'unknown_person' } });
  });
});
