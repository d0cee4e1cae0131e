/**
 * The processes the benchmark measures, one mode per process so that the load generator and the
 * measured code never share an event loop. bench/harness.ts bundles this file with esbuild and
 * forks it with plain `node` (no TypeScript loader on the hot path or in the CPU profiles); it
 * talks to its parent over the IPC channel.
 *
 *   ingest   createIngestApp + KafkaLogProducer on a free port (the ingest process of the real stack)
 *   bare     node:http that reads the body and answers 204 (the floor of HTTP in Node)
 *   hono     a Hono route on @hono/node-server that only parses the JSON body
 *   raw      a producer alone (kafkajs, or @platformatic/kafka with `client`), with the project's
 *            settings, sending prepared records
 *   fold     one worker: KafkaLogConsumer + createBatchHandler + RedisHistoryStore until lag 0
 *   app      the all-in-one app on Kafka + Redis, reporting probe transitions as they happen
 */
import { isTransition } from '../contract/transition.js';
import { AudienceDefinition } from '../contract/audience.js';
import { StallRule } from '../contract/stall-rule.js';
import { compileAudience } from '../history/audiences/membership.js';
import { createAutomation } from '../history/automation/evaluate.js';
import { compileStallRules } from '../history/stalls/rules.js';
import { BENCH_AUDIENCE } from './lib.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { Redis } from 'ioredis';
import { CompressionTypes, type Kafka } from 'kafkajs';
import { startApp } from '../apps/all-in-one-app.js';
import { visitorSource } from '../apps/shared/visitor.js';
import { LiveFeed } from '../history/transitions/live-feed.js';
import { parseTransition } from '../history/transitions/log.js';
import { createBatchHandler, toFoldEvent } from '../history/worker/batch.js';
import { MemoryHistoryStore } from '../history/store/memory.js';
import { RawEvent, TOPICS } from '../contract/raw-event.js';
import { RedisHistoryStore } from '../history/store/redis.js';
import { compileTopicMap, DEFAULT_TOPIC_MAP, foldOptionsOf, type TopicMap } from '../history/fold/topic-map.js';
import { createIngestApp } from '../ingest/app.js';
import { parseEnv } from '../lib/config.js';
import { createTopicsReady } from '../lib/kafka/admin.js';
import { createKafka, ensureTopics } from '../lib/kafka/client.js';
import { KafkaLogConsumer, type KafkaConsumerOptions } from '../lib/kafka/consumer.js';
import { KafkaLogProducer, PRODUCER_CONFIG, type ProducerClient } from '../lib/kafka/producer.js';
import type { ConsumedBatch } from '../lib/log.js';
import { createLogger } from '../lib/logger.js';
import { clientIpResolver, closeServer, listen } from '../lib/serve.js';

export type ProcMessage =
  | { type: 'ready'; port?: number }
  | { type: 'result'; result: unknown }
  | { type: 'probes'; probes: { person: string; at: number }[] }
  | { type: 'loop'; loop: LoopDelay }
  | { type: 'error'; message: string };

/** Event-loop delay over a phase, ms (perf_hooks.monitorEventLoopDelay, 5 ms resolution). */
export interface LoopDelay {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
  samples: number;
}

const now = () => performance.timeOrigin + performance.now();
const send = (m: ProcMessage) => process.send?.(m);
const args = JSON.parse(process.argv[3] ?? '{}') as Record<string, unknown>;
const str = (k: string) => String(args[k]);
const num = (k: string) => Number(args[k]);
const logger = createLogger(`bench-${process.argv[2]}`, process.env.BENCH_LOG_LEVEL ?? 'error');
/** The producer client of the product's default configuration (KAFKA_PRODUCER), for the worker modes. */
const DEFAULT_CLIENT = parseEnv({}).KAFKA_PRODUCER;

