/**
 * `npm run soak`: ten minutes (SOAK_SECONDS) at a moderate steady load on the real stack, with
 * ingest and one worker as processes of their own, printing memory and consumer lag over time.
 * Not part of `npm test`: it proves that nothing grows without bound, which only time shows.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { TOPICS } from '../contract/raw-event.js';
import { KafkaBroker } from '../services/kafka.js';
import { NodeProcess } from '../services/node-process.js';
import { freePorts, REPO_ROOT, sleep } from '../services/proc.js';
import { steadyLoad } from './steady-load.js';
import { RedisServer } from '../services/redis.js';
import { createScenario } from '../load/scenario.js';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 600);
const RATE = Number(process.env.SOAK_EVENTS_PER_SECOND ?? 2000);
const SAMPLE_EVERY_S = Number(process.env.SOAK_SAMPLE_SECONDS ?? 30);
const BATCH = 10;
const GROUP = 'clickfold-history';

const rssMiB = (pid: number | undefined) => {
  if (!pid) return NaN;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
};

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'clickfold-soak-'));
  console.log(`soak: ${SECONDS} s at ${RATE} events/s (${RATE / BATCH} requests/s of ${BATCH}), sampling every ${SAMPLE_EVERY_S} s`);
  const [broker, redisServer] = await Promise.all([KafkaBroker.start(), RedisServer.start()]);
  const [port] = await freePorts(1);
  const env = { KAFKA_BROKERS: broker.brokers, REDIS_URL: redisServer.url, KAFKA_PARTITIONS: '6', LOG_LEVEL: 'warn' };
  const ingest = new NodeProcess('ingest', 'apps/ingest.ts', { ...env, PORT: String(port), LOG_LEVEL: 'info' }, dir);
  const worker = new NodeProcess('worker', 'apps/worker.ts', { ...env, LOG_LEVEL: 'info', WORKER_PORT: '0' }, dir);
  await ingest.start(/ingest is listening/);
  await worker.start(/worker is folding/);
  const url = `http://127.0.0.1:${port}/v1/collect`;
  // The same visitors' walks the k6 scripts and the benchmark play.
  const scenario = createScenario({ seed: 7, batchSize: BATCH });
  const redis = new Redis(redisServer.url);
  const admin = new Kafka({ brokers: [broker.brokers], logLevel: logLevel.NOTHING }).admin();
  await admin.connect();

  const lag = async () => {
    const [ends, committed] = await Promise.all([admin.fetchTopicOffsets(TOPICS.raw), admin.fetchOffsets({ groupId: GROUP, topics: [TOPICS.raw] })]);
    const done = new Map((committed[0]?.partitions ?? []).map((p) => [p.partition, Math.max(0, Number(p.offset))]));
    return ends.reduce((sum, p) => sum + Number(p.high) - (done.get(p.partition) ?? 0), 0);
  };
  interface Sample {
    t: number;
    eventsSent: number;
    failedRequests: number;
    ingestRssMiB: number;
    workerRssMiB: number;
    redisUsedMiB: number;
    consumerLag: number;
  }
  const samples: Sample[] = [];
  const sample = async (t: number, sent: number, failed: number) => {
    const info = await redis.info('memory');
    const used = Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN) / 1024 / 1024;
    const s: Sample = {
      t,
      eventsSent: sent * BATCH,
      failedRequests: failed,
      ingestRssMiB: rssMiB(ingest.pid),
      workerRssMiB: rssMiB(worker.pid),
      redisUsedMiB: used,
      consumerLag: await lag(),
    };
    samples.push(s);
    console.log(
      `${String(t).padStart(5)} s  sent ${String(s.eventsSent).padStart(8)}  failed ${failed}  ingest ${s.ingestRssMiB.toFixed(0)} MiB  worker ${s.workerRssMiB.toFixed(0)} MiB  ` +
        `redis ${used.toFixed(1)} MiB  lag ${s.consumerLag}`,
    );
  };

  // A paced sender: each tick sends what the rate owes, over a few keep-alive connections.
  const start = Date.now();
  const { sent, failed } = await steadyLoad({
    url,
    rate: RATE,
    batch: BATCH,
    seconds: SECONDS,
    source: scenario,
    sampleEverySeconds: SAMPLE_EVERY_S,
    sample,
  });
  // Let the worker drain, then the last sample.
  for (let i = 0; i < 60 && (await lag()) > 0; i++) await sleep(500);
  await sample(Math.round((Date.now() - start) / 1000), sent, failed);

  const first = samples[1] ?? samples[0]!;
  const last = samples.at(-1)!;
  const maxLag = Math.max(...samples.map((s) => s.consumerLag));
  const summary = {
    seconds: SECONDS,
    eventsPerSecond: RATE,
    eventsSent: last.eventsSent,
    failedRequests: failed,
    ingestRssMiB: { first: first.ingestRssMiB, last: last.ingestRssMiB, max: Math.max(...samples.map((s) => s.ingestRssMiB)) },
    workerRssMiB: { first: first.workerRssMiB, last: last.workerRssMiB, max: Math.max(...samples.map((s) => s.workerRssMiB)) },
    maxConsumerLag: maxLag,
    finalConsumerLag: last.consumerLag,
  };
  console.log(`\nsummary: ${JSON.stringify(summary)}`);
  mkdirSync(join(REPO_ROOT, 'bench-results'), { recursive: true });
  const file = join(REPO_ROOT, 'bench-results', `soak-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ summary, samples }, null, 2));
  console.log(`written to ${file}`);

  await admin.disconnect();
  redis.disconnect();
  await worker.stop();
  await ingest.stop();
  await Promise.all([broker.destroy(), redisServer.destroy()]);
}

await main().catch((err) => {
  console.error(err);
  process.exit(1);
});
