/**
 * `npm run bench`: starts a real Kafka broker and a real Redis (services/), measures the
 * DESIGN.md targets, prints one table and writes bench-results/<timestamp>.json.
 *
 *   npm run bench                       # everything, about 5-6 minutes on 2 cores
 *   npm run bench -- --quick            # shorter runs, for trying changes (figures are rougher)
 *   npm run bench -- --only ingest,raw  # some measurements: latency,context,ingest,raw,fold,redis,snippet
 *   npm run bench -- --profile          # also CPU-profile ingest and the worker (node --cpu-prof)
 *
 * The load everywhere is load/scenario.js, the module the k6 scripts play. Measured processes run
 * on their own (bench/proc.ts, bundled and forked with plain node), so the load generator never
 * shares their event loop; every figure comes with the CPU each process used while it was taken
 * and with what else was running on the machine.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { brotliCompressSync, constants as zlibConstants, gzipSync } from 'node:zlib';
import autocannon from 'autocannon';
import { build } from 'esbuild';
import { Redis } from 'ioredis';
import { CollectBatch } from '../contract/collect.js';
import { TOPICS, type RawEvent } from '../contract/raw-event.js';
import { compileTopicMap, DEFAULT_TOPIC_MAP } from '../history/fold/topic-map.js';
import { createIngestApp } from '../ingest/app.js';
import { createKafka, ensureTopics } from '../lib/kafka.js';
import type { LogMessage, LogProducer } from '../lib/log.js';
import { createLogger } from '../lib/logger.js';
import { CONTENT_TYPE, createScenario, probeBatch } from '../load/scenario.js';
import { KafkaBroker } from '../services/kafka.js';
import { RedisServer } from '../services/redis.js';
import { cpuMeter, machine, now, pacedLoad, percentile, sleep, spread, startProc, type CpuReport, type Proc, type Spread } from './lib.js';
import { formatProfile, summarizeProfile, type ProfileSummary } from './profile.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    only: { type: 'string' },
    events: { type: 'string' },
    /** KafkaConsumerOptions for the fold's worker, as JSON (tuning experiments). */
    consumer: { type: 'string' },
    /** Only one click-to-stage topology: all-in-one or split. */
    topology: { type: 'string' },
    /** Click-to-stage load in events/s (default 5,000, the target's). */
    'click-rate': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (flags.help) {
  console.log('usage: npm run bench [-- --quick] [--profile] [--only latency,context,ingest,raw,fold,redis,snippet] [--events N]');
  process.exit(0);
}
const ALL = ['latency', 'context', 'ingest', 'raw', 'fold', 'redis', 'snippet'] as const;
type Part = (typeof ALL)[number];
const only = new Set((flags.only?.split(',').map((s) => s.trim()) ?? ALL) as Part[]);
for (const p of only) if (!ALL.includes(p)) throw new Error(`--only: unknown measurement "${p}" (${ALL.join(', ')})`);
const want = (p: Part) => only.has(p);

const QUICK = flags.quick;
const PARTITIONS = 6;
/** Events for the raw-producer, fold and collapse measurements (prepared once, the same records). */
const EVENTS = Number(flags.events ?? (QUICK ? 60_000 : 200_000));
const RUNS = QUICK ? 2 : 3;
const INGEST_SECONDS = QUICK ? 5 : 10;
const CONTEXT_SECONDS = QUICK ? 3 : 6;
const HALF_LOAD_SECONDS = QUICK ? 4 : 8;
const LATENCY_WINDOW_SECONDS = QUICK ? 6 : 15;
const CONNECTIONS = 100;
/** Open-loop load: many browsers, each its own connection; few sockets would queue in the client. */
const PACED_CONNECTIONS = 256;
/** Requests/s of 10 events for click-to-stage: 500 = the target's 5,000 events/s. */
const CLICK_RATE = Math.round(Number(flags['click-rate'] ?? 5000) / 10);
const TARGETS = { ingest: 30_000, ingestP99: 25, ratio: 0.5, fold: 50_000, clickP99: 100, collapse: 50, snippetGzip: 2048 };

const log = (msg: string) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);
const round = (x: number, d = 0) => Math.round(x * 10 ** d) / 10 ** d;

// ---------------------------------------------------------------------------------------------

interface Figure {
  key: string;
  what: string;
  unit: string;
  value: Spread | number | string;
  target?: string;
  ok?: boolean;
  note?: string;
}
const figures: Figure[] = [];
const details: Record<string, unknown> = {};
const profiles: ProfileSummary[] = [];
let kafka: KafkaBroker | undefined;
let redisServer: RedisServer | undefined;
const procs = new Set<Proc>();

function figure(f: Figure) {
  figures.push(f);
  const v = typeof f.value === 'object' ? `median ${fmt(f.value.median)} (min ${fmt(f.value.min)}, max ${fmt(f.value.max)})` : String(f.value);
  log(`${f.what}: ${v} ${f.unit}${f.ok === undefined ? '' : f.ok ? '  [meets target]' : '  [MISSES target]'}`);
}

function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString('en-US');
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

/** CPU microseconds per event of one role during a measurement. */
function cpuPerEvent(c: CpuReport, role: string, eventsPerSecond: number): number {
  return round((((c.byRole[role] ?? NaN) / 100) * 1e6) / eventsPerSecond, 1);
}

function cpuNote(c: CpuReport): string {
  const roles = Object.entries(c.byRole)
    .sort((a, b) => b[1] - a[1])
    .map(([r, p]) => `${r} ${Math.round(p)}%`)
    .join(', ');
  return `cpu: ${roles}; others ${Math.round(c.others)}%${c.topOthers.length ? ` (${c.topOthers.join(', ')})` : ''}`;
}

