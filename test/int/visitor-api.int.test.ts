/**
 * The visitor API on the real stack: the all-in-one app on Kafka and Redis (the test run's own
 * services), a visitor's clicks folded by the worker into Redis, read back through `GET /v1/me`
 * and followed on `GET /v1/me/stream`; a second visitor's stream hears nothing of the first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import { batch, eventually, post, startTestApp } from '../support/app.js';

/** Reads a server-sent-event stream's data lines into `out` until it is cancelled. */
async function follow(res: Response, out: unknown[]): Promise<void> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const data = buf
        .slice(0, i)
        .split('\n')
        .find((l) => l.startsWith('data: '));
      buf = buf.slice(i + 2);
      if (data) out.push(JSON.parse(data.slice(6)));
    }
  }
}

describe('visitor API on Kafka and Redis', () => {
  let app: RunningApp;
  beforeAll(async () => {
    app = await startTestApp('real');
  });
  afterAll(async () => {
    await app?.stop();
  });

  it("reads and follows the visitor's own stages as the worker folds them", async () => {
    const run = Date.now();
    // Ids as the snippet makes them: 128 random bits as digits.
    const alice = `${run}${'1'.repeat(24)}`;
    const bob = `${run}${'2'.repeat(24)}`;
    const ac = new AbortController();
    const stream = (visitor: string) =>
      fetch(`${app.url}/v1/me/stream?site=demo&visitor=${visitor}`, { headers: { accept: 'text/event-stream' }, signal: ac.signal });
    const aliceSeen: unknown[] = [];
    const bobSeen: unknown[] = [];
    const [a, b] = await Promise.all([stream(alice), stream(bob)]);
    expect([a.status, b.status]).toEqual([200, 200]);
    const following = [follow(a, aliceSeen), follow(b, bobSeen)];
    await eventually(async () => (aliceSeen.length && bobSeen.length ? true : undefined), 10_000, 'the first maps');
    expect(aliceSeen[0]).toEqual({ stages: {} });

    const url = 'https://shop.example';
    expect((await post(app.url, batch(alice, [{ type: 'page', url: `${url}/products/sku-7` }]))).status).toBe(202);
    await eventually(async () => (aliceSeen.some((m) => JSON.stringify(m).includes('"intro"')) ? true : undefined), 20_000, 'intro');
    expect(
      (
        await post(
          app.url,
          batch(alice, [
            { type: 'page', url: `${url}/products/sku-7/specs` },
            { type: 'page', url: `${url}/checkout/sku-7` },
          ]),
        )
      ).status,
    ).toBe(202);
    await eventually(
      async () => (aliceSeen.some((m) => JSON.stringify(m) === '{"stages":{"product:sku-7":"purchase"}}') ? true : undefined),
      20_000,
      'purchase',
    );
    const me = await fetch(`${app.url}/v1/me?site=demo&visitor=${alice}`);
    expect(await me.json()).toEqual({ stages: { 'product:sku-7': 'purchase' } });
    // The stages only climb, and Bob heard nothing but his own (empty) map.
    const order = ['intro', 'detail', 'purchase'];
    const ranks = aliceSeen.slice(1).map((m) => order.indexOf((m as { stages: Record<string, string> }).stages['product:sku-7']!));
    expect(ranks).toEqual([...ranks].sort());
    expect(bobSeen).toEqual([{ stages: {} }]);
    ac.abort();
    await Promise.all(following);
  });
});
