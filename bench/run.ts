/**
 * `npm run bench`: starts a real Kafka broker and a real Redis (services/), measures the targets
 * of bench/targets.ts, prints one table and writes bench-results/<timestamp>.json.
 *
 *   npm run bench                       # everything, about 5-6 minutes on 2 cores
 *   npm run bench -- --quick            # shorter runs, for trying changes (figures are rougher)
 *   npm run bench -- --only ingest,raw  # some measurements: latency,audience,callback,context,ingest,raw,fold,redis,snippet
 *   npm run bench -- --profile          # also CPU-profile ingest and the worker (node --cpu-prof)
 *   npm run bench -- --events N --consumer '<KafkaConsumerOptions JSON>' --topology split --click-rate 5000
 *
 * The load everywhere is load/scenario.js, the module the k6 scripts play. Measured processes run
 * on their own (bench/proc.ts, bundled and forked with plain node), so the load generator never
 * shares their event loop; every figure comes with the CPU each process used while it was taken
 * and with what else was running on the machine. Each measurement is a module of bench/measure/
 * that takes its inputs and returns its figures; this file only runs them in order.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createKafka, ensureTopics } from '../lib/kafka/client.js';
import { TOPICS } from '../contract/raw-event.js';
import { createLogger } from '../lib/logger.js';
import { KafkaBroker } from '../services/kafka.js';
import { RedisServer } from '../services/redis.js';
import { bundleProc, launcher, profiler as cpuProfiler, ROOT, RUN_DIR, type Harness } from './harness.js';
import { cpuMeter, machine, sleep } from './lib.js';
import { measureClickToCallback } from './measure/click-to-callback.js';
import { measureAudienceMemory } from './measure/audience-memory.js';
import { measureClickToStage } from './measure/click-to-stage.js';
import { measureCollapse } from './measure/collapse.js';
import { ingestCpuRatio, measureContext, measureHonoFloor } from './measure/context.js';
import { measureFoldBreakdown } from './measure/fold-breakdown.js';
import { measureFold } from './measure/fold.js';
import { measureIngest, type IngestResult } from './measure/ingest.js';
import { ingestRatio, measureRaw } from './measure/raw.js';
import { measureRedisCeiling } from './measure/redis-ceiling.js';
import { measureSnippet } from './measure/snippet.js';
import { measureQueryScale } from './measure/query-scale.js';
import { formatProfile, type ProfileSummary } from './profile.js';
import { prepareRecords } from './records.js';
import { figureList, log, logFigure, round, table, type Figure, type Figures } from './report.js';
import { FLAGS, settingsOf, USAGE, type Part } from './settings.js';
import { meets, targetText, TARGETS } from './targets.js';

async function main(): Promise<void> {
  const { values: flags } = parseArgs({ options: FLAGS });
  if (flags.help) {
    console.log(USAGE);
    return;
  }
  const s = settingsOf(flags, process.env);
  const want = (p: Part) => s.parts.has(p);
  const profiler = s.profile ? cpuProfiler() : undefined;

  const figures: Figure[] = [];
  const details: Record<string, unknown> = {};
  const profiles: ProfileSummary[] = [];
  /** Takes a measurement's figures, details and profile, in the order they come. */
  const take = (r: { figures: Figures; details?: Record<string, unknown>; profile?: ProfileSummary }) => {
    for (const f of figureList(r.figures)) {
      figures.push(f);
      logFigure(f);
    }
    Object.assign(details, r.details);
    if (r.profile) {
      profiles.push(r.profile);
      console.error(formatProfile(r.profile));
    }
  };

  const started = new Date();
  const m = machine();
  log(`machine: ${m.nproc} cpus (${m.cpuModel}), ${m.memoryGiB} GiB, ${m.os}, node ${m.node}, load average ${m.loadavg.join(' ')}`);
  const idle = cpuMeter(() => ({}));
  await sleep(1000);
  const before = idle.stop();
  log(`before starting: others use ${before.others}% of one core${before.topOthers.length ? ` (${before.topOthers.join(', ')})` : ''}`);

  // What is started is stopped by `cleanup`, also when a measurement throws or on Ctrl-C.
  let kafka: KafkaBroker | undefined;
  let redisServer: RedisServer | undefined;
  let procs: ReturnType<typeof launcher> | undefined;
  const cleanup = async () => {
    await procs?.stopAll();
    await Promise.allSettled([kafka?.destroy(), redisServer?.destroy()]);
    rmSync(RUN_DIR, { recursive: true, force: true });
  };
  const interrupted = () => {
    log('interrupted, stopping…');
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  try {
    const t0 = Date.now();
    log('starting Kafka and Redis…');
    [kafka, redisServer] = await Promise.all([KafkaBroker.start({ heap: ['-Xmx1g', '-Xms1g'] }), RedisServer.start()]);
    log(`Kafka ${kafka.brokers} and Redis ${redisServer.url} up in ${Date.now() - t0} ms`);
    const admin = createKafka(kafka.brokers, 'bench-admin', createLogger('bench', 'silent'));
    // A broker fresh from start may not host the new partitions yet: retried, as recreateTopics does.
    await retrying(() => ensureTopics(admin, s.partitions, 1));

    mkdirSync(RUN_DIR, { recursive: true });
    procs = launcher(await bundleProc(RUN_DIR));
    const h: Harness = { services: { kafka, redis: redisServer }, start: procs.start };
    const prepared = await prepareRecords(s.events, RUN_DIR);
    details.records = prepared;
    log(
      `prepared ${prepared.records.toLocaleString('en-US')} records from the scenario (${round(prepared.avgRecordBytes)} B per record key+value, ${round(prepared.avgRequestBytes)} B per request body, ${prepared.people} people)`,
    );

    // The Hono route's CPU is the first half of ingest's floor: measured with ingest even without `context`.
    let honoCpu = NaN;
    if (want('context')) {
      const context = await measureContext(h, s);
      take(context);
      honoCpu = context.honoCpuPerEvent;
    } else if (want('ingest')) {
      const hono = await measureHonoFloor(h, s);
      take(hono);
      honoCpu = hono.honoCpuPerEvent;
    }
    // Ingest with each producer client (KAFKA_PRODUCER), side by side.
    const ingests: IngestResult[] = [];
    if (want('ingest')) {
      for (const client of s.producers) {
        const ingest = await measureIngest(h, s, prepared.file, profiler, client);
        take(ingest);
        ingests.push(ingest);
      }
    }
    const raw = want('raw') || want('fold') ? await measureRaw(h, s, prepared) : undefined;
    if (raw) take({ figures: { raw: raw.figures } });
    // Ingest against its floors, each with the raw producer of its own client.
    for (const ingest of ingests) {
      const floor = raw?.byClient[ingest.client];
      if (!floor) continue;
      take({ figures: { ratio: ingestRatio(ingest.eventsPerSecond, floor.best, ingest.client).figure } });
      const cpuRatio = ingestCpuRatio(ingest.cpuPerEvent, honoCpu, floor.cpuPerEvent);
      take({
        figures: {
          cpuRatio: {
            key: ingest.client === 'kafkajs' ? 'ingest.cpuRatio' : `ingest.${ingest.client}.cpuRatio`,
            what: `ingest CPU per event / (Hono parse + raw ${ingest.client} producer per event), same run`,
            unit: 'x',
            value: round(cpuRatio, 2),
            target: targetText(TARGETS.ingestCpuRatio),
            ok: meets(TARGETS.ingestCpuRatio, cpuRatio),
            note: `${round(ingest.cpuPerEvent, 1)} / (${round(honoCpu, 1)} + ${round(floor.cpuPerEvent, 1)}) µs per event`,
          },
        },
      });
    }
    if (want('fold') && raw) {
      const fold = await measureFold(h, s, raw.topics, prepared, profiler);
      take(fold);
      take(await measureCollapse(h.services, prepared));
      take(await measureFoldBreakdown(h, s, raw.topics[0]!, prepared, fold.details.foldRuns));
      // What exactly-once costs: the same fold publishing and committing in transactions.
      const tx = await measureFold(h, s, raw.topics, prepared, undefined, true);
      take({ figures: { throughput: tx.figures.throughput } });
      take({ figures: { cost: transactionCost(tx.figures.throughput, fold.figures.throughput) } });
      // What the CRM steps, the stall rules and audiences cost the fold: the same records both ways.
      const off = await measureFold(h, s, raw.topics.slice(0, 1), prepared, undefined, false, 'off');
      const on = await measureFold(h, s, raw.topics.slice(0, 1), prepared, undefined, false, 'on');
      take({ figures: { featuresOff: off.figures.throughput, featuresOn: on.figures.throughput } });
    }
    // Last of the Kafka measurements: a broker fresh from start spends much of its CPU compiling
    // (the JVM's C2 thread at 25% of a core in the first minute), which the runs above got past.
    if (want('latency')) {
      for (const topology of s.topologies) {
        for (const transactions of [false, true]) {
          // The all-in-one app's group reads clicks.raw from the beginning: empty it first, every time.
          if (topology === 'all-in-one') await recreateTopics(admin, s.partitions);
          const r = await measureClickToStage(h, s, topology, transactions);
          take({ figures: r.figures, details: { [r.key]: r.details } });
        }
      }
    }
    // Click to `entered`: the same probes, timed to the audience event their purchase causes.
    if (want('audience')) {
      await recreateTopics(admin, s.partitions);
      const r = await measureClickToStage(h, s, 'all-in-one', false, true);
      take({ figures: r.figures, details: { [r.key]: r.details } });
      take(await measureAudienceMemory(h.services, 'lat:'));
    }
    // Click to the page's own stages callback (the visitor API's stream), each topology once.
    if (want('callback')) {
      for (const topology of s.topologies) {
        if (topology === 'all-in-one') await recreateTopics(admin, s.partitions);
        const r = await measureClickToCallback(h, s, topology);
        take({ figures: r.figures, details: r.details });
      }
    }
    if (want('redis')) take(await measureRedisCeiling(h.services, s));
    if (want('snippet')) take(measureSnippet(join(ROOT, 'dist', 't.js')));
    if (want('query')) take(await measureQueryScale(h.services, s));

    const after = machine();
    const result = {
      started: started.toISOString(),
      seconds: Math.round((Date.now() - started.getTime()) / 1000),
      machine: { ...m, loadavgAfter: after.loadavg, othersBeforePct: before.others },
      options: {
        quick: s.quick,
        events: s.events,
        runs: s.runs,
        connections: s.connections,
        partitions: s.partitions,
        ingestSeconds: s.ingestSeconds,
        producers: s.producers,
      },
      figures,
      details,
      profiles,
    };
    const dir = join(ROOT, 'bench-results');
    mkdirSync(dir, { recursive: true });
    const out = join(dir, `${started.toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(out, JSON.stringify(result, null, 2));

    console.log(`\nclickfold bench, ${started.toISOString()}, ${m.nproc} x ${m.cpuModel}, ${m.memoryGiB} GiB, node ${m.node}${s.quick ? ' (--quick)' : ''}`);
    console.log(`load average ${m.loadavg.join(' ')} before, ${after.loadavg.join(' ')} after; other processes used ${before.others}% of a core just before\n`);
    console.log(table(figures));
    console.log(`\nwritten to ${out} (${result.seconds} s)`);
  } catch (err) {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exitCode = 1;
  } finally {
    await cleanup();
    process.off('SIGINT', interrupted);
  }
}

/** Fold throughput with transactions over without, same run. */
function transactionCost(tx: Figure, plain: Figure): Figure {
  const median = (f: Figure) => (typeof f.value === 'number' ? f.value : typeof f.value === 'string' ? NaN : f.value.median);
  return {
    key: 'fold.transactionsRatio',
    what: 'fold throughput in transactions / without (exactly-once transitions, what they cost)',
    unit: 'x',
    value: round(median(tx) / median(plain), 2),
  };
}

/** `f`, retried for a few seconds (a fresh broker answers UNKNOWN_TOPIC_OR_PARTITION for a moment). */
async function retrying(f: () => Promise<void>): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await f();
    } catch (err) {
      if (attempt === 20) throw err;
      await sleep(250);
    }
  }
}

/** Deletes the project's topics and creates them again, empty. */
async function recreateTopics(kafkaClient: ReturnType<typeof createKafka>, partitions: number): Promise<void> {
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
      await ensureTopics(kafkaClient, partitions, 1);
      return;
    } catch (err) {
      // A deleted topic can take a moment to be gone everywhere (TOPIC_ALREADY_EXISTS meanwhile).
      if (attempt === 20) throw err;
      await sleep(250);
    }
  }
}

main()
  .catch((err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exitCode = 1;
  })
  .finally(() => setTimeout(() => process.exit(process.exitCode ?? 0), 100).unref());