/** Roles for cpuMeter: the services, plus bench processes (`late` for ones started after the meter). */
const roles =
  (extra: Record<string, Proc | undefined> = {}, late: () => Record<string, Proc | undefined> = () => ({})) =>
  () => ({
    kafka: [kafka?.pid],
    redis: [redisServer?.pid],
    ...Object.fromEntries(Object.entries({ ...extra, ...late() }).map(([k, p]) => [k, [p?.child.pid]])),
  });

// ---------------------------------------------------------------------------------------------
// The bundle of bench/proc.ts: plain node runs it (no TS loader in the measured processes).

async function bundle(): Promise<string> {
  const outfile = join(ROOT, 'node_modules', '.cache', 'clickfold-bench', 'proc.mjs');
  await build({
    entryPoints: [join(ROOT, 'bench', 'proc.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outfile,
    logLevel: 'warning',
  });
  return outfile;
}

const profileDir = join(ROOT, 'bench-results', 'profiles');
const profArgs = (name: string) => (flags.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${name}-${Date.now()}.cpuprofile`] : []);

async function proc(bundlePath: string, mode: string, args: Record<string, unknown>, execArgv: string[] = []): Promise<Proc> {
  const p = await startProc(bundlePath, mode, args, execArgv);
  procs.add(p);
  p.child.once('exit', () => procs.delete(p));
  return p;
}

function collectProfiles(prefix: string) {
  if (!flags.profile || !existsSync(profileDir)) return;
  const files = readdirSync(profileDir)
    .filter((f) => f.startsWith(prefix) && f.endsWith('.cpuprofile'))
    .map((f) => join(profileDir, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (files[0]) {
    const summary = summarizeProfile(files[0], 15);
    profiles.push(summary);
    console.error(formatProfile(summary));
  }
}

// ---------------------------------------------------------------------------------------------
// The load: autocannon playing the shared scenario.

function scenarioRequests(seed: number): autocannon.Request[] {
  const scenario = createScenario({ seed });
  return [
    {
      method: 'POST',
      path: '/v1/collect',
      setupRequest: (req) => {
        const b = scenario.nextBatch(Date.now());
        return { ...req, method: 'POST', path: '/v1/collect', headers: { 'content-type': CONTENT_TYPE, 'user-agent': b.userAgent }, body: JSON.stringify(b.body) };
      },
    },
  ];
}

async function cannon(port: number, seconds: number, seed: number, extra: Partial<autocannon.Options> = {}): Promise<autocannon.Result> {
  return autocannon({
    url: `http://127.0.0.1:${port}`,
    connections: CONNECTIONS,
    pipelining: 1,
    duration: seconds,
    timeout: 10,
    requests: scenarioRequests(seed),
    ...extra,
  });
}

const accepted = (r: autocannon.Result, status: string) => Number((r.statusCodeStats as Record<string, { count: number | string }>)[status]?.count ?? 0);

// ---------------------------------------------------------------------------------------------
// Prepared records: the scenario's batches through the real ingest code, captured instead of
// produced. They are exactly the RawEvent records (value) and keys ingest writes to clicks.raw.

async function prepareRecords(events: number) {
  const captured: LogMessage[] = [];
  const capture: LogProducer = {
    send: async (topic, messages) => {
      if (topic !== TOPICS.raw) throw new Error(`unexpected produce to ${topic}: a scenario batch was refused`);
      for (const m of messages) captured.push(m);
    },
    ready: () => true,
    close: async () => {},
  };
  const app = createIngestApp({ producer: capture, logger: createLogger('bench', 'silent'), maxBodyBytes: 256 * 1024, retryAfterSeconds: 2, clientIp: () => '127.0.0.1' });
  const scenario = createScenario({ seed: 42 });
  let bodyBytes = 0;
  let batches = 0;
  while (captured.length < events) {
    const b = scenario.nextBatch(Date.now());
    if (batches < 200 && !CollectBatch.safeParse(b.body).success) throw new Error('the scenario made a batch that contract/collect.ts refuses');
    const body = JSON.stringify(b.body);
    bodyBytes += Buffer.byteLength(body);
    batches++;
    const res = await app.request('/v1/collect', { method: 'POST', headers: { 'content-type': CONTENT_TYPE, 'user-agent': b.userAgent }, body });
    if (res.status !== 202) throw new Error(`ingest answered ${res.status} to a scenario batch: ${await res.text()}`);
  }
  const records = captured.slice(0, events);
  const file = join(ROOT, 'node_modules', '.cache', 'clickfold-bench', 'records.tsv');
  writeFileSync(file, records.map((m) => `${m.key}\t${m.value}`).join('\n') + '\n');
  const size = (m: LogMessage) => Buffer.byteLength(m.key) + Buffer.byteLength(m.value);
  const rawBytes = records.reduce((n, m) => n + size(m), 0);
  // The records that built dialogues: those the topic map classifies, and identify (which merges
  // a visitor's dialogues into the person's). The rest stays in Kafka and never reaches Redis.
  const map = compileTopicMap(DEFAULT_TOPIC_MAP);
  const building = records.filter((m) => {
    const e = JSON.parse(m.value) as RawEvent;
    return e.type === 'identify' || map.classify(e) !== null;
  });
  const buildingBytes = building.reduce((n, m) => n + size(m), 0);
  return {
    file,
    records: records.length,
    rawBytes,
    buildingRecords: building.length,
    buildingBytes,
    avgRecordBytes: rawBytes / records.length,
    avgRequestBytes: bodyBytes / batches,
    people: new Set(records.map((r) => r.key)).size,
  };
}

// ---------------------------------------------------------------------------------------------