/**
 * Event-loop delay of this process (ms): how long a ready callback waited for the loop. The parent
 * resets it ('loop-reset') at the start of a phase and reads it ('loop') at its end, so each
 * figure has the histogram of its own phase.
 */
const loopDelay = monitorEventLoopDelay({ resolution: 5 });
loopDelay.enable();
const ms = (ns: number) => Math.round(ns / 1e4) / 100;
const loop = () => ({
  p50: ms(loopDelay.percentile(50)),
  p90: ms(loopDelay.percentile(90)),
  p99: ms(loopDelay.percentile(99)),
  p999: ms(loopDelay.percentile(99.9)),
  max: ms(loopDelay.max),
  mean: ms(loopDelay.mean),
  samples: loopDelay.count,
});
process.on('message', (m: { type?: string }) => {
  if (m?.type === 'loop-reset') loopDelay.reset();
  else if (m?.type === 'loop') send({ type: 'loop', loop: loop() });
});

/** Waits for the parent's 'stop', runs `stop`, exits (cleanly, so --cpu-prof writes its profile). */
function onStop(stop: () => Promise<unknown>) {
  process.on('message', (m: { type?: string }) => {
    if (m?.type !== 'stop') return;
    stop()
      .then((result) => {
        if (result !== undefined) send({ type: 'result', result });
      })
      .catch((err: unknown) => send({ type: 'error', message: String(err) }))
      .finally(() => setTimeout(() => process.exit(0), 50));
  });
  process.on('disconnect', () => process.exit(0));
}

/** Ingest without Kafka (`nullLog`): its own CPU per event, the producer's left out. */
async function ingestNull() {
  const producer = { send: async () => {}, ready: () => true, close: async () => {} };
  const app = createIngestApp({ producer, logger, maxBodyBytes: 256 * 1024, retryAfterSeconds: 2, clientIp: clientIpResolver(false) });
  const { server, port } = await listen(app, 0, '127.0.0.1');
  onStop(async () => {
    await closeServer(server);
    return { eventLoopDelayMs: loop() };
  });
  send({ type: 'ready', port });
}

async function ingest() {
  if (args.nullLog === true) return ingestNull();
  const kafka = createKafka(str('brokers'), 'bench-ingest', logger);
  await ensureTopics(kafka, num('partitions'), 1);
  // BENCH_COMPRESSION=gzip: produce requests compressed (kafkajs's built-in codec), to compare.
  const compression = process.env.BENCH_COMPRESSION === 'gzip' ? CompressionTypes.GZIP : undefined;
  const client = (args.client ?? 'kafkajs') as ProducerClient;
  const producer = new KafkaLogProducer(kafka, { ackTimeoutMs: 5000, compression, client, brokers: str('brokers'), clientId: 'bench-ingest' });
  await producer.connect();
  // BENCH_TRACE=1: kafkajs's own view of each produce request (queued in kafkajs, on the wire).
  const trace: { duration: number; pending: number; size: number }[] = [];
  if (process.env.BENCH_TRACE) {
    const inner = (producer as unknown as { producer: import('kafkajs').Producer }).producer;
    inner.on(inner.events.REQUEST, (e) => {
      const p = e.payload as { apiName: string; duration: number; pendingDuration: number; size: number };
      if (p.apiName === 'Produce') trace.push({ duration: p.duration, pending: p.pendingDuration, size: p.size });
    });
  }
  // With `redisUrl`: also the visitor API (GET /v1/me/stream), as apps/ingest.ts serves it with REDIS_URL.
  const visitor = args.redisUrl ? await visitorApi(kafka) : undefined;
  const app = createIngestApp({
    producer,
    logger,
    maxBodyBytes: 256 * 1024,
    retryAfterSeconds: 2,
    clientIp: clientIpResolver(false),
    ...(visitor ? { visitor: { source: visitor.source } } : {}),
  });
  const { server, port } = await listen(app, 0, '127.0.0.1');
  onStop(async () => {
    visitor?.feed.close();
    await closeServer(server);
    await visitor?.stop();
    const stats = 'stats' in producer ? (producer as { stats(): unknown }).stats() : undefined;
    await producer.close();
    const pct = (k: 'duration' | 'pending' | 'size', q: number) => trace.map((t) => t[k]).sort((a, b) => a - b)[Math.floor(q * (trace.length - 1))];
    const kafkajs = trace.length
      ? {
          requests: trace.length,
          durationP50: pct('duration', 0.5),
          durationP99: pct('duration', 0.99),
          pendingP99: pct('pending', 0.99),
          sizeP50: pct('size', 0.5),
        }
      : undefined;
    return { producer: stats, kafkajs, eventLoopDelayMs: loop() };
  });
  send({ type: 'ready', port });
}

