import { EventEmitter } from 'node:events';
import { ReplyError, type Cluster, type Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createWorkerHttpApp, workerReadiness } from '../../history/worker/http.js';
import { createWorkerMetrics, failureReason, observeBatches, pollLag } from '../../history/worker/metrics.js';
import { BatchRetries, LogUnavailableError, type ConsumerHealth, type LogConsumer } from '../../lib/log.js';
import { checkEvictionPolicy, isRedisOom, redisErrorKind, RedisWatch } from '../../lib/redis.js';
import { captureLogs } from '../support/log-capture.js';

const OOM = "OOM command not allowed when used memory > 'maxmemory'.";
const replyError = (message: string): Error => new (ReplyError as new (m: string) => Error)(message);
const connRefused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' });

afterEach(() => vi.restoreAllMocks());

/** A stand-in for an ioredis client: events, a status, and CONFIG GET. */
function fakeRedis(status = 'ready', config?: () => Promise<unknown>) {
  const client = Object.assign(new EventEmitter(), {
    status,
    options: { host: '10.0.0.1', port: 6390 },
    config: config ?? (async () => ['maxmemory-policy', 'noeviction']),
  });
  return client as typeof client & Redis;
}

function fakeConsumer(health: ConsumerHealth, lag?: () => Promise<Map<number, number>>): LogConsumer {
  return { run: async () => {}, stop: async () => {}, health: () => health, ...(lag ? { lag } : {}) };
}

describe('BatchRetries', () => {
  it('doubles the pause from initialMs up to maxMs, with jitter in the upper half', () => {
    const r = new BatchRetries('t', undefined, { initialMs: 100, maxMs: 1000 });
    vi.spyOn(Math, 'random').mockReturnValue(1);
    expect([1, 2, 3, 4, 5, 6].map(() => r.failed(0, new Error('x')))).toEqual([100, 200, 400, 800, 1000, 1000]);
    vi.spyOn(Math, 'random').mockReturnValue(0);
    expect(r.failed(0, new Error('x'))).toBe(500);
    // Another partition starts its own streak.
    expect(r.failed(1, new Error('x'))).toBe(50);
  });

  it('reports failing from the earliest streak until each failing partition got through, and forgets partitions it lost', () => {
    let now = 1000;
    const r = new BatchRetries('t', undefined, {}, () => now);
    expect(r.health(true)).toEqual({ running: true, failing: false, attempts: 0 });
    r.failed(2, new Error('first'));
    now = 2000;
    r.failed(1, new LogUnavailableError('Kafka did not take the events'));
    r.failed(1, new LogUnavailableError('Kafka did not take the events'));
    expect(r.health(true)).toEqual({ running: true, failing: true, since: 1000, attempts: 2, lastError: 'LogUnavailableError: Kafka did not take the events' });
    r.succeeded(1);
    expect(r.health(true)).toMatchObject({ failing: true, since: 1000, attempts: 1 });
    r.keepOnly(new Set([0, 1]));
    // Not failing any more, but the last error stays visible to the operator.
    expect(r.health(true)).toEqual({ running: true, failing: false, attempts: 0, lastError: 'LogUnavailableError: Kafka did not take the events' });
  });
});

describe('classifying failures', () => {
  it('tells Redis out of memory, Redis, Kafka and the rest apart, also through causes', () => {
    expect(failureReason(replyError(OOM))).toBe('redis_oom');
    expect(failureReason(new Error('fold failed', { cause: replyError(`ERR Error running script: ${OOM}`) }))).toBe('redis_oom');
    expect(failureReason(new AggregateError([new Error('x'), replyError(OOM)]))).toBe('redis_oom');
    expect(failureReason(connRefused())).toBe('redis');
    expect(failureReason(replyError('READONLY You cannot write against a read only replica.'))).toBe('redis');
    expect(failureReason(new LogUnavailableError('no acknowledgement from Kafka within 5000 ms'))).toBe('kafka');
    expect(failureReason(Object.assign(new Error('broker gone'), { name: 'KafkaJSConnectionError' }))).toBe('kafka');
    expect(failureReason(new RangeError('Invalid array length'))).toBe('other');
    expect(isRedisOom(new Error('OOM-ish but not Redis'))).toBe(false);
    expect(redisErrorKind(new Error('plain'))).toBeUndefined();
  });
});

