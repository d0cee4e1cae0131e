/**
 * vitest globalSetup: one real Kafka broker, one real Redis and one local three-master Redis
 * Cluster for the whole run, shared by every test file (in every worker).
 *
 * - KAFKA_BROKERS and REDIS_URL both set (e.g. from `npm run stack`, or CI services): use those,
 *   start nothing else but the cluster (unless REDIS_CLUSTER_NODES is set too).
 * - Otherwise start them all in parallel on free ports and stop/remove them in teardown.
 *
 * Tests read the addresses with kafkaBrokers() / redisUrl() / redisClusterNodes() from
 * test/support/services.ts (vitest's provide/inject); process.env is set too.
 */
import type { TestProject } from 'vitest/node';
import { createKafka, ensureTopics } from '../lib/kafka/client.js';
import { createLogger } from '../lib/logger.js';
import { KafkaBroker } from '../services/kafka.js';
import { RedisCluster } from '../services/redis-cluster.js';
import { RedisServer } from '../services/redis.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** "host:port[,host:port...]" of the Kafka broker(s) for this run. */
    kafkaBrokers: string;
    /** "redis://host:port" of the Redis for this run. */
    redisUrl: string;
    /** "host:port,host:port,host:port" of the Redis Cluster's masters for this run. */
    redisClusterNodes: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const given = {
    kafka: process.env.KAFKA_BROKERS?.trim(),
    redis: process.env.REDIS_URL?.trim(),
    cluster: process.env.REDIS_CLUSTER_NODES?.trim(),
  };
  const useGiven = !!(given.kafka && given.redis);
  const t0 = Date.now();
  const started: { destroy(): Promise<void> }[] = [];
  /** Remembers a service for teardown, also when another one failed to start. */
  const keep = <T extends { destroy(): Promise<void> }>(s: T): T => {
    started.push(s);
    return s;
  };
  const results = await Promise.allSettled([
    useGiven ? Promise.resolve(undefined) : KafkaBroker.start().then(keep),
    useGiven ? Promise.resolve(undefined) : RedisServer.start().then(keep),
    given.cluster ? Promise.resolve(undefined) : RedisCluster.start().then(keep),
  ]);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.allSettled(started.map((s) => s.destroy()));
    throw failed.reason;
  }
  const [kafka, redis, cluster] = results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as [
    KafkaBroker | undefined,
    RedisServer | undefined,
    RedisCluster | undefined,
  ];
  const addresses = {
    kafkaBrokers: kafka?.brokers ?? given.kafka!,
    redisUrl: redis?.url ?? given.redis!,
    redisClusterNodes: cluster?.nodes ?? given.cluster!,
  };
  if (process.env.CLICKFOLD_SERVICES_VERBOSE) console.error(`[global-setup] ${JSON.stringify(addresses)} up in ${Date.now() - t0} ms`);

  // The project's topics exist, with their leaders, before any test file starts: files that
  // create them at the same moment race, and a reader can meet a partition without a leader yet.
  try {
    await ensureTopics(createKafka(addresses.kafkaBrokers, 'test-setup', createLogger('test-setup', 'silent')), 3, 1);
  } catch (err) {
    await Promise.allSettled(started.map((s) => s.destroy()));
    throw err;
  }

  project.provide('kafkaBrokers', addresses.kafkaBrokers);
  project.provide('redisUrl', addresses.redisUrl);
  project.provide('redisClusterNodes', addresses.redisClusterNodes);
  process.env.KAFKA_BROKERS = addresses.kafkaBrokers;
  process.env.REDIS_URL = addresses.redisUrl;

  return async () => {
    const t = Date.now();
    await Promise.allSettled(started.map((s) => s.destroy()));
    if (process.env.CLICKFOLD_SERVICES_VERBOSE) console.error(`[global-setup] services stopped in ${Date.now() - t} ms`);
    if (!useGiven) {
      delete process.env.KAFKA_BROKERS;
      delete process.env.REDIS_URL;
    }
  };
}
