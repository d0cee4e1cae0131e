import { randomUUID } from 'node:crypto';
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