async function measureContext(bundlePath: string) {
  for (const mode of ['bare', 'hono'] as const) {
    const p = await proc(bundlePath, mode, {});
    await cannon(p.port!, 2, 7); // warm-up
    const rates: number[] = [];
    const cpus: CpuReport[] = [];
    for (let i = 0; i < RUNS; i++) {
      const meter = cpuMeter(roles({ server: p }));
      const r = await cannon(p.port!, CONTEXT_SECONDS, 100 + i);
      cpus.push(meter.stop());
      rates.push(((r['2xx'] ?? 0) * 10) / r.duration);
    }
    await p.stop();
    figure({
      key: `context.${mode}`,
      what: mode === 'bare' ? 'bare node:http (read body, 204), events/s' : 'Hono route that only parses the JSON, events/s',
      unit: 'events/s',
      value: spread(rates),
      note: `${cpuNote(cpus[cpus.length >> 1]!)} (the load generator is the limit here)`,
    });
    figure({ key: `context.${mode}.cpu`, what: `${mode === 'bare' ? 'bare node:http' : 'Hono + JSON.parse'}: server CPU per event`, unit: 'µs/event', value: spread(rates.map((r, i) => cpuPerEvent(cpus[i]!, 'server', r))) });
  }
}

async function measureIngest(bundlePath: string): Promise<number> {
  const p = await proc(bundlePath, 'ingest', { brokers: kafka!.brokers, partitions: PARTITIONS }, profArgs('ingest'));
  await cannon(p.port!, 3, 1); // warm-up: JIT, Kafka connections, metadata
  const rates: number[] = [];
  const cpus: CpuReport[] = [];
  const non202: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const meter = cpuMeter(roles({ ingest: p }));
    const r = await cannon(p.port!, INGEST_SECONDS, 10 + i);
    cpus.push(meter.stop());
    rates.push((accepted(r, '202') * 10) / r.duration);
    non202.push(r.requests.total - accepted(r, '202') + r.errors);
  }
  const max = spread(rates);
  figure({
    key: 'ingest.throughput',
    what: `ingest into Kafka, acknowledged (202 x 10), ${CONNECTIONS} connections`,
    unit: 'events/s',
    value: max,
    target: `>= ${TARGETS.ingest.toLocaleString('en-US')}`,
    ok: max.median >= TARGETS.ingest,
    note: `${cpuNote(cpus[cpus.length >> 1]!)}; not 202: ${non202.join('/')}`,
  });
  figure({ key: 'ingest.cpu', what: 'ingest: its process CPU per event at full load', unit: 'µs/event', value: spread(rates.map((r, i) => cpuPerEvent(cpus[i]!, 'ingest', r))) });

  // Latency at half the load just measured: autocannon's overallRate, and an open-loop paced
  // generator (autocannon's rate limit sends each connection's quota at the start of every second).
  const half = Math.round(max.median / 10 / 2);
  const acMeter = cpuMeter(roles({ ingest: p }));
  const ac = await cannon(p.port!, HALF_LOAD_SECONDS, 20, { overallRate: half, connections: 50 });
  const acCpu = acMeter.stop();
  figure({
    key: 'ingest.halfLoad.autocannon',
    what: `ingest latency at half load (${half} req/s = ${(half * 10).toLocaleString('en-US')} events/s), autocannon overallRate, p50 / p99`,
    unit: 'ms',
    value: `${ac.latency.p50} / ${ac.latency.p99}`,
    target: `p99 < ${TARGETS.ingestP99}`,
    ok: ac.latency.p99 < TARGETS.ingestP99,
    note: `bursty: each connection sends its per-second quota at once; ${cpuNote(acCpu)}`,
  });
  const p50s: number[] = [];
  const p99s: number[] = [];
  const pacedCpu: CpuReport[] = [];
  const scenario = createScenario({ seed: 30 });
  const pacedRuns: unknown[] = [];
  details.halfLoadPaced = pacedRuns;
  for (let i = 0; i < RUNS; i++) {
    const meter = cpuMeter(roles({ ingest: p }));
    const r = await pacedLoad({
      port: p.port!,
      path: '/v1/collect',
      rate: half,
      seconds: HALF_LOAD_SECONDS,
      connections: PACED_CONNECTIONS,
      next: () => {
        const b = scenario.nextBatch(Date.now());
        return { body: JSON.stringify(b.body), headers: { 'content-type': CONTENT_TYPE, 'user-agent': b.userAgent } };
      },
    });
    pacedCpu.push(meter.stop());
    p50s.push(r.latency.p50);
    p99s.push(r.latency.p99);
    pacedRuns.push(r);
  }
  const p99 = spread(p99s);
  figure({
    key: 'ingest.halfLoad.p50',
    what: `ingest latency at half load, paced open loop, p50`,
    unit: 'ms',
    value: spread(p50s),
  });
  figure({
    key: 'ingest.halfLoad.p99',
    what: `ingest latency at half load, paced open loop, p99`,
    unit: 'ms',
    value: p99,
    target: `< ${TARGETS.ingestP99}`,
    ok: p99.median < TARGETS.ingestP99,
    note: cpuNote(pacedCpu[pacedCpu.length >> 1]!),
  });
  const result = (await p.stop()) as { producer?: unknown } | undefined;
  details.ingestProducer = result?.producer;
  collectProfiles('ingest');
  return max.median;
}

