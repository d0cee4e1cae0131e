import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import { batch, eventually, post, startTestApp } from '../support/app.js';

/**
 * `npm start` (embedded backends): one port serves ingest's and the worker's metrics on /metrics,
 * the worker's probes under /worker, and leaves /readyz to ingest (what a load balancer routes on).
 */
describe('npm start: the worker metrics and readiness on the app port', () => {
  let app: RunningApp;
  beforeAll(async () => {
    app = await startTestApp('embedded', { KAFKA_PARTITIONS: '3' });
  });
  afterAll(() => app?.stop());

  const lagLines = (text: string) => text.split('\n').filter((l) => l.startsWith('clickfold_worker_consumer_lag{'));

  it('serves ingest and worker metrics together, and the lag per partition reaches 0 once the events are folded', async () => {
    const res = await post(
      app.url,
      batch('v-ops-1', [
        { type: 'page', url: 'https://shop.example/products/sku-9' },
        { type: 'page', url: 'https://shop.example/products/sku-9/specs' },
      ]),
    );
    expect(res.status).toBe(202);
    await eventually(async () => ((await app.backends.store.getPerson('v-ops-1'))?.dialogues[0]?.stage === 'detail' ? true : undefined), 10_000, 'the fold');

    const text = await eventually(
      async () => {
        const t = await (await fetch(`${app.url}/metrics`)).text();
        const lines = lagLines(t);
        return lines.length === 3 && lines.every((l) => l.endsWith(' 0')) ? t : undefined;
      },
      15_000,
      'lag 0 on every partition in /metrics',
    );
    expect(
      lagLines(text)
        .map((l) => l.split(' ')[0])
        .sort(),
    ).toEqual(['0', '1', '2'].map((p) => `clickfold_worker_consumer_lag{partition="${p}"}`));
    expect(text).toContain('clickfold_ingest_events_accepted_total');
    expect(text).toMatch(/clickfold_worker_records_total\{outcome="folded"\} 2/);
    // The process metrics appear once (ingest's registry carries them).
    expect(text.match(/^# TYPE process_cpu_user_seconds_total /gm)).toHaveLength(1);
    expect(await app.worker.consumer.lag!()).toEqual(
      new Map([
        [0, 0],
        [1, 0],
        [2, 0],
      ]),
    );
  });

  it('answers /worker/readyz, /worker/healthz, /worker/metrics, and keeps /readyz as ingest answers it', async () => {
    const ready = await fetch(`${app.url}/worker/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, consumer: { running: true, failing: false } });
    expect((await fetch(`${app.url}/worker/healthz`)).status).toBe(200);
    const workerOnly = await (await fetch(`${app.url}/worker/metrics`)).text();
    expect(workerOnly).toContain('clickfold_worker_consumer_lag');
    expect(workerOnly).not.toContain('clickfold_ingest_');
    const ingestReady = await fetch(`${app.url}/readyz`);
    expect(ingestReady.status).toBe(200);
    expect(await ingestReady.json()).toEqual({ ready: true });
  });

  it('says not ready once the worker is stopping', async () => {
    await app.stop();
    expect(app.worker.readiness()).toMatchObject({ ready: false, reason: 'shutting down' });
  });
});
