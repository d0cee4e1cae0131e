import { randomUUID } from 'node:crypto';
import { startApp, type RunningApp } from '../../apps/all-in-one-app.js';
import { DEFAULT_TOPIC_MAP, type TopicMapConfig } from '../../history/fold/topic-map.js';
import { parseEnv } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { kafkaBrokers, redisClusterNodes, redisUrl } from './services.js';

export type Mode = 'real' | 'cluster' | 'embedded';

/**
 * The all-in-one app on a free port. `real`: the run's Kafka and Redis (`cluster`: its Redis
 * Cluster), with its own consumer group
 * and Redis key prefix so test files do not share state; `embedded`: the in-process log and store.
 */
export async function startTestApp(mode: Mode, overrides: Record<string, string> = {}, map: TopicMapConfig = DEFAULT_TOPIC_MAP): Promise<RunningApp> {
  const tag = randomUUID().slice(0, 8);
  const env = parseEnv({
    PORT: '0',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent',
    ...(mode === 'embedded'
      ? {}
      : {
          KAFKA_BROKERS: kafkaBrokers(),
          ...(mode === 'cluster' ? { REDIS_CLUSTER_NODES: redisClusterNodes() } : { REDIS_URL: redisUrl() }),
          KAFKA_GROUP_ID: `test-${tag}`,
          REDIS_PREFIX: `e2e-${tag}:`,
          KAFKA_PARTITIONS: '3',
        }),
    ...overrides,
  });
  return startApp(env, map, createLogger('test', env.LOG_LEVEL));
}

/** Polls until `check` returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 20_000, what = 'condition'): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

let seq = 0;
/** A collect batch as the snippet sends it. */
export function batch(visitor: string, events: Record<string, unknown>[], extra: Record<string, unknown> = {}) {
  const now = Date.now();
  return {
    site: 'demo',
    visitor,
    session: `s-${visitor}`,
    ...extra,
    events: events.map((e, i) => ({ id: `${visitor}-${++seq}-${randomUUID().slice(0, 8)}`, ts: now + i, ...e })),
  };
}

export function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${url}/v1/collect`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}
