/**
 * Addresses of the real Kafka and Redis that test/global-setup.ts started (or
 * took from KAFKA_BROKERS / REDIS_URL) for this vitest run.
 *
 * Fault tests that need to stop/restart a broker start their own with
 * `KafkaBroker.start()` from services/kafka.ts: the shared one lives in
 * vitest's main process and can't be controlled from a test worker.
 */
import { Cluster, Redis } from 'ioredis';
import { inject } from 'vitest';

function provided(key: 'kafkaBrokers' | 'redisUrl' | 'redisClusterNodes', envName: string): string {
  let value: string | undefined;
  try {
    value = inject(key);
  } catch {
    value = undefined; // not inside a vitest worker
  }
  value ||= process.env[envName];
  if (!value) {
    throw new Error(`${key} is not available: run the tests through vitest with test/global-setup.ts as globalSetup (vitest.config.ts), or set ${envName}`);
  }
  return value;
}

/** "127.0.0.1:PORT" (comma-separated if several), for kafkajs `brokers: kafkaBrokers().split(',')`. */
export function kafkaBrokers(): string {
  return provided('kafkaBrokers', 'KAFKA_BROKERS');
}

/** "redis://127.0.0.1:PORT", for `new Redis(redisUrl())`. */
export function redisUrl(): string {
  return provided('redisUrl', 'REDIS_URL');
}

/** "host:port,host:port,host:port" of the run's Redis Cluster masters (REDIS_CLUSTER_NODES). */
export function redisClusterNodes(): string {
  return provided('redisClusterNodes', 'REDIS_CLUSTER_NODES');
}

/**
 * Clients of the run's Redis (`'real'`) or Redis Cluster (`'cluster'`). `enableAutoPipelining` on a
 * cluster, as the stores expect; call `ready()` where a test lists the cluster's masters.
 */
export function redisClient(mode: 'real' | 'cluster'): Redis | Cluster {
  if (mode === 'real') return new Redis(redisUrl());
  const nodes = redisClusterNodes()
    .split(',')
    .map((hp) => ({ host: hp.split(':')[0]!, port: Number(hp.split(':')[1]) }));
  return new Cluster(nodes, { enableAutoPipelining: true });
}

/** Resolves once the client is connected (a cluster knows its masters only then). */
export async function ready<T extends Redis | Cluster>(redis: T): Promise<T> {
  if (redis.status !== 'ready') await new Promise((resolve) => redis.once('ready', resolve));
  return redis;
}
