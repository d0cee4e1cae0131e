import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { hourOf, LUA_HOURS } from '../../history/store/hour-counts.js';
import { deltaOf, lastOf, RANK_EPOCH, W_MAX } from '../../history/store/rank-key.js';
import { RedisHistoryStore } from '../../history/store/redis.js';
import { deleteNamespace, inspectNamespace } from '../support/redis-inspect.js';
import { redisClient } from '../support/services.js';
import { FOLD_OPTIONS, storeContract } from '../support/store-contract.js';

// The same contract on one Redis and on a local three-master cluster, where every multi-key
// script and batch must stay within one person's (or one topic's) hash slot. Each test gets its
// own key namespace, so tests cannot see each other's keys.
const clients = {
  Redis: () => redisClient('real'),
  'Redis Cluster': () => redisClient('cluster'),
};

for (const [name, connect] of Object.entries(clients)) {
  const redis = connect();
  const namespaces: string[] = [];
  storeContract(
    name,
    async (opts) => {
      const ns = `t-${randomUUID().slice(0, 8)}:`;
      namespaces.push(ns);
      return { store: new RedisHistoryStore(redis, opts ?? FOLD_OPTIONS, ns), inspect: () => inspectNamespace(redis, ns) };
    },
    async () => {
      for (const ns of namespaces) await deleteNamespace(redis, ns);
      redis.disconnect();
    },
  );
}

describe('the hour counters’ Lua decoding (hour-counts.ts LUA_HOURS)', () => {
  const redis = redisClient('real');
  afterAll(() => redis.disconnect());

  it('gives every index score the hour JavaScript decodes, for every w, at the edges of an hour', async () => {
    // A last activity on the first and on the last millisecond of an hour: a δ(w) off by one in Lua
    // would put one of them in the neighbouring hour.
    const hourStart = Date.UTC(2026, 5, 1, 13);
    const scores: number[] = [];
    for (let w = 0; w <= W_MAX; w++) {
      for (const last of [hourStart, hourStart - 1]) scores.push((last + deltaOf(w) - RANK_EPOCH) * 4096 + w);
    }
    const lua = `${LUA_HOURS}\nlocal out = {}\nfor i = 1, #ARGV do out[i] = hourField(hourOfScore(ARGV[i]), 0, 1) end\nreturn out`;
    const got = (await redis.eval(lua, 0, ...scores.map(String))) as string[];
    expect(got.map(Number)).toEqual(scores.map((s) => hourOf(lastOf(s))));
  });
});
