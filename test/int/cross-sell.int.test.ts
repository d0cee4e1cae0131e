import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_FOLLOWER_CAPACITY } from '../../history/crm/cross-sell.js';
import type { FieldBackend } from '../../history/fold/fold-batch.js';
import { RedisHistoryStore } from '../../history/store/redis.js';
import { keys, type HistoryStore } from '../../history/store/store.js';
import { crossSellContract } from '../support/cross-sell-contract.js';
import { deleteNamespace } from '../support/redis-inspect.js';
import { redisClient } from '../support/services.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';

// The cross-selling contract on one Redis and on a local three-master cluster (each topic's
// counters in the topic's slot).
for (const [name, mode] of [
  ['Redis', 'real'],
  ['Redis Cluster', 'cluster'],
] as const) {
  const redis = redisClient(mode);
  const namespaces: string[] = [];
  crossSellContract(
    name,
    async () => {
      const ns = `xs-${randomUUID().slice(0, 8)}:`;
      namespaces.push(ns);
      return new RedisHistoryStore(redis, FOLD_OPTIONS, ns);
    },
    async () => {
      for (const ns of namespaces) await deleteNamespace(redis, ns);
      redis.disconnect();
    },
  );
}

const backendOf = (store: HistoryStore) => (store as unknown as { backend: FieldBackend }).backend;

describe('cross-selling counters in Redis: what they cost', () => {
  const redis = redisClient('real') as Redis;
  const ns = `xsm-${randomUUID().slice(0, 8)}:`;
  afterAll(async () => {
    await deleteNamespace(redis, ns);
    redis.disconnect();
  });

  it(`keeps a topic's counters at ${DEFAULT_FOLLOWER_CAPACITY} followers however many follow, measured with MEMORY USAGE`, async () => {
    const store = new RedisHistoryStore(redis, FOLD_OPTIONS, ns);
    // A busy topic: 2,000 different topics bought after it, heavy ones many times, so every counter
    // is full and most carry an error (the longest values the counters hold).
    const followers: string[] = [];
    for (let i = 0; i < 20_000; i++) followers.push(i % 4 === 0 ? `product:sku-${100_000 + (i % 40)}` : `product:sku-${200_000 + (i % 2000)}`);
    for (let i = 0; i < followers.length; i += 1000) {
      await backendOf(store).crossSell({ topics: [{ topic: 'product:sku-busy', buyers: 1000, followers: followers.slice(i, i + 1000) }] });
    }
    const key = keys.crossSell(ns, 'product:sku-busy');
    expect(await redis.hlen(key)).toBe(DEFAULT_FOLLOWER_CAPACITY + 1);
    const [counts] = await store.crossSell(['product:sku-busy']);
    expect(counts!.buyers).toBe(20_000);
    let sum = 0;
    for (const c of counts!.followers.values()) sum += c.count;
    expect(sum).toBe(followers.length);
    const bytes = Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
    const encoding = await redis.object('ENCODING', key);
    console.log(`cross-selling counters of one topic, ${DEFAULT_FOLLOWER_CAPACITY} followers with errors: ${bytes} bytes (${encoding})`);
    expect(encoding).toBe('listpack');
    expect(bytes).toBeLessThan(2048);
  });
});