/** The visitor API's source for a standalone ingest: the Redis store, and history.transitions through a group of its own. */
async function visitorApi(kafka: Kafka) {
  const redis = new Redis(str('redisUrl'), { maxRetriesPerRequest: null, enableAutoPipelining: false });
  const store = new RedisHistoryStore(redis, foldOptionsOf(compileTopicMap(DEFAULT_TOPIC_MAP)), str('ns'));
  const feed = new LiveFeed();
  const consumer = new KafkaLogConsumer(kafka, { group: `bench-ingest-live-${Date.now()}`, topic: TOPICS.transitions, startAt: 'end' });
  await consumer.run(async (batch) => feed.publish(batch.messages.flatMap((m) => parseTransition(m.value, logger) ?? [])));
  return {
    source: visitorSource(store, feed),
    feed,
    stop: async () => {
      await consumer.stop();
      redis.disconnect();
    },
  };
}

async function bare() {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.statusCode = 204;
      res.end();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  onStop(() => new Promise<void>((r) => server.close(() => r())));
  send({ type: 'ready', port: (server.address() as { port: number }).port });
}

async function hono() {
  const app = new Hono();
  app.post('/v1/collect', async (c) => {
    const body = (await c.req.json()) as { events?: unknown[] };
    return c.body(null, body.events ? 204 : 400);
  });
  const port = await new Promise<number>((resolve) => {
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => {
      onStop(() => new Promise<void>((r) => server.close(() => r())));
      resolve(info.port);
    });
  });
  send({ type: 'ready', port });
}

/** Records prepared by run.ts: one `key\tvalue` line each, exactly what ingest produced for them. */
function loadRecords(path: string): { key: string; value: string }[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const tab = line.indexOf('\t');
      return { key: line.slice(0, tab), value: line.slice(tab + 1) };
    });
}

async function createTopic(kafka: Kafka, topic: string, partitions: number) {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await createTopicsReady(admin, [{ topic, numPartitions: partitions, replicationFactor: 1 }]);
  } finally {
    await admin.disconnect();
  }
}

/**
 * The kafkajs producer alone: the same records, keys and settings as ingest's producer.
 * `requestSize` records per send (10: what one HTTP request of the snippet carries), from
 * `concurrency` callers at once; or one big send after another (`requestSize` 1000s).
 */
async function raw() {
  const records = loadRecords(str('records'));
  const kafka = createKafka(str('brokers'), 'bench-raw', logger);
  const topic = str('topic');
  await createTopic(kafka, topic, num('partitions'));
  const size = num('requestSize');
  if (args.rate !== undefined) return rawPaced(kafka, topic, records, size);
  const produce = args.client === 'platformatic' ? await platformaticRaw() : await kafkajsRaw(kafka);
  const concurrency = num('concurrency');
  // Warm the connection and the metadata outside the timed part.
  await produce(`${topic}.warm`, records.slice(0, 10));
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < records.length) {
        const chunk = records.slice(next, next + size);
        next += size;
        await produce(topic, chunk);
      }
    }),
  );
  const seconds = (now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await produce.close();
  send({ type: 'result', result: { events: records.length, seconds, eventsPerSecond: records.length / seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 } });
  setTimeout(() => process.exit(0), 50);
}

