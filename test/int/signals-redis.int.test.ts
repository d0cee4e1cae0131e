import { randomUUID } from 'node:crypto';
import { RedisHistoryStore } from '../../history/store/redis.js';
import { deleteNamespace } from '../support/redis-inspect.js';
import { redisClient } from '../support/services.js';
import { signalsContract } from '../support/signals-contract.js';

// The signals suite the in-memory store passes (test/unit/signals.unit.test.ts), on one Redis and on
// a local cluster: the same dialogue encoding, merge, needs filter and ranking weight.
const clients = {
  Redis: () => redisClient('real'),
  'Redis Cluster': () => redisClient('cluster'),
};

for (const [name, connect] of Object.entries(clients)) {
  const redis = connect();
  const namespaces: string[] = [];
  signalsContract(
    name,
    async (opts) => {
      const ns = `sig-${randomUUID().slice(0, 8)}:`;
      namespaces.push(ns);
      return new RedisHistoryStore(redis, opts, ns);
    },
    async () => {
      for (const ns of namespaces) await deleteNamespace(redis, ns);
      redis.disconnect();
    },
  );
}