describe('observeBatches and the Redis watch', () => {
  it('counts each failure by reason, and keeps Redis not ready from an OOM refusal until a batch gets through', async () => {
    const metrics = createWorkerMetrics();
    const { logger, lines } = captureLogs();
    const client = fakeRedis();
    const watch = new RedisWatch(client, logger);
    watch.onError((kind) => metrics.redisErrors.inc({ kind }));
    const failures: unknown[] = [replyError(OOM), replyError(OOM), new LogUnavailableError('Kafka away')];
    const handler = observeBatches(
      async () => {
        const next = failures.shift();
        if (next) throw next;
      },
      metrics,
      watch,
    );
    const batch = { topic: 'clicks.raw', partition: 0, messages: [] };

    await expect(handler(batch)).rejects.toThrow(/OOM/);
    expect(watch.status()).toMatchObject({ ready: false, reason: expect.stringMatching(/^Redis is out of memory since .*OOM command not allowed/) });
    await expect(handler(batch)).rejects.toThrow(/OOM/);
    await expect(handler(batch)).rejects.toThrow(/Kafka away/);
    // Still out of memory: nothing has been written since.
    expect(watch.status().ready).toBe(false);
    await handler(batch);
    expect(watch.status()).toEqual({ ready: true });

    const text = await metrics.registry.metrics();
    expect(text).toContain('clickfold_worker_batch_retries_total{reason="redis_oom"} 2');
    expect(text).toContain('clickfold_worker_batch_retries_total{reason="kafka"} 1');
    expect(text).toContain('clickfold_worker_redis_errors_total{kind="oom"} 2');
    // One error line when it began, one when it ended, not one per attempt.
    expect(lines.filter((l) => l.level === 50).map((l) => l.msg)).toEqual([expect.stringMatching(/out of memory/)]);
    expect(lines.filter((l) => /takes writes again/.test(l.msg))).toHaveLength(1);
  });

  it('counts connection errors from the client, warns once per 30 s, and is not ready until the client is', () => {
    let now = 0;
    const metrics = createWorkerMetrics();
    const { logger, lines } = captureLogs();
    const client = fakeRedis('ready');
    const watch = new RedisWatch(client, logger, () => now);
    watch.onError((kind) => metrics.redisErrors.inc({ kind }));
    client.status = 'reconnecting';
    for (let i = 0; i < 5; i++, now += 1000) client.emit('error', connRefused());
    expect(watch.status()).toEqual({ ready: false, reason: 'Redis is reconnecting: connect ECONNREFUSED 127.0.0.1:6379' });
    now += 30_000;
    client.emit('error', connRefused());
    expect(lines.filter((l) => l.level === 40)).toHaveLength(2);
    client.status = 'ready';
    client.emit('ready');
    expect(watch.status()).toEqual({ ready: true });
    expect(lines.some((l) => /reachable again/.test(l.msg))).toBe(true);
    return metrics.registry.metrics().then((text) => expect(text).toContain('clickfold_worker_redis_errors_total{kind="connection"} 6'));
  });
});

describe('the Redis eviction policy check', () => {
  const policy = (p: string) => fakeRedis('ready', async () => ['maxmemory-policy', p]);

  it('accepts noeviction silently', async () => {
    const { logger, lines } = captureLogs();
    await checkEvictionPolicy(policy('noeviction'), logger);
    expect(lines).toEqual([]);
  });

  it.each(['allkeys-lru', 'allkeys-lfu', 'allkeys-random'])('refuses %s, saying what to set', async (p) => {
    const { logger } = captureLogs();
    await expect(checkEvictionPolicy(policy(p), logger)).rejects.toThrow(
      new RegExp(
        `^Redis 10\\.0\\.0\\.1:6390 has maxmemory-policy ${p}: when memory is full it evicts any key, histories included.*Set maxmemory-policy noeviction`,
      ),
    );
  });

  it('accepts volatile-* with a warning (only keys with a TTL: fingerprints and saved rankings)', async () => {
    const { logger, lines } = captureLogs();
    await checkEvictionPolicy(policy('volatile-lru'), logger);
    expect(lines.map((l) => [l.level, l.policy])).toEqual([[40, 'volatile-lru']]);
  });

  it('refuses a policy it does not know', async () => {
    const { logger } = captureLogs();
    await expect(checkEvictionPolicy(policy('evict-everything'), logger)).rejects.toThrow(/evict-everything.*set noeviction/);
  });

  it('goes on with a warning when CONFIG is renamed or not permitted, and fails on other errors', async () => {
    for (const message of [
      "ERR unknown command 'CONFIG', with args beginning with: 'GET' 'maxmemory-policy' ",
      "NOPERM User worker has no permissions to run the 'config|get' command",
    ]) {
      const { logger, lines } = captureLogs();
      await checkEvictionPolicy(
        fakeRedis('ready', async () => {
          throw replyError(message);
        }),
        logger,
      );
      expect(lines.map((l) => l.level)).toEqual([40]);
      expect(lines[0]!.msg).toMatch(/cannot read Redis maxmemory-policy/);
    }
    const { logger } = captureLogs();
    await expect(
      checkEvictionPolicy(
        fakeRedis('ready', async () => {
          throw replyError('LOADING Redis is loading the dataset in memory');
        }),
        logger,
      ),
    ).rejects.toThrow(/LOADING/);
  });

  it('checks every master of a cluster', async () => {
    const { Cluster: RealCluster } = await import('ioredis');
    const masters = [policy('noeviction'), policy('allkeys-lru')];
    const cluster = Object.assign(Object.create(RealCluster.prototype) as Cluster, {
      ping: async () => 'PONG',
      nodes: (role: string) => (role === 'master' ? masters : []),
    });
    const { logger } = captureLogs();
    await expect(checkEvictionPolicy(cluster, logger)).rejects.toThrow(/allkeys-lru/);
  });
});