/**
 * Ingest's producer alone at a paced rate: KafkaLogProducer as ingest opens it (the same client, its
 * queue), `rate` sends a second of `requestSize` records each, at evenly spaced intended times for
 * `seconds`, none waiting for another (open loop, as the paced generator sends to ingest); each
 * send's latency from its intended time to Kafka's acknowledgement. The floor of ingest's latency
 * at the same rate: what the producer and the broker take without HTTP.
 */
async function rawPaced(kafka: Kafka, topic: string, records: { key: string; value: string }[], size: number) {
  const client = (args.client ?? 'kafkajs') as ProducerClient;
  const producer = new KafkaLogProducer(kafka, { ackTimeoutMs: 5000, client, brokers: str('brokers'), clientId: 'bench-raw' });
  await producer.connect();
  // Warm the connection and the metadata outside the timed part (the producer does not create topics).
  await producer.send(topic, records.slice(0, size));
  const rate = num('rate');
  // The first half second is played but not timed: the producer's first requests to each partition
  // (connections, metadata, the idempotent producer's sequences) are not what the floor is about.
  const warm = Math.round(rate / 2);
  const total = warm + Math.round(rate * num('seconds'));
  const latencies: number[] = [];
  let failed = 0;
  let firstError: string | undefined;
  const pending: Promise<void>[] = [];
  const t0 = now() + 50;
  for (let i = 0; i < total; i++) {
    const intended = t0 + (i * 1000) / rate;
    const wait = intended - now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const from = (i * size) % Math.max(1, records.length - size);
    pending.push(
      producer.send(topic, records.slice(from, from + size)).then(
        () => {
          if (i >= warm) latencies.push(now() - intended);
        },
        (err: unknown) => {
          failed++;
          firstError ??= String((err as Error)?.message ?? err);
        },
      ),
    );
  }
  await Promise.all(pending);
  await producer.close();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.ceil(q * latencies.length) - 1)] ?? NaN;
  send({ type: 'result', result: { sends: total - warm, failed, firstError, p50: at(0.5), p99: at(0.99), max: latencies.at(-1) ?? NaN } });
  setTimeout(() => process.exit(0), 50);
}

type RawSend = ((topic: string, messages: { key: string; value: string }[]) => Promise<void>) & { close(): Promise<void> };

/** kafkajs with PRODUCER_CONFIG (what KafkaLogProducer's kafkajs wire uses), acks=-1. */
async function kafkajsRaw(kafka: Kafka): Promise<RawSend> {
  const producer = kafka.producer(PRODUCER_CONFIG);
  await producer.connect();
  const send = async (topic: string, messages: { key: string; value: string }[]) => {
    if (messages.length) await producer.send({ topic, messages, acks: -1, timeout: 30_000 });
  };
  return Object.assign(send, { close: () => producer.disconnect() });
}

/** @platformatic/kafka with the settings of lib/kafka/producer-platformatic.ts: idempotent, acks=-1, Java's partitioner. */
async function platformaticRaw(): Promise<RawSend> {
  // Loaded here only: the library compiles its validators on import (a second of CPU).
  const { compatibilityPartitioner, Producer, ProduceAcks, stringSerializers } = await import('@platformatic/kafka');
  const producer = new Producer({
    clientId: 'bench-raw',
    bootstrapBrokers: str('brokers').split(','),
    idempotent: true,
    acks: ProduceAcks.ALL,
    partitioner: compatibilityPartitioner,
    serializers: stringSerializers,
    timeout: 30_000,
    retries: 3,
    retryDelay: 100,
    // The warm-up topic is created by its first send, as kafkajs does.
    autocreateTopics: true,
  });
  const send = async (topic: string, messages: { key: string; value: string }[]) => {
    if (messages.length) await producer.send({ messages: messages.map((m) => ({ topic, key: m.key, value: m.value })) });
  };
  return Object.assign(send, { close: () => producer.close() });
}

