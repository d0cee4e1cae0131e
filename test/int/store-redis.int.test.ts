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
    return new RedisHistoryStore(redis, FOLD_OPTIONS, ns);
  },
  async () => {
    for (const ns of prefixes) {
      const found = await redis.keys(`${ns}*`);
      if (found.length) await redis.del(...found);
    }
    redis.disconnect();
  },
);
