import { Cluster, Redis } from 'ioredis';
import type { Env } from './config.js';

/** Whether the environment names a Redis (one server or a cluster). */
export const hasRedis = (env: Env): boolean => !!(env.REDIS_URL || env.REDIS_CLUSTER_NODES);

/**
 * One Redis or a Redis Cluster, from REDIS_URL or REDIS_CLUSTER_NODES. Commands wait for the
 * server instead of failing while it is away: a worker must pause, not skip. Autopipelining
 * groups the commands a batch sends at once into one round trip per node.
 */
export function createRedis(env: Env): Redis | Cluster {
  if (env.REDIS_CLUSTER_NODES) {
    const nodes = env.REDIS_CLUSTER_NODES.split(',').map((hp) => {
      const [host = '127.0.0.1', port = '6379'] = hp.trim().split(':');
      return { host, port: Number(port) };
    });
    return new Cluster(nodes, { enableAutoPipelining: true, redisOptions: { maxRetriesPerRequest: null } });
  }
  if (!env.REDIS_URL) throw new Error('set REDIS_URL or REDIS_CLUSTER_NODES');
  return new Redis(env.REDIS_URL, { maxRetriesPerRequest: null });
}