/** One worker process folding a pre-filled topic into Redis until every record is committed. */
/** What the bench's `features: 'on'` fold has in force: the README's stall rule and three audiences. */
function benchAutomation(map: TopicMap) {
  const stallRules = compileStallRules([StallRule.parse({ name: 'quiet-at-detail', stage: 'detail', after: '3d' })], map.ladder, map.quietMs).rules;
  const ctx = { ladder: map.ladder, quietMs: map.quietMs, stallRules: new Set(['quiet-at-detail']) };
  const definitions = {
    'hot-leads': { all: [{ topic: 'product:*', atLeast: 'detail', notReached: 'purchase', activeWithin: '7d' }, { not: { stalled: 'quiet-at-detail' } }] },
    buyers: { exactly: 'purchase' },
    'active-week': { activeWithin: '7d' },
  };
  return createAutomation({
    ladder: map.ladder,
    quietMs: map.quietMs,
    stallRules,
    audiences: Object.entries(definitions).map(([name, d]) => ({ name, compiled: compileAudience(AudienceDefinition.parse(d), ctx) })),
  });
}

async function fold() {
  const expected = num('expected');
  const topic = str('topic');
  const groupId = str('groupId');
  const kafka = createKafka(str('brokers'), 'bench-fold', logger);
  const topicMap = compileTopicMap(DEFAULT_TOPIC_MAP);
  const redis = new Redis(str('redisUrl'), { maxRetriesPerRequest: null, enableAutoPipelining: false });
  // features 'off': the stages alone (no CRM steps, no stall rules or audiences); 'on': the CRM steps and
  // a stall rule with three audiences in force; unset: the product's defaults (CRM steps on, nothing in force).
  const features = args.features as 'off' | 'on' | undefined;
  const store = new RedisHistoryStore(redis, { ...foldOptionsOf(topicMap), crmSteps: features !== 'off' }, str('ns'));
  if (features === 'on') store.setAutomation(benchAutomation(topicMap));
  const producer = new KafkaLogProducer(kafka, { ackTimeoutMs: 5000, client: DEFAULT_CLIENT, brokers: str('brokers') });
  await producer.connect();
  const consumerOptions = (args.consumer ?? {}) as Partial<KafkaConsumerOptions>;
  const consumer = new KafkaLogConsumer(kafka, { group: groupId, topic, startAt: 'beginning', ...consumerOptions }, { producer });
  // noop: the consumer alone (kafkajs fetch, decode, commit), for the fold's breakdown.
  // nullProducer: transitions are not published (to see what publishing them costs).
  const out = args.nullProducer ? { send: async () => {}, ready: () => true, close: async () => {} } : producer;
  const handler = args.noop ? async () => {} : createBatchHandler({ store, topicMap, producer: out, logger });

  let first = 0;
  let handled = 0;
  const sizes: number[] = [];
  const cpu0 = process.cpuUsage();
  const allHandled = new Promise<number>((resolve) => {
    void consumer.run(async (batch: ConsumedBatch, ctl) => {
      if (first === 0) first = now();
      // With the consumer's control, transitions go out with the commit (in a transaction when
      // `consumer.transactional`); the null producer keeps its own, publishing nothing.
      await handler(batch, args.nullProducer ? undefined : ctl);
      handled += batch.messages.length;
      sizes.push(batch.messages.length);
      if (handled >= expected) resolve(now());
    });
  });
  const last = await allHandled;
  const cpu = process.cpuUsage(cpu0);

  // Lag 0: the group's committed offsets reached the end of every partition.
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, p.high]));
  let lag = Infinity;
  const deadline = Date.now() + 30_000;
  while (lag > 0 && Date.now() < deadline) {
    const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
    lag = (committed?.partitions ?? []).reduce((sum, p) => sum + (Number(ends.get(p.partition) ?? 0) - Math.max(0, Number(p.offset))), 0);
    if (lag > 0) await new Promise((r) => setTimeout(r, 5));
  }
  const committedAt = now();
  await admin.disconnect();
  await consumer.stop();
  await producer.close();
  redis.disconnect();
  sizes.sort((a, b) => a - b);
  send({
    type: 'result',
    result: {
      events: handled,
      seconds: (last - first) / 1000,
      eventsPerSecond: handled / ((last - first) / 1000),
      secondsToLagZero: (committedAt - first) / 1000,
      lag,
      batches: sizes.length,
      batchSize: { min: sizes[0], median: sizes[sizes.length >> 1], max: sizes[sizes.length - 1] },
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
    },
  });
  setTimeout(() => process.exit(0), 50);
}

