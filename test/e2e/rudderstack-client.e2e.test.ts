import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import Analytics from '@rudderstack/rudder-sdk-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import { startTestApp } from '../support/app.js';
import { JOURNEY_MAP, purchased, serverJourney, sitesFile } from '../support/segment-journey.js';

const WRITE_KEY = `wk_rudder_${randomUUID().slice(0, 8)}`;

// RudderStack's Node SDK, unchanged but for `dataPlaneUrl`, against the all-in-one app on the run's
// Kafka and Redis. It posts gzipped JSON to /v1/batch labelled application/x-www-form-urlencoded.
describe('RudderStack Node SDK → ingest → Kafka → worker → dialogues (real backends)', () => {
  let app: RunningApp;
  const sites = sitesFile({ id: 'crm-rudder', writeKeys: [WRITE_KEY] });
  beforeAll(async () => {
    app = await startTestApp('real', { INGEST_SITES: sites }, JOURNEY_MAP);
  });
  afterAll(async () => {
    await app?.stop();
    rmSync(sites, { force: true });
  });

  it('lands a page view, an e-mail click and an order in the user’s dialogue at purchase', async () => {
    const failures: unknown[] = [];
    const client = new Analytics(WRITE_KEY, {
      dataPlaneUrl: app.url,
      flushAt: 2,
      flushInterval: 200,
      retryCount: 1,
      logLevel: 'none',
      errorHandler: (err) => failures.push(err),
    });
    const sku = `sku-${randomUUID().slice(0, 8)}`;
    const user = `u-${randomUUID().slice(0, 8)}`;
    const delivered: Promise<unknown>[] = [];
    for (const [method, message] of serverJourney(`a-${user}`, user, sku)) {
      // The SDK calls back with the batch's error, if any, once the batch is answered.
      delivered.push(new Promise((resolve) => (client[method] as (m: unknown, cb: (err?: unknown) => void) => void)(message, resolve)));
    }
    await client.flush();
    const errors = (await Promise.all(delivered)).filter((e) => e !== undefined);
    expect({ errors, failures }).toEqual({ errors: [], failures: [] });

    const view = await purchased(app.url, user, `product:${sku}`, { intro: 1, detail: 1, purchase: 1 });
    expect(view.dialogues.find((d) => d.topic === `product:${sku}`)).toMatchObject({ stage: 'purchase', counts: { intro: 1, detail: 1, purchase: 1 } });
    expect(view.dialogues.find((d) => d.topic === `product:${sku}`)!.channels.sort()).toEqual(['email', 'server']);
    expect(view.rfm).toMatchObject({ purchases: 1, totalValue: 129 });
  });

  it('gets a 401 for a write key no site has, and the SDK reports it', async () => {
    const failures: unknown[] = [];
    const client = new Analytics('wk_unknown_00000000', {
      dataPlaneUrl: app.url,
      flushAt: 1,
      retryCount: 0,
      logLevel: 'none',
      errorHandler: (e) => failures.push(e),
    });
    await new Promise((resolve) => client.track({ userId: 'u-x', event: 'Nope' }, resolve as () => void));
    await client.flush();
    expect(failures.map((e) => (e as { response?: { status: number } }).response?.status)).toEqual([401]);
  });
});
