import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import { replay } from '../../history/worker/replay.js';
import { RedisHistoryStore } from '../../history/store/redis.js';
import { compileTopicMap, DEFAULT_TOPIC_MAP } from '../../history/fold/topic-map.js';
import { openKafkaLog } from '../../lib/kafka/log.js';
import { createLogger } from '../../lib/logger.js';
import { batch, eventually, post, startTestApp } from '../support/app.js';
import { kafkaBrokers, redisClient } from '../support/services.js';

describe.each(['real', 'cluster'] as const)('replay from clicks.raw into a fresh namespace (%s Redis)', (mode) => {
  let app: RunningApp;
  const redis = redisClient(mode);
  const live = `live-${randomUUID().slice(0, 8)}:`;
  beforeAll(async () => {
    app = await startTestApp(mode, { REDIS_PREFIX: live });
  });
  afterAll(async () => {
    await app?.stop();
    redis.disconnect();
  });

  it('reproduces the live histories exactly with the same map', async () => {
    const since = Date.now() - 1000;
    const people: string[] = [];
    for (let i = 0; i < 8; i++) {
      const v = `rv-${randomUUID()}`;
      people.push(v);
      const urls = ['/products/sku-1', '/products/sku-1/specs', `/products/sku-${i}`, i % 2 ? '/checkout/sku-1' : '/products/sku-1'];
      expect(
        (
          await post(
            app.url,
            batch(
              v,
              urls.map((url) => ({ type: 'page', url })),
            ),
          )
        ).status,
      ).toBe(202);
      expect((await post(app.url, batch(v, [{ type: 'track', name: 'Order Completed', url: `/checkout/sku-${i}`, value: 10 + i }]))).status).toBe(202);
    }
    // One visitor identifies; a user-only event follows.
    const user = `ru-${randomUUID()}`;
    await eventually(async () => ((await fetch(`${app.url}/v1/people/${people[0]}`)).status === 200 ? true : undefined));
    expect((await post(app.url, batch(people[0]!, [{ type: 'identify', user }]))).status).toBe(202);
    expect((await post(app.url, batch(user, [{ type: 'page', url: '/checkout/sku-3' }]))).status).toBe(202);
    const everyone = [user, ...people.slice(1)];
    const views = async (ns: string) => {
      const store = new RedisHistoryStore(redis, app.backends.store.options, ns);
      return Promise.all(everyone.map((p) => store.getPerson(p)));
    };
    const liveViews = await eventually(
      async () => {
        const v = await views(live);
        const merged = v[0];
        return v.every(Boolean) && merged?.linkedIds.length === 1 && merged.dialogues.some((d) => d.topic === 'product:sku-3') ? v : undefined;
      },
      30_000,
      'the live histories',
    );

    const logger = createLogger('test', 'silent');
    const log = await openKafkaLog({ brokers: kafkaBrokers(), clientId: 'replay-test', logger, producer: { ackTimeoutMs: 5000 } });
    const progress: number[] = [];
    const result = await replay({
      log,
      redis,
      map: DEFAULT_TOPIC_MAP,
      logger,
      from: since,
      namespace: `replay-${randomUUID().slice(0, 8)}:`,
      onProgress: (p) => progress.push(p.done / Math.max(1, p.total)),
    });
    await log.close();
    expect(result.records).toBeGreaterThanOrEqual(people.length * 5 + 2);
    expect(progress.at(-1)).toBe(1);
    expect(await views(result.namespace)).toEqual(liveViews);
    expect(compileTopicMap(DEFAULT_TOPIC_MAP).ladder).toEqual(app.backends.store.options.ladder);
  }, 120_000);
});