/**
 * Where a worker's CPU goes, without Kafka: the prepared records in batches of 2,000, through
 * each step of the worker in turn. CPU microseconds per event, best of three passes.
 */
async function parts() {
  const records = loadRecords(str('records'));
  const topicMap = compileTopicMap(DEFAULT_TOPIC_MAP);
  const fold = foldOptionsOf(topicMap);
  const size = 2000;
  const batches: ConsumedBatch[] = [];
  for (let i = 0; i < records.length; i += size) {
    batches.push({
      topic: 'bench',
      partition: 0,
      messages: records.slice(i, i + size).map((r, j) => ({ offset: String(i + j), key: r.key, value: r.value, timestamp: 0 })),
    });
  }
  const nullProducer = { send: async () => {}, ready: () => true, close: async () => {} };
  const redis = new Redis(str('redisUrl'), { maxRetriesPerRequest: null, enableAutoPipelining: false });
  const steps: Record<string, (pass: number) => Promise<void> | void> = {
    'JSON.parse': () => {
      for (const b of batches) for (const m of b.messages) JSON.parse(m.value);
    },
    'JSON.parse + RawEvent.safeParse (zod)': () => {
      for (const b of batches) for (const m of b.messages) RawEvent.safeParse(JSON.parse(m.value));
    },
    'JSON.parse + classify (topic map), no zod': () => {
      for (const b of batches) for (const m of b.messages) toFoldEvent(JSON.parse(m.value) as RawEvent, topicMap);
    },
    'whole batch handler on the in-memory store': async () => {
      const handler = createBatchHandler({ store: new MemoryHistoryStore(fold), topicMap, producer: nullProducer, logger });
      for (const b of batches) await handler(b);
    },
    // One batch at a time: this is CPU, not the round trips (the worker overlaps three batches).
    'whole batch handler on Redis (RedisHistoryStore), no Kafka': async (pass) => {
      const store = new RedisHistoryStore(redis, fold, `parts${pass}:`);
      const handler = createBatchHandler({ store, topicMap, producer: nullProducer, logger });
      for (const b of batches) await handler(b);
    },
  };
  const result: Record<string, number> = {};
  for (const [name, step] of Object.entries(steps)) {
    let best = Infinity;
    for (let pass = 0; pass < 3; pass++) {
      const t0 = process.cpuUsage();
      await step(pass);
      const used = process.cpuUsage(t0);
      best = Math.min(best, (used.user + used.system) / 1000);
    }
    result[name] = (best * 1000) / records.length;
  }
  redis.disconnect();
  send({ type: 'result', result });
  setTimeout(() => process.exit(0), 50);
}