describe('worker readiness and probes', () => {
  const healthy: ConsumerHealth = { running: true, failing: false, attempts: 0 };

  it('is ready when the consumer runs and gets through and Redis is ready', async () => {
    const metrics = createWorkerMetrics();
    const app = createWorkerHttpApp({
      metrics,
      readiness: () => workerReadiness({ consumer: fakeConsumer(healthy), redis: new RedisWatch(fakeRedis(), captureLogs().logger) }),
    });
    const ready = await app.request('/readyz');
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ready: true, consumer: healthy });
    expect((await app.request('/healthz')).status).toBe(200);
    metrics.records.inc({ outcome: 'folded' }, 3);
    const m = await app.request('/metrics');
    expect(m.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await m.text()).toContain('clickfold_worker_records_total{outcome="folded"} 3');
  });

  it('answers 503 with every reason: failing batches, a stopped consumer, Redis, shutdown', async () => {
    const failing: ConsumerHealth = {
      running: true,
      failing: true,
      since: 10_000,
      attempts: 7,
      lastError: 'LogUnavailableError: Kafka did not take the events',
    };
    const client = fakeRedis('reconnecting');
    const r = workerReadiness({ consumer: fakeConsumer(failing), redis: new RedisWatch(client, captureLogs().logger), now: () => 22_000 });
    expect(r).toEqual({
      ready: false,
      reason:
        'batches have been failing for 12 s (7 attempts, retried with backoff): LogUnavailableError: Kafka did not take the events; Redis is reconnecting',
      consumer: failing,
    });
    expect(workerReadiness({ consumer: fakeConsumer({ ...healthy, running: false }) }).reason).toBe('the clicks.raw consumer is not running');
    expect(workerReadiness({ consumer: fakeConsumer(healthy), stopping: () => true }).reason).toBe('shutting down');
    const app = createWorkerHttpApp({ metrics: createWorkerMetrics(), readiness: () => r });
    const res = await app.request('/readyz');
    expect(res.status).toBe(503);
    expect(((await res.json()) as { reason: string }).reason).toMatch(/^batches have been failing/);
  });
});

describe('pollLag', () => {
  it('sets the gauge per partition the consumer reports and drops the partitions it stopped reporting', async () => {
    const metrics = createWorkerMetrics();
    let lag = new Map([
      [0, 5],
      [1, 0],
      [2, 7],
    ]);
    const poller = pollLag(
      fakeConsumer({ running: true, failing: false, attempts: 0 }, async () => lag),
      metrics,
      { intervalMs: 60_000 },
    );
    try {
      await poller.poll();
      let text = await metrics.registry.metrics();
      expect(text).toContain('clickfold_worker_consumer_lag{partition="0"} 5');
      expect(text).toContain('clickfold_worker_consumer_lag{partition="2"} 7');
      lag = new Map([[0, 0]]);
      await poller.poll();
      text = await metrics.registry.metrics();
      expect(text).toContain('clickfold_worker_consumer_lag{partition="0"} 0');
      expect(text).not.toContain('partition="1"');
      expect(text).not.toContain('partition="2"');
    } finally {
      poller.stop();
    }
  });
});