async function measureRaw(bundlePath: string, records: { file: string; records: number }): Promise<{ best: number; topics: string[] }> {
  const modes = [
    // What ingest does without batching: one 10-record send per HTTP request, many at once.
    { name: 'send10', requestSize: 10, concurrency: CONNECTIONS, limit: Math.min(records.records, QUICK ? 20_000 : 50_000) },
    // The producer's best: large sends back to back (two at once, so one is built while the other flies).
    { name: 'batch', requestSize: 2000, concurrency: 2, limit: records.records },
  ];
  const best: Record<string, Spread> = {};
  const topics: string[] = [];
  let file = records.file;
  for (const m of modes) {
    if (m.limit < records.records) {
      file = records.file.replace(/\.tsv$/, `.${m.limit}.tsv`);
      writeFileSync(file, readFileSync(records.file, 'utf8').split('\n').slice(0, m.limit).join('\n') + '\n');
    } else file = records.file;
    const rates: number[] = [];
    const cpus: CpuReport[] = [];
    for (let i = 0; i < RUNS; i++) {
      const topic = `bench.raw.${m.name}.${Date.now()}`;
      let p: Proc | undefined;
      const meter = cpuMeter(roles({ producer: undefined }, () => ({ producer: p })));
      p = await proc(bundlePath, 'raw', { brokers: kafka!.brokers, partitions: PARTITIONS, topic, records: file, requestSize: m.requestSize, concurrency: m.concurrency });
      const r = (await p.result) as { eventsPerSecond: number };
      cpus.push(meter.stop());
      await p.stop();
      rates.push(r.eventsPerSecond);
      if (m.name === 'batch') topics.push(topic);
    }
    best[m.name] = spread(rates);
    figure({
      key: `raw.${m.name}`,
      what: m.name === 'send10' ? `raw kafkajs producer, 10 records per send, ${m.concurrency} at once` : `raw kafkajs producer, ${m.requestSize} records per send`,
      unit: 'events/s',
      value: best[m.name]!,
      note: cpuNote(cpus[cpus.length >> 1]!),
    });
    if (m.name === 'batch') figure({ key: 'raw.cpu', what: `raw kafkajs producer (${m.requestSize} per send): its process CPU per event`, unit: 'µs/event', value: spread(rates.map((r, i) => cpuPerEvent(cpus[i]!, 'producer', r))) });
  }
  return { best: Math.max(best.batch!.median, best.send10!.median), topics };
}

type Prepared = Awaited<ReturnType<typeof prepareRecords>>;

