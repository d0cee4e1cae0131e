import { randomUUID } from 'node:crypto';
import { RedisHistoryStore } from '../../history/store/redis.js';
import { automationContract } from '../support/automation-contract.js';
import { deleteNamespace, inspectNamespace } from '../support/redis-inspect.js';
import { redisClient } from '../support/services.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';

// The same suite as the memory store's, on one Redis and on a three-master cluster (the stalled
// sets in the topic's slot, the audience sets and the queue in their own).
for (const [name, kind] of [
  ['Redis', 'real'],
  ['Redis Cluster', 'cluster'],
] as const) {
  const redis = redisClient(kind);
  const namespaces: string[] = [];
  automationContract(
    name,
    async () => {
      const ns = `a-${randomUUID().slice(0, 8)}:`;
      namespaces.push(ns);
      const store = new RedisHistoryStore(redis, FOLD_OPTIONS, ns);
      let now = 0;
      store.clock = () => now;
      return {
        store,
        inspect: () => inspectNamespace(redis, ns),
        setNow: (ms) => {
          now = ms;
        },
      };
    },
    async () => {
      for (const ns of namespaces) await deleteNamespace(redis, ns);
      redis.disconnect();
    },
  );
}
