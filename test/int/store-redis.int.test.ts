import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisHistoryStore } from '../../history/store-redis.js';
import { redisUrl } from '../support/services.js';
import { FOLD_OPTIONS, storeContract } from '../support/store-contract.js';

const redis = new Redis(redisUrl());
// Each test gets its own key namespace on the shared Redis, so tests cannot see each other's keys.
const prefixes: string[] = [];

storeContract(
  'Redis',
  async () => {
    const ns = `t-${randomUUID().slice(0, 8)}:`;
    prefixes.push(ns);
    const store = new RedisHistoryStore(redis, FOLD_OPTIONS, ns);
    return {
      store,
      // Reads every key of the namespace: person hashes by name, and every member of every index.
      inspect: async () => {
        const all = await redis.keys(`${ns}*`);
        const people = [...new Set(all.filter((k) => /^.{2}\{/.test(k.slice(ns.length)) && !k.startsWith(`${ns}ix:`)).map((k) => k.slice(ns.length + 3, -1)))];
        const indexed = new Set<string>();
        for (const k of all.filter((k) => k.startsWith(`${ns}ix:`))) for (const m of await redis.zrange(k, 0, -1)) indexed.add(m);
        return { people: people.sort(), indexed: [...indexed].sort() };
      },
    };
  },
  async () => {
    for (const ns of prefixes) {
      const found = await redis.keys(`${ns}*`);
      if (found.length) await redis.del(...found);
    }
    redis.disconnect();
  },
);
