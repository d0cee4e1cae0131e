import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOPICS } from '../../contract/raw-event.js';
import { RedisHistoryStore } from '../../history/store/redis.js';
import { redisCommand, RedisServer } from '../../services/redis.js';
import { eventually } from '../support/app.js';
import { spawnLogged, type LoggedProcess } from '../support/process-log.js';
import { startGroupAtEnd } from '../support/kafka-groups.js';
import { kafkaBrokers } from '../support/services.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';
import { rawPage } from '../support/raw-records.js';

/**
 * The standalone worker (`apps/worker.ts`) as an operator sees it, on the run's Kafka and a
 * Redis of its own: /healthz, /readyz, /metrics on WORKER_PORT; the lag per partition; Redis out of
 * memory turns /readyz to 503 with the reason while the batch is retried (and nothing is lost);
 * and a Redis that evicts keys is refused at start by every process that writes or reads histories.
 */
type Json = Record<string, unknown>;

function lagOf(metrics: string): Map<number, number> {
  const lag = new Map<number, number>();
  for (const m of metrics.matchAll(/^clickfold_worker_consumer_lag\{partition="(\d+)"\} (\d+)$/gm)) lag.set(Number(m[1]), Number(m[2]));
  return lag;
}

function counter(metrics: string, series: string): number {
  const line = metrics.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

async function produce(person: string, urls: string[]): Promise<void> {
  const now = Date.now();
  const events = urls.map((url, i) => rawPage(person, i, url, now));
  const producer = new Kafka({ brokers: kafkaBrokers().split(','), logLevel: logLevel.NOTHING }).producer({
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  await producer.send({ topic: TOPICS.raw, acks: -1, messages: events.map((e) => ({ key: person, value: JSON.stringify(e) })) });
  await producer.disconnect();
}

describe('the worker process: probes, metrics, lag, Redis out of memory', () => {
  let redisServer: RedisServer;
  let redis: Redis;
  let worker: LoggedProcess;
  let probes: string;
  let store: RedisHistoryStore;
  const prefix = `ops-${randomUUID().slice(0, 8)}:`;

  beforeAll(async () => {
    redisServer = await RedisServer.start();
    redis = new Redis(redisServer.url);
    store = new RedisHistoryStore(redis, FOLD_OPTIONS, prefix);
    const group = `ops-${randomUUID()}`;
    await startGroupAtEnd(group);
    worker = spawnLogged('apps/worker.ts', {
      KAFKA_BROKERS: kafkaBrokers(),
      REDIS_URL: redisServer.url,
      REDIS_CLUSTER_NODES: '',
      REDIS_PREFIX: prefix,
      KAFKA_GROUP_ID: group,
      KAFKA_PARTITIONS: '3',
      // The shortest the broker allows: the outage below lasts longer, so only heartbeats sent
      // while the batch waits keep the member in its group.
      KAFKA_SESSION_TIMEOUT_MS: '6000',
      WORKER_PORT: '0',
      HOST: '127.0.0.1',
    });
    const listening = await worker.line(/^worker probes are listening/);
    probes = listening.url as string;
    expect(probes).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    await worker.line(/^worker is folding clicks\.raw$/);
  });

  afterAll(async () => {
    await worker?.stop(5000);
    redis?.disconnect();
    await redisServer?.destroy();
  });

  it('answers /healthz, and /readyz once it has joined its group', async () => {
    const health = await fetch(`${probes}/healthz`);
    expect(health.status).toBe(200);
    const ready = await eventually(
      async () => {
        const r = await fetch(`${probes}/readyz`);
        return r.status === 200 ? ((await r.json()) as Json) : undefined;
      },
      30_000,
      '/readyz 200',
    );
    expect(ready).toMatchObject({ ready: true, consumer: { running: true, failing: false } });
  });

  it('folds records, and the lag of every partition it owns reaches 0 in /metrics', { timeout: 200_000 }, async () => {
    const person = `p-${randomUUID()}`;
    await produce(person, ['/products/sku-7', '/products/sku-7/specs']);
    await eventually(async () => ((await store.getPerson(person))?.dialogues[0]?.stage === 'detail' ? true : undefined), 90_000, 'the fold');
    const text = await eventually(
      async () => {
        const t = await (await fetch(`${probes}/metrics`)).text();
        const lag = lagOf(t);
        return lag.size > 0 && [...lag.values()].every((n) => n === 0) ? t : undefined;
        // The group started at the end of clicks.raw; other test files write beside it.
      },
      90_000,
      'lag 0 on every partition',
    );
    expect(counter(text, 'clickfold_worker_records_total{outcome="folded"}')).toBeGreaterThanOrEqual(2);
    expect(text).toContain('process_resident_memory_bytes');
  });

  it('Redis out of memory: /readyz is 503 with the reason while the batch is retried; once Redis has room the batch is folded and the lag is 0', {
    timeout: 180_000,
  }, async () => {
    const person = `p-${randomUUID()}`;
    // Any used memory is over a 1-byte limit: every write is refused with OOM, reads still work.
    expect(await redisCommand(redisServer.port, 'CONFIG SET maxmemory 1')).toBe('+OK');
    try {
      await produce(person, ['/products/sku-8', '/checkout/sku-8']);
      const notReady = await eventually(
        async () => {
          const r = await fetch(`${probes}/readyz`);
          return r.status === 503 ? ((await r.json()) as Json) : undefined;
        },
        30_000,
        '/readyz 503',
      );
      expect(notReady.ready).toBe(false);
      expect(notReady.reason).toMatch(/batches have been failing for \d+ s/);
      expect(notReady.reason).toMatch(/Redis is out of memory since .*OOM command not allowed/);

      // Retried with backoff (a few attempts a second at most), warned about once, not per attempt;
      // the outage outlasts the session timeout.
      await new Promise((r) => setTimeout(r, 8000));
      const text = await (await fetch(`${probes}/metrics`)).text();
      const retries = counter(text, 'clickfold_worker_batch_retries_total{reason="redis_oom"}');
      expect(retries).toBeGreaterThanOrEqual(2);
      expect(retries).toBeLessThan(60);
      expect(counter(text, 'clickfold_worker_redis_errors_total{kind="oom"}')).toBeGreaterThanOrEqual(retries);
      expect([...lagOf(text).values()].reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(2);
      const warned = worker.lines.filter((l) => l.level === 40 && /failed; retrying the same batch/.test(String(l.msg)));
      expect(warned.length).toBeGreaterThanOrEqual(1);
      expect(warned.length).toBeLessThan(retries);
      expect(String(warned[0]!.err)).toMatch(/OOM command not allowed/);
      expect(worker.lines.some((l) => l.level === 50 && /Redis is out of memory/.test(String(l.msg)))).toBe(true);
      expect(await store.getPerson(person)).toBeNull();
    } finally {
      await redisCommand(redisServer.port, 'CONFIG SET maxmemory 0');
    }

    await eventually(async () => ((await fetch(`${probes}/readyz`)).status === 200 ? true : undefined), 30_000, '/readyz 200 again');
    const view = await eventually(
      async () => {
        const p = await store.getPerson(person);
        return p?.dialogues[0]?.stage === 'purchase' ? p : undefined;
      },
      30_000,
      'the fold after the outage',
    );
    expect(view.dialogues[0]!.counts).toEqual({ intro: 1, detail: 0, purchase: 1 });
    await eventually(
      async () => {
        const lag = lagOf(await (await fetch(`${probes}/metrics`)).text());
        return lag.size > 0 && [...lag.values()].every((n) => n === 0) ? true : undefined;
      },
      30_000,
      'lag 0 after the outage',
    );
    expect(worker.lines.some((l) => /is getting through again/.test(String(l.msg)))).toBe(true);
    expect(worker.lines.some((l) => /Redis takes writes again/.test(String(l.msg)))).toBe(true);
    // The member stayed in its group throughout: kafkajs never had to rejoin.
    expect(worker.lines.filter((l) => l.logger === 'kafkajs' && /re-joining|rebalanc|not aware of this member/i.test(String(l.msg)))).toEqual([]);
  });

  it('on SIGTERM leaves its group and exits 0', async () => {
    expect(await worker.stop()).toBe(0);
    expect(worker.lines.some((l) => l.msg === 'stopped cleanly')).toBe(true);
  });
});

describe('a Redis that evicts keys', () => {
  let evicting: RedisServer;
  beforeAll(async () => {
    evicting = await RedisServer.start({ extraArgs: ['--maxmemory', '64mb', '--maxmemory-policy', 'allkeys-lru'] });
  });
  afterAll(() => evicting?.destroy());

  it.each([
    ['the worker', 'apps/worker.ts', {}],
    ['the query API', 'apps/api.ts', { API_KEYS: `ops-key-${randomUUID()}` }],
    ['npm start on the real stack', 'apps/all-in-one.ts', { API_KEYS: `ops-key-${randomUUID()}`, PORT: '0' }],
  ])('is refused by %s, with the policy and what to set instead', async (_name, script, extra) => {
    const child = spawnLogged(script, { KAFKA_BROKERS: kafkaBrokers(), REDIS_URL: evicting.url, REDIS_CLUSTER_NODES: '', WORKER_PORT: '0', ...extra });
    expect(await child.exited).toBe(1);
    expect(child.stderr()).toContain(
      `Redis 127.0.0.1:${evicting.port} has maxmemory-policy allkeys-lru: when memory is full it evicts any key, histories included`,
    );
    expect(child.stderr()).toContain('Set maxmemory-policy noeviction');
  });
});
