import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import { KafkaBroker } from '../../services/kafka.js';
import { batch, eventually, post, startTestApp } from '../support/app.js';

// A broker of its own: this test stops and restarts it, which the run's shared broker must not see.
describe('ingest while the Kafka broker is down', () => {
  let broker: KafkaBroker;
  let app: RunningApp;
  beforeAll(async () => {
    broker = await KafkaBroker.start();
    app = await startTestApp('real', { KAFKA_BROKERS: broker.brokers, INGEST_ACK_TIMEOUT_MS: '3000', INGEST_RETRY_AFTER_S: '1' });
  }, 180_000);
  afterAll(async () => {
    await app?.stop().catch(() => {});
    await broker?.destroy();
  });

  it('answers 503 with Retry-After while the broker is stopped, and accepts again once it is back; a retried batch counts once', async () => {
    const visitor = `v-${randomUUID()}`;
    expect((await post(app.url, batch(visitor, [{ type: 'page', url: '/products/sku-1' }]))).status).toBe(202);

    await broker.stop();
    const during = batch(visitor, [{ type: 'page', url: '/products/sku-1/specs' }]);
    const refused = await post(app.url, during);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(await refused.json()).toMatchObject({ error: { code: 'unavailable' } });
    // The process keeps serving everything that does not need Kafka.
    expect((await fetch(`${app.url}/healthz`)).status).toBe(200);

    await broker.start();
    // The client retries the very same batch, as the snippet does, until ingest accepts it.
    await eventually(async () => ((await post(app.url, during)).status === 202 ? true : undefined), 60_000, 'ingest to accept again');

    const person = await eventually(
      async () => {
        const r = await fetch(`${app.url}/v1/people/${visitor}`);
        if (r.status !== 200) return undefined;
        const p = (await r.json()) as { dialogues: { stage: string; counts: Record<string, number> }[] };
        return p.dialogues[0]?.stage === 'detail' ? p : undefined;
      },
      60_000,
      'the person at detail',
    );
    expect(person.dialogues[0]!.counts).toEqual({ intro: 1, detail: 1, purchase: 0 });
  }, 180_000);
});
