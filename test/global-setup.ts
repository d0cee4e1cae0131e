/**
 * vitest globalSetup: one real Kafka broker and one real Redis for the whole
 * run, shared by every test file (in every worker).
 *
 * - KAFKA_BROKERS and REDIS_URL both set (e.g. from `npm run stack`, or CI
 *   services): use those, start nothing.
 * - Otherwise start a KafkaBroker and a RedisServer (in parallel) on free
 *   ports and stop/remove them in teardown.
 *
 * Tests read the addresses with kafkaBrokers() / redisUrl() from
 * test/support/services.ts (vitest's provide/inject); process.env is set too.
 */
import type { TestProject } from 'vitest/node';
import { KafkaBroker } from '../services/kafka.js';
import { RedisServer } from '../services/redis.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** "host:port[,host:port...]" of the Kafka broker(s) for this run. */
    kafkaBrokers: string;
    /** "redis://host:port" of the Redis for this run. */
    redisUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const envBrokers = process.env.KAFKA_BROKERS?.trim();
  const envRedis = process.env.REDIS_URL?.trim();
  if (envBrokers && envRedis) {
    project.provide('kafkaBrokers', envBrokers);
    project.provide('redisUrl', envRedis);
    return async () => {};
  }

  const t0 = Date.now();
  let kafka: KafkaBroker | undefined;
  let redis: RedisServer | undefined;
  const results = await Promise.allSettled([
    KafkaBroker.start().then((k) => (kafka = k)),
    RedisServer.start().then((r) => (redis = r)),
  ]);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed || !kafka || !redis) {
    await Promise.allSettled([kafka?.destroy(), redis?.destroy()]);
    throw failed?.reason ?? new Error('global-setup: services did not start');
  }
  if (process.env.CLICKFOLD_SERVICES_VERBOSE) {
    console.error(`[global-setup] Kafka ${kafka.brokers} + Redis ${redis.url} up in ${Date.now() - t0} ms`);
  }

  project.provide('kafkaBrokers', kafka.brokers);
  project.provide('redisUrl', redis.url);
  process.env.KAFKA_BROKERS = kafka.brokers;
  process.env.REDIS_URL = redis.url;

  const k = kafka;
  const r = redis;
  return async () => {
    const t = Date.now();
    await Promise.allSettled([k.destroy(), r.destroy()]);
    if (process.env.CLICKFOLD_SERVICES_VERBOSE) console.error(`[global-setup] services stopped in ${Date.now() - t} ms`);
    if (process.env.KAFKA_BROKERS === k.brokers) delete process.env.KAFKA_BROKERS;
    if (process.env.REDIS_URL === r.url) delete process.env.REDIS_URL;
  };
}