/** The all-in-one app on the real stack; probe persons' transitions to `purchase` go to the parent. */
async function app() {
  const env = parseEnv({
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'error',
    KAFKA_BROKERS: str('brokers'),
    REDIS_URL: str('redisUrl'),
    KAFKA_GROUP_ID: str('groupId'),
    REDIS_PREFIX: str('ns'),
    KAFKA_PARTITIONS: String(num('partitions')),
    // The bench measures the worker both ways (the default: without transactions).
    WORKER_TRANSACTIONS: String(args.transactions === true),
  });
  let pending: { person: string; at: number }[] = [];
  // --audience: probes are timed to their `entered` event of an audience their purchase puts them in.
  const audience = args.audience === true;
  if (audience) {
    const file = join(tmpdir(), `clickfold-bench-audiences-${process.pid}.json`);
    writeFileSync(file, JSON.stringify({ audiences: { [BENCH_AUDIENCE]: { topic: 'product:*', exactly: 'purchase' } } }));
    env.AUDIENCES_FILE = file;
  }
  const running = await startApp(env, DEFAULT_TOPIC_MAP, logger, {
    onTransitions: (ts) => {
      if (audience) return;
      const at = now();
      for (const t of ts) if (isTransition(t) && t.to === 'purchase' && t.person.startsWith('probe-')) pending.push({ person: t.person, at });
    },
  });
  if (audience) {
    running.feed.subscribe({ kinds: ['entered'], audience: BENCH_AUDIENCE }, (e) => {
      if (e.person.startsWith('probe-')) pending.push({ person: e.person, at: now() });
    });
  }
  const flush = setInterval(() => {
    if (pending.length) {
      send({ type: 'probes', probes: pending });
      pending = [];
    }
  }, 20);
  onStop(async () => {
    clearInterval(flush);
    const producer = running.backends.producer as Partial<KafkaLogProducer>;
    const stats = producer.stats?.();
    await running.stop();
    return { producer: stats, eventLoopDelayMs: loop() };
  });
  send({ type: 'ready', port: running.port });
}

/**
 * A worker process of the real stack on clicks.raw (from its end: a new group), reporting probe
 * persons' transitions to `purchase` to the parent as the handler publishes them.
 */
async function worker() {
  const kafka = createKafka(str('brokers'), 'bench-worker', logger);
  const topicMap = compileTopicMap(DEFAULT_TOPIC_MAP);
  const redis = new Redis(str('redisUrl'), { maxRetriesPerRequest: null, enableAutoPipelining: false });
  const store = new RedisHistoryStore(redis, foldOptionsOf(topicMap), str('ns'));
  const producer = new KafkaLogProducer(kafka, { ackTimeoutMs: 5000, client: DEFAULT_CLIENT, brokers: str('brokers') });
  await producer.connect();
  const consumerOptions = (args.consumer ?? {}) as Partial<KafkaConsumerOptions>;
  const consumer = new KafkaLogConsumer(kafka, { group: str('groupId'), topic: TOPICS.raw, startAt: 'end', ...consumerOptions }, { producer });
  let pending: { person: string; at: number }[] = [];
  const handler = createBatchHandler({
    store,
    topicMap,
    producer,
    logger,
    onTransitions: (ts) => {
      const at = now();
      for (const t of ts) if (isTransition(t) && t.to === 'purchase' && t.person.startsWith('probe-')) pending.push({ person: t.person, at });
    },
  });
  await consumer.run(handler);
  const flush = setInterval(() => {
    if (pending.length) {
      send({ type: 'probes', probes: pending });
      pending = [];
    }
  }, 20);
  onStop(async () => {
    clearInterval(flush);
    await consumer.stop();
    const stats = producer.stats();
    await producer.close();
    redis.disconnect();
    return { producer: stats, eventLoopDelayMs: loop() };
  });
  send({ type: 'ready' });
}

const modes: Record<string, () => Promise<void>> = { ingest, bare, hono, raw, fold, parts, app, worker };
const run = modes[process.argv[2] ?? ''];
if (!run) {
  console.error(`usage: proc.mjs <${Object.keys(modes).join('|')}> '<json args>'`);
  process.exit(2);
}
run().catch((err: unknown) => {
  send({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  setTimeout(() => process.exit(1), 50);
});
