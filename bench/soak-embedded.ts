/**
 * `npm run soak:embedded`: `npm start` (the all-in-one process, with a data directory) for ten
 * minutes (SOAK_SECONDS) at a steady rate (SOAK_EVENTS_PER_SECOND), its log bound
 * (SOAK_LOG_MAX_EVENTS) small enough to be reached after a few minutes, the traffic of a steady
 * population of returning visitors (SOAK_VISITORS on 300 products), as a small shop's is. Prints
 * resident memory, what the log keeps, the ids the store holds and the data directory's size over
 * time: past the bound, memory must stay flat. Not part of `npm test`: only time shows it.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeProcess } from '../services/node-process.js';
import { freePorts, REPO_ROOT, sleep } from '../services/proc.js';
import { steadyLoad } from './steady-load.js';
import { pooledScenario } from './pooled-scenario.js';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 600);
const RATE = Number(process.env.SOAK_EVENTS_PER_SECOND ?? 1000);
const SAMPLE_EVERY_S = Number(process.env.SOAK_SAMPLE_SECONDS ?? 30);
const MAX_EVENTS = Number(process.env.SOAK_LOG_MAX_EVENTS ?? 200_000);
const VISITORS = Number(process.env.SOAK_VISITORS ?? 5000);
const BATCH = 10;

const rssMiB = (pid: number | undefined) => {
  if (!pid) return Number.NaN;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
};

const duBytes = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true }).reduce((n, e) => {
    const p = join(dir, e.name);
    return n + (e.isDirectory() ? duBytes(p) : statSync(p).size);
  }, 0);

/** One gauge or counter of the Prometheus text, summed over its series. */
const metric = (text: string, name: string) =>
  text
    .split('\n')
    .filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
    .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);

interface Sample {
  t: number;
  eventsSent: number;
  failedRequests: number;
  rssMiB: number;
  heapUsedMiB: number;
  logRecords: number;
  logMiB: number;
  storeIds: number;
  dialogues: number;
  dataDirMiB: number;
  lag: number;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'clickfold-soak-embedded-'));
  const data = join(dir, 'data');
  const [port] = await freePorts(1);
  console.log(
    `soak (embedded): ${SECONDS} s at ${RATE} events/s (${RATE / BATCH} requests/s of ${BATCH}), ${VISITORS} returning visitors, ` +
      `log bound ${MAX_EVENTS} records, sampling every ${SAMPLE_EVERY_S} s; data in ${data}`,
  );
  const app = new NodeProcess(
    'all-in-one',
    'apps/all-in-one.ts',
    { DATA_DIR: data, PORT: String(port), EMBEDDED_LOG_MAX_EVENTS: String(MAX_EVENTS), KAFKA_BROKERS: '', REDIS_URL: '', REDIS_CLUSTER_NODES: '' },
    dir,
  );
  await app.start(/clickfold is running/);
  const url = `http://127.0.0.1:${port}`;
  const scenario = pooledScenario({ seed: 11, visitors: VISITORS, batchSize: BATCH });

  const samples: Sample[] = [];
  const sample = async (t: number, sent: number, failed: number) => {
    const text = await (await fetch(`${url}/metrics`)).text();
    const s: Sample = {
      t,
      eventsSent: sent * BATCH,
      failedRequests: failed,
      rssMiB: rssMiB(app.pid),
      heapUsedMiB: metric(text, 'nodejs_heap_size_used_bytes') / 2 ** 20,
      logRecords: metric(text, 'clickfold_embedded_log_records'),
      logMiB: metric(text, 'clickfold_embedded_log_bytes') / 2 ** 20,
      storeIds: metric(text, 'clickfold_embedded_store_ids'),
      dialogues: metric(text, 'clickfold_embedded_store_dialogues'),
      dataDirMiB: duBytes(data) / 2 ** 20,
      lag: metric(text, 'clickfold_worker_consumer_lag'),
    };
    samples.push(s);
    console.log(
      `${String(t).padStart(5)} s  sent ${String(s.eventsSent).padStart(8)}  failed ${failed}  rss ${s.rssMiB.toFixed(0)} MiB  heap ${s.heapUsedMiB.toFixed(0)} MiB  ` +
        `log ${s.logRecords} records ${s.logMiB.toFixed(1)} MiB  ids ${s.storeIds}  dialogues ${s.dialogues}  disk ${s.dataDirMiB.toFixed(1)} MiB  lag ${s.lag}`,
    );
  };

  // A paced sender, as bench/soak.ts: each tick sends what the rate owes, at most 64 requests in flight.
  const start = Date.now();
  const { sent, failed } = await steadyLoad({
    url: `${url}/v1/collect`,
    rate: RATE,
    batch: BATCH,
    seconds: SECONDS,
    source: scenario,
    sampleEverySeconds: SAMPLE_EVERY_S,
    sample,
  });
  for (let i = 0; i < 60 && (samples.at(-1)?.lag ?? 0) > 0; i++) {
    await sleep(500);
    await sample(Math.round((Date.now() - start) / 1000), sent, failed);
  }
  await sample(Math.round((Date.now() - start) / 1000), sent, failed);

  // Memory from the first sample at which the log had reached its bound (within a segment) on.
  const reached = samples.findIndex((s) => s.logRecords >= MAX_EVENTS * (1 - 1 / 16) - 1000);
  const after = reached >= 0 ? samples.slice(reached) : [];
  const minutes = after.length > 1 ? (after.at(-1)!.t - after[0]!.t) / 60 : 0;
  const summary = {
    seconds: SECONDS,
    eventsPerSecond: RATE,
    visitors: VISITORS,
    logMaxEvents: MAX_EVENTS,
    eventsSent: samples.at(-1)!.eventsSent,
    failedRequests: failed,
    boundReachedAtS: after[0]?.t ?? null,
    rssMiB: {
      first: samples[1]?.rssMiB ?? samples[0]!.rssMiB,
      atBound: after[0]?.rssMiB ?? null,
      last: samples.at(-1)!.rssMiB,
      maxAfterBound: after.length ? Math.max(...after.map((s) => s.rssMiB)) : null,
      minAfterBound: after.length ? Math.min(...after.map((s) => s.rssMiB)) : null,
      slopeAfterBoundMiBPerMinute: minutes > 0 ? (after.at(-1)!.rssMiB - after[0]!.rssMiB) / minutes : null,
    },
    heapUsedMiB: { atBound: after[0]?.heapUsedMiB ?? null, last: samples.at(-1)!.heapUsedMiB },
    storeIds: samples.at(-1)!.storeIds,
    dialogues: { atBound: after[0]?.dialogues ?? null, last: samples.at(-1)!.dialogues },
    logRecordsKept: samples.at(-1)!.logRecords,
    logMiBKept: samples.at(-1)!.logMiB,
    dataDirMiB: samples.at(-1)!.dataDirMiB,
    finalLag: samples.at(-1)!.lag,
  };
  console.log(`\nsummary: ${JSON.stringify(summary)}`);
  mkdirSync(join(REPO_ROOT, 'bench-results'), { recursive: true });
  const file = join(REPO_ROOT, 'bench-results', `soak-embedded-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ summary, samples }, null, 2));
  console.log(`written to ${file}`);
  await app.stop();
  rmSync(dir, { recursive: true, force: true });
}

await main().catch((err) => {
  console.error(err);
  process.exit(1);
});