async function measureFold(bundlePath: string, topics: string[], prepared: Prepared) {
  const redis = new Redis(redisServer!.url);
  const rates: number[] = [];
  const cpus: CpuReport[] = [];
  const runs: unknown[] = [];
  let commandStats: Record<string, { calls: number; usec: number }> = {};
  let redisCpuSeconds = 0;
  for (let i = 0; i < topics.length; i++) {
    await redis.flushall();
    await redis.config('RESETSTAT');
    const cpu0 = await redisCpu(redis);
    let p: Proc | undefined;
    const meter = cpuMeter(roles({}, () => ({ worker: p })));
    p = await proc(bundlePath, 'fold', {
      brokers: kafka!.brokers,
      redisUrl: redisServer!.url,
      topic: topics[i],
      groupId: `bench-fold-${Date.now()}`,
      ns: '',
      expected: prepared.records,
      consumer: flags.consumer ? JSON.parse(flags.consumer) : undefined,
      // BENCH_NULL_PRODUCER=1: the worker does not publish transitions (what publishing costs).
      nullProducer: process.env.BENCH_NULL_PRODUCER === '1',
    }, i === topics.length - 1 ? profArgs('fold') : []);
    const r = (await p.result) as { eventsPerSecond: number; lag: number; cpuSeconds: number; seconds: number };
    cpus.push(meter.stop());
    await p.stop();
    if (r.lag !== 0) throw new Error(`the fold did not reach lag 0 (lag ${r.lag})`);
    rates.push(r.eventsPerSecond);
    runs.push(r);
    redisCpuSeconds = (await redisCpu(redis)) - cpu0;
    commandStats = await commandstats(redis);
  }
  details.foldRuns = runs;
  const s = spread(rates);
  figure({
    key: 'fold.throughput',
    what: `fold, one worker (${prepared.records.toLocaleString('en-US')} records, ${PARTITIONS} partitions) until lag 0`,
    unit: 'events/s',
    value: s,
    target: `>= ${TARGETS.fold.toLocaleString('en-US')}`,
    ok: s.median >= TARGETS.fold,
    note: `${cpuNote(cpus[cpus.length >> 1]!)}; worker CPU ${round(((runs as { cpuSeconds: number }[])[runs.length >> 1]!.cpuSeconds / prepared.records) * 1e6, 1)} µs per event`,
  });
  const perEvent = Object.fromEntries(Object.entries(commandStats).map(([k, v]) => [k, round(v.calls / prepared.records, 3)]));
  details.redisCommandsPerEvent = perEvent;
  details.redisCommandStats = commandStats;
  figure({
    key: 'fold.redisCpu',
    what: 'Redis CPU per folded event during the last fold (its ceiling for this workload on one core)',
    unit: 'µs/event',
    value: round((redisCpuSeconds / prepared.records) * 1e6, 2),
    note: `= ${Math.round(prepared.records / redisCpuSeconds).toLocaleString('en-US')} events/s of Redis CPU; commands/event ${Object.entries(perEvent)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  });
  collectProfiles('fold');
  await measureCollapse(redis, prepared);

  // Where the worker's CPU goes: the consumer alone (no-op handler) on the same records, and the
  // worker's steps without any I/O.
  const noop = await proc(bundlePath, 'fold', { brokers: kafka!.brokers, redisUrl: redisServer!.url, topic: topics[0], groupId: `bench-noop-${Date.now()}`, ns: 'noop:', expected: prepared.records, noop: true, consumer: flags.consumer ? JSON.parse(flags.consumer) : undefined });
  const consumerOnly = (await noop.result) as { eventsPerSecond: number; cpuSeconds: number };
  await noop.stop();
  const parts = await proc(bundlePath, 'parts', { records: prepared.file, redisUrl: redisServer!.url });
  const steps = (await parts.result) as Record<string, number>;
  await parts.stop();
  const fullCpu = (runs as { cpuSeconds: number }[]).map((r) => (r.cpuSeconds / prepared.records) * 1e6);
  const breakdown: Record<string, number> = {
    'KafkaLogConsumer alone (fetch, decode, commit; no-op handler)': (consumerOnly.cpuSeconds / prepared.records) * 1e6,
    ...steps,
    'whole worker on Kafka + Redis (the fold runs above)': spread(fullCpu).median,
  };
  details.foldBreakdown = { microsecondsPerEvent: breakdown, consumerOnlyEventsPerSecond: consumerOnly.eventsPerSecond };
  for (const [name, us] of Object.entries(breakdown)) {
    figure({ key: `fold.cpu.${name}`, what: `fold CPU breakdown: ${name}`, unit: 'µs/event', value: round(us, 1) });
  }
  figure({ key: 'fold.consumerOnly', what: 'KafkaLogConsumer alone (no-op handler), same records', unit: 'events/s', value: round(consumerOnly.eventsPerSecond) });
  redis.disconnect();
}

async function redisCpu(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const get = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  return get('used_cpu_user') + get('used_cpu_sys');
}

async function commandstats(redis: Redis) {
  const info = await redis.info('commandstats');
  const out: Record<string, { calls: number; usec: number }> = {};
  for (const m of info.matchAll(/^cmdstat_(\w+(?:\|\w+)?):calls=(\d+),usec=(\d+)/gm)) {
    if (['info', 'config', 'flushall', 'ping', 'client', 'select', 'script', 'memory', 'scan', 'hlen'].includes(m[1]!)) continue;
    out[m[1]!] = { calls: Number(m[2]), usec: Number(m[3]) };
  }
  return out;
}

/** Key kinds of history/store.ts `keys`, by prefix. */
const KEY_KINDS: [string, string][] = [
  ['h:{', 'person hashes'],
  ['ix:{', 'stage indexes'],
  ['l:{', 'linked ids'],
  ['r:{', 'event fingerprints (expiring)'],
  ['x:{', 'transition outboxes'],
  ['topics', 'topics set'],
];

async function measureCollapse(redis: Redis, prepared: Prepared) {
  const bytes: Record<string, number> = {};
  const count: Record<string, number> = {};
  let dialogues = 0;
  const encodings: Record<string, number> = {};
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'COUNT', 1000);
    cursor = next;
    const pipe = redis.pipeline();
    for (const k of keys) {
      pipe.memory('USAGE', k, 'SAMPLES', '0');
      pipe.object('ENCODING', k);
      if (k.startsWith('h:{')) pipe.hkeys(k);
      else pipe.echo('');
    }
    const res = (await pipe.exec()) ?? [];
    keys.forEach((k, i) => {
      const kind = KEY_KINDS.find(([prefix]) => k.startsWith(prefix))?.[1] ?? 'other';
      bytes[kind] = (bytes[kind] ?? 0) + Number(res[i * 3]?.[1] ?? 0);
      count[kind] = (count[kind] ?? 0) + 1;
      if (kind === 'person hashes') {
        const enc = String(res[i * 3 + 1]?.[1]);
        encodings[enc] = (encodings[enc] ?? 0) + 1;
        dialogues += ((res[i * 3 + 2]?.[1] as string[] | undefined) ?? []).filter((f) => f.startsWith('d:')).length;
      }
    });
  } while (cursor !== '0');
  const transient = ['event fingerprints (expiring)', 'transition outboxes'];
  const durable = Object.entries(bytes).filter(([k]) => !transient.includes(k)).reduce((n, [, b]) => n + b, 0);
  const total = Object.values(bytes).reduce((n, b) => n + b, 0);
  const rawPerDialogue = prepared.buildingBytes / dialogues;
  const ratio = rawPerDialogue / (durable / dialogues);
  details.collapse = {
    dialogues,
    bytes,
    keys: count,
    rawBytes: prepared.rawBytes,
    buildingBytes: prepared.buildingBytes,
    eventsPerDialogue: prepared.buildingRecords / dialogues,
    allEventsPerDialogue: prepared.records / dialogues,
    personHashEncodings: encodings,
  };
  const parts = Object.entries(bytes)
    .sort((a, b) => b[1] - a[1])
    .map(([k, b]) => `${k} ${round(b / dialogues)}`)
    .join(', ');
  figure({
    key: 'collapse.redisBytesPerDialogue',
    what: `Redis bytes per dialogue, durable (MEMORY USAGE of person hashes, indexes, links, topics), ${dialogues.toLocaleString('en-US')} dialogues`,
    unit: 'B',
    value: round(durable / dialogues),
    note: `per dialogue: ${parts}; with the expiring fingerprints ${round(total / dialogues)} B; person hash encodings ${JSON.stringify(encodings)}`,
  });
  figure({
    key: 'collapse.ratio',
    what: `collapse: raw Kafka bytes that built a dialogue (${round(rawPerDialogue).toLocaleString('en-US')} B key+value, ${round(prepared.buildingRecords / dialogues, 1)} events) / its durable Redis bytes`,
    unit: 'x',
    value: round(ratio, 1),
    target: `>= ${TARGETS.collapse}`,
    ok: ratio >= TARGETS.collapse,
    note: `counting the expiring fingerprints and outboxes too: ${round(rawPerDialogue / (total / dialogues), 1)}x; counting every record on clicks.raw (${round(prepared.records / dialogues, 1)} per dialogue, with the browsing that matches no topic): ${round(prepared.rawBytes / durable, 1)}x`,
  });
}

/** redis-benchmark ceilings for the commands the fold sends, on its own keys in database 1. */
async function measureRedisCeiling() {
  const port = String(redisServer!.port);
  const redis = new Redis(redisServer!.url, { db: 1 });
  // A person hash as the fold leaves it (one dialogue, the fingerprint ring, offsets, version).
  const fields = {
    'd:product:sku-12': '2|lz3k1a|1f4|,5k,1f4|7,9,3|web',
    s: Array.from({ length: 32 }, (_, i) => (0x9e3779b9 * (i + 1)).toString(36).slice(0, 6)).join(','),
    o: 'clicks.raw/3=18234',
    v: '7',
  };
  const pipe = redis.pipeline();
  for (let i = 0; i < 10_000; i++) pipe.hset(`bh:{${String(i).padStart(12, '0')}}`, fields);
  await pipe.exec();
  // The fold's compare-and-set script, with the same shape of arguments (4 field/value pairs).
  const cas = `local v = redis.call('HGET', KEYS[1], 'v')\nif (v or '0') ~= ARGV[1] then return 0 end\nredis.call('HSET', KEYS[1], unpack(ARGV, 2))\nreturn 1`;
  const sha = String(await redis.script('LOAD', cas));
  const N = QUICK ? '100000' : '300000';
  const common = ['-p', port, '-n', N, '-P', '16', '-q', '--dbnum', '1'];
  const tests: [string, string[]][] = [
    ['HSET (redis-benchmark -t hset)', ['-t', 'hset']],
    ['HGETALL of a person hash', ['-r', '10000', 'HGETALL', 'bh:{__rand_int__}']],
    ['EVALSHA compare-and-set, 4 fields', ['-r', '10000', 'EVALSHA', sha, '1', 'bh:{__rand_int__}', '999999', 'd:product:sku-12', fields['d:product:sku-12'], 's', fields.s, 'o', fields.o, 'v', '8']],
    ['ZADD to a stage index', ['-r', '100000', 'ZADD', 'bix:{product:sku-12}:detail', '1717000000000', 'p__rand_int__']],
  ];
  const results: Record<string, number> = {};
  for (const [name, extra] of tests) {
    let out: string;
    try {
      out = await new Promise<string>((resolve, reject) =>
        execFile('redis-benchmark', [...common, ...extra], { timeout: 120_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
      );
    } catch (err) {
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      figure({ key: 'redisBenchmark', what: 'redis-benchmark', unit: '', value: missing ? 'not installed (Debian: redis-tools): skipped' : `failed: ${(err as Error).message}` });
      break;
    }
    const m = /([\d.]+) requests per second/.exec(out.split('\r').pop() ?? out);
    results[name] = m ? Number(m[1]) : NaN;
    figure({ key: `redisBenchmark.${name}`, what: `redis-benchmark -P 16: ${name}`, unit: 'ops/s', value: round(results[name]!) });
  }
  details.redisBenchmark = results;
  await redis.flushdb();
  redis.disconnect();
}

/**
 * Click to queryable stage at 5,000 events/s. `all-in-one`: apps/all-in-one-app.ts startApp on Kafka and
 * Redis (ingest, worker and query API share one event loop); `split`: the real stack's ingest
 * process and a worker process. Probes are timestamped when the worker's handler hands their
 * transitions to onTransitions (after the Redis write and the publish), cross-checked by polling
 * GET /v1/people for a tenth of them (all-in-one only: the split stack has no query API here).
 */
async function measureLatency(bundlePath: string, topology: 'all-in-one' | 'split') {
  const started: Proc[] = [];
  let p: Proc;
  if (topology === 'all-in-one') {
    p = await proc(bundlePath, 'app', { brokers: kafka!.brokers, redisUrl: redisServer!.url, groupId: `bench-app-${Date.now()}`, ns: 'lat:', partitions: PARTITIONS });
    started.push(p);
  } else {
    const w = await proc(bundlePath, 'worker', { brokers: kafka!.brokers, redisUrl: redisServer!.url, groupId: `bench-worker-${Date.now()}`, ns: 'split:', consumer: flags.consumer ? JSON.parse(flags.consumer) : undefined });
    p = await proc(bundlePath, 'ingest', { brokers: kafka!.brokers, partitions: PARTITIONS });
    started.push(p, w);
  }
  const reporter = started[started.length - 1]!;
  const sentAt = new Map<string, number>();
  const seen = new Map<string, number>();
  reporter.onMessage((m) => {
    if (m.type !== 'probes') return;
    for (const x of m.probes) if (!seen.has(x.person)) seen.set(x.person, x.at);
  });
  const scenario = createScenario({ seed: 77 });
  let probeNo = 0;
  const pollAgent = new Agent({ keepAlive: true, maxSockets: 4 });
  const polled: number[] = [];
  const poll = (person: string, t0: number) => {
    const until = t0 + 5000;
    const once = () =>
      request({ agent: pollAgent, host: '127.0.0.1', port: p.port, path: `/v1/people/${person}` }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          if (res.statusCode === 200 && body.includes('"stage":"purchase"')) polled.push(now() - t0);
          else if (now() < until) setTimeout(once, 1);
        });
      }).end();
    once();
  };
  const next = (i: number, tag: string, pollEvery: number) => {
    if (i % 10 === 0) {
      const person = `probe-${tag}-${probeNo++}`;
      const b = probeBatch(person, Date.now());
      const t = now();
      sentAt.set(person, t);
      if (pollEvery && topology === 'all-in-one' && probeNo % pollEvery === 0) poll(person, t);
      return { body: JSON.stringify(b.body), headers: { 'content-type': CONTENT_TYPE, 'user-agent': b.userAgent } };
    }
    const b = scenario.nextBatch(Date.now());
    return { body: JSON.stringify(b.body), headers: { 'content-type': CONTENT_TYPE, 'user-agent': b.userAgent } };
  };
  // Warm up until a probe comes back (the consumer group has joined), then a few seconds more.
  const warmUntil = Date.now() + 60_000;
  while (seen.size === 0 && Date.now() < warmUntil) await pacedLoad({ port: p.port!, path: '/v1/collect', rate: CLICK_RATE, seconds: 2, connections: PACED_CONNECTIONS, next: (i) => next(i, 'warm', 0) });
  // Then more: the JIT of the processes (and of the broker, if this runs first) settles.
  await pacedLoad({ port: p.port!, path: '/v1/collect', rate: CLICK_RATE, seconds: QUICK ? 8 : 12, connections: PACED_CONNECTIONS, next: (i) => next(i, 'warm', 0) });
  await sleep(500);

  const p50s: number[] = [];
  const p99s: number[] = [];
  const all: number[] = [];
  const cpus: CpuReport[] = [];
  let missing = 0;
  let ingestP99 = 0;
  for (let w = 0; w < RUNS; w++) {
    const tag = `w${w}`;
    const meter = cpuMeter(roles(topology === 'all-in-one' ? { app: p } : { ingest: p, worker: started[1] }));
    const load = await pacedLoad({ port: p.port!, path: '/v1/collect', rate: CLICK_RATE, seconds: LATENCY_WINDOW_SECONDS, connections: PACED_CONNECTIONS, next: (i) => next(i, tag, 10) });
    cpus.push(meter.stop());
    ingestP99 = Math.max(ingestP99, load.latency.p99);
    await sleep(1000);
    const lat: number[] = [];
    for (const [person, t] of sentAt) {
      if (!person.startsWith(`probe-${tag}-`)) continue;
      const at = seen.get(person);
      if (at === undefined) missing++;
      else lat.push(at - t);
    }
    lat.sort((a, b) => a - b);
    all.push(...lat);
    p50s.push(percentile(lat, 50));
    p99s.push(percentile(lat, 99));
    if (load.statuses['202'] !== load.sent) log(`latency window ${w}: ${JSON.stringify(load.statuses)} errors ${load.errors}`);
  }
  all.sort((a, b) => a - b);
  polled.sort((a, b) => a - b);
  const stopped = [];
  for (const s of started) stopped.push(await s.stop());
  pollAgent.destroy();
  const key = topology === 'all-in-one' ? 'clickToStage' : 'clickToStageSplit';
  details[key] = {
    processes: stopped, probes: all.length, missing, pooled: { p50: percentile(all, 50), p90: percentile(all, 90), p99: percentile(all, 99), max: all[all.length - 1] }, polled: { probes: polled.length, p50: percentile(polled, 50), p99: percentile(polled, 99) }, ingestP99 };
  figure({ key: `${key}.p50`, what: `click to queryable stage, ${topology}, at ${(CLICK_RATE * 10).toLocaleString('en-US')} events/s, p50 (POST sent -> onTransitions)`, unit: 'ms', value: spread(p50s.map((x) => round(x, 1))) });
  const p99 = spread(p99s.map((x) => round(x, 1)));
  figure({
    key: `${key}.p99`,
    what: `click to queryable stage, ${topology}, p99 (${all.length} probes in ${RUNS} windows, ${missing} missing)`,
    unit: 'ms',
    value: p99,
    target: `< ${TARGETS.clickP99}`,
    ok: p99.median < TARGETS.clickP99 && missing === 0,
    note: `pooled p50 ${round(percentile(all, 50), 1)}, p99 ${round(percentile(all, 99), 1)}, max ${round(all[all.length - 1] ?? NaN, 1)}; ${polled.length ? `by polling GET /v1/people (${polled.length} probes): p50 ${round(percentile(polled, 50), 1)}, p99 ${round(percentile(polled, 99), 1)}; ` : ''}POST p99 ${round(ingestP99, 1)}; ${cpuNote(cpus[cpus.length >> 1]!)}`,
  });
}

function measureSnippet() {
  const file = join(ROOT, 'dist', 't.js');
  if (!existsSync(file)) {
    figure({ key: 'snippet', what: 'snippet dist/t.js', unit: '', value: 'not built: run `npm run build` first (skipped)' });
    return;
  }
  const code = readFileSync(file);
  const gz = gzipSync(code, { level: 9 }).byteLength;
  const br = brotliCompressSync(code, { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 11 } }).byteLength;
  figure({ key: 'snippet.raw', what: 'snippet dist/t.js, raw', unit: 'B', value: code.byteLength, note: `sha256 ${createHash('sha256').update(code).digest('hex').slice(0, 12)}` });
  figure({ key: 'snippet.gzip', what: 'snippet dist/t.js, gzip -9', unit: 'B', value: gz, target: `<= ${TARGETS.snippetGzip}`, ok: gz <= TARGETS.snippetGzip });
  figure({ key: 'snippet.brotli', what: 'snippet dist/t.js, brotli q11', unit: 'B', value: br });
}

// ---------------------------------------------------------------------------------------------

function table(): string {
  const rows = figures.map((f) => {
    const v = typeof f.value === 'object' ? fmt(f.value.median) : typeof f.value === 'number' ? fmt(f.value) : f.value;
    const range = typeof f.value === 'object' ? `${fmt(f.value.min)} – ${fmt(f.value.max)} (${f.value.runs} runs)` : '';
    const verdict = f.ok === undefined ? '' : f.ok ? 'ok' : 'MISS';
    return [f.what, `${v} ${f.unit}`.trim(), range, f.target ? `${f.target} ${f.unit}`.trim() : '', verdict];
  });
  const head = ['measurement', 'median / value', 'min – max', 'target', ''];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join(' | ');
  const out = [line(head), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map(line)];
  const notes = figures.filter((f) => f.note).map((f) => `  - ${f.what.split(',')[0]}: ${f.note}`);
  return `${out.join('\n')}\n\nnotes:\n${notes.join('\n')}`;
}

async function recreateTopics(kafkaClient: ReturnType<typeof createKafka>) {
  const a = kafkaClient.admin();
  await a.connect();
  try {
    const mine = Object.values(TOPICS) as string[];
    const existing = (await a.listTopics()).filter((t) => mine.includes(t));
    if (existing.length) await a.deleteTopics({ topics: existing, timeout: 30_000 });
    for (let i = 0; i < 100 && (await a.listTopics()).some((t) => mine.includes(t)); i++) await sleep(100);
  } finally {
    await a.disconnect();
  }
  for (let attempt = 0; ; attempt++) {
    try {
      await ensureTopics(kafkaClient, PARTITIONS, 1);
      return;
    } catch (err) {
      // A deleted topic can take a moment to be gone everywhere (TOPIC_ALREADY_EXISTS meanwhile).
      if (attempt === 20) throw err;
      await sleep(250);
    }
  }
}

async function main() {
  const started = new Date();
  const m = machine();
  log(`machine: ${m.nproc} cpus (${m.cpuModel}), ${m.memoryGiB} GiB, ${m.os}, node ${m.node}, load average ${m.loadavg.join(' ')}`);
  const idle = cpuMeter(() => ({}));
  await sleep(1000);
  const before = idle.stop();
  log(`before starting: others use ${before.others}% of one core${before.topOthers.length ? ` (${before.topOthers.join(', ')})` : ''}`);

  const t0 = Date.now();
  log('starting Kafka and Redis…');
  const [k, r] = await Promise.all([KafkaBroker.start({ heap: ['-Xmx1g', '-Xms1g'] }), RedisServer.start()]);
  kafka = k;
  redisServer = r;
  log(`Kafka ${kafka.brokers} and Redis ${redisServer.url} up in ${Date.now() - t0} ms`);
  const admin = createKafka(kafka.brokers, 'bench-admin', createLogger('bench', 'silent'));
  await ensureTopics(admin, PARTITIONS, 1);

  mkdirSync(join(ROOT, 'node_modules', '.cache', 'clickfold-bench'), { recursive: true });
  const bundlePath = await bundle();
  const prepared = await prepareRecords(EVENTS);
  details.records = prepared;
  log(`prepared ${prepared.records.toLocaleString('en-US')} records from the scenario (${round(prepared.avgRecordBytes)} B per record key+value, ${round(prepared.avgRequestBytes)} B per request body, ${prepared.people} people)`);

  if (want('context')) await measureContext(bundlePath);
  let ingestRate = NaN;
  if (want('ingest')) ingestRate = await measureIngest(bundlePath);
  let raw: { best: number; topics: string[] } | undefined;
  if (want('raw') || want('fold')) raw = await measureRaw(bundlePath, prepared);
  if (raw && Number.isFinite(ingestRate)) {
    const ratio = ingestRate / raw.best;
    figure({ key: 'ingest.ratio', what: 'ingest / raw producer (best raw mode), same records, same run', unit: 'x', value: round(ratio, 2), target: `>= ${TARGETS.ratio}`, ok: ratio >= TARGETS.ratio });
  }
  if (want('fold') && raw) await measureFold(bundlePath, raw.topics, prepared);
  // Last of the Kafka measurements: a broker fresh from start spends much of its CPU compiling
  // (the JVM's C2 thread at 25% of a core in the first minute), which the runs above got past.
  if (want('latency')) {
    // The all-in-one app's group reads clicks.raw from the beginning: empty it first.
    await recreateTopics(admin);
    if (flags.topology !== 'split') await measureLatency(bundlePath, 'all-in-one');
    if (flags.topology !== 'all-in-one') await measureLatency(bundlePath, 'split');
  }
  if (want('redis')) await measureRedisCeiling();
  if (want('snippet')) measureSnippet();

  const after = machine();
  const result = {
    started: started.toISOString(),
    seconds: Math.round((Date.now() - started.getTime()) / 1000),
    machine: { ...m, loadavgAfter: after.loadavg, othersBeforePct: before.others },
    options: { quick: QUICK, events: EVENTS, runs: RUNS, connections: CONNECTIONS, partitions: PARTITIONS, ingestSeconds: INGEST_SECONDS },
    figures,
    details,
    profiles,
  };
  const dir = join(ROOT, 'bench-results');
  mkdirSync(dir, { recursive: true });
  const out = join(dir, `${started.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(out, JSON.stringify(result, null, 2));

  console.log(`\nclickfold bench, ${started.toISOString()}, ${m.nproc} x ${m.cpuModel}, ${m.memoryGiB} GiB, node ${m.node}${QUICK ? ' (--quick)' : ''}`);
  console.log(`load average ${m.loadavg.join(' ')} before, ${after.loadavg.join(' ')} after; other processes used ${before.others}% of a core just before\n`);
  console.log(table());
  console.log(`\nwritten to ${out} (${result.seconds} s)`);
}

async function cleanup() {
  await Promise.allSettled([...procs].map((p) => p.stop()));
  await Promise.allSettled([kafka?.destroy(), redisServer?.destroy()]);
  rmSync(join(ROOT, 'node_modules', '.cache', 'clickfold-bench', 'records.tsv'), { force: true });
}

process.once('SIGINT', () => {
  log('interrupted, stopping…');
  void cleanup().finally(() => process.exit(130));
});

main()
  .then(cleanup, async (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    await cleanup();
    process.exitCode = 1;
  })
  .finally(() => setTimeout(() => process.exit(process.exitCode ?? 0), 100).unref());
