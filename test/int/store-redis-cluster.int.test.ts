import { randomUUID } from 'node:crypto';
import { Cluster } from 'ioredis';
import { RedisHistoryStore } from '../../history/store-redis.js';
import { redisClusterNodes } from '../support/services.js';
import { FOLD_OPTIONS, storeContract } from '../support/store-contract.js';

// The same contract as on one Redis, on a local three-master cluster: every multi-key script and
// batch must stay within one person's (or one topic's) hash slot.
const nodes = redisClusterNodes().split(',').map((hp) => ({ host: hp.split(':')[0]!, port: Number(hp.split(':')[1]) }));
const cluster = new Cluster(nodes, { enableAutoPipelining: true });
const prefixes: string[] = [];
const allKeys = async (pattern: string) => (await Promise.all(cluster.nodes('master').map((n) => n.keys(pattern)))).flat();

storeContract(
  'Redis Cluster',
  async () => {
    const ns = `c-${randomUUID().slice(0, 8)}:`;
    prefixes.push(ns);
    const store = new RedisHistoryStore(cluster, FOLD_OPTIONS, ns);
    return {
      store,
      inspect: async () => {
        const all = await allKeys(`${ns}*`);
        const people = [...new Set(all.filter((k) => /^.{2}\{/.test(k.slice(ns.length)) && !k.startsWith(`${ns}ix:`)).map((k) => k.slice(ns.length + 3, -1)))];
        const indexed = new Set<string>();
        for (const k of all.filter((k) => k.startsWith(`${ns}ix:`))) for (const m of await cluster.zrange(k, 0, -1)) indexed.add(m);
        return { people: people.sort(), indexed: [...indexed].sort() };
      },
    };
  },
  async () => {
    for (const ns of prefixes) for (const k of await allKeys(`${ns}*`)) await cluster.del(k);
    cluster.disconnect();
  },
);
