/**
 * Click to queryable stage under the load of --click-rate (5,000 events/s by default, the
 * target's). `all-in-one`: apps/all-in-one-app.ts startApp on Kafka and Redis (ingest, worker and
 * query API share one event loop); `split`: the real stack's ingest process and a worker process.
 * One request in ten is a probe (a new visitor walking a product to purchase); probes are
 * timestamped when the worker's handler hands their transitions to onTransitions (after the Redis
 * write and the publish), cross-checked by polling GET /v1/people for a tenth of them (all-in-one
 * only: the split stack has no query API here). clicks.raw must be empty when it starts (the
 * all-in-one app's group reads it from the beginning).
 */
import { Agent, request } from 'node:http';
import { CONTENT_TYPE, createScenario, probeBatch } from '../../load/scenario.js';
import { roles, type Harness } from '../harness.js';
import { BENCH_AUDIENCE, cpuMeter, loopDelayOf, now, pacedLoad, percentile, resetLoopDelay, sleep, spread, type CpuReport, type Proc } from '../lib.js';
import type { LoopDelay } from '../proc.js';
import { cpuNote, log, middle, round, type Figure } from '../report.js';
import type { Settings, Topology } from '../settings.js';
import { meets, targetText, TARGETS } from '../targets.js';
import { INGEST_NODE_FLAGS } from '../../apps/shared/node-flags.js';

export type ClickToStageOptions = Pick<
  Settings,
  'runs' | 'partitions' | 'clickRate' | 'latencyWindowSeconds' | 'latencyWarmSeconds' | 'pacedConnections' | 'consumer'
>;

export interface ClickToStageDetails {
  processes: unknown[];
  /** Event-loop delay over the measured windows: the app, or ingest then the worker. */
  eventLoopDelayMs: (LoopDelay | undefined)[];
  probes: number;
  missing: number;
  pooled: { p50: number; p90: number; p99: number; max: number | undefined };
  polled: { probes: number; p50: number; p99: number };
  ingestP99: number;
}

export interface ClickToStageResult {
  /** `clickToStage` (all-in-one) or `clickToStageSplit`: the key of its figures and details. */
  key: string;
  figures: { p50: Figure; p99: Figure };
  details: ClickToStageDetails;
}

/**
 * `transactions`: whether the worker publishes and commits in Kafka transactions
 * (WORKER_TRANSACTIONS=true; figure keys end in `Tx`), for what they cost; by default the plain
 * path, the product's default.
 */
export async function measureClickToStage(
  h: Harness,
  o: ClickToStageOptions,
  topology: Topology,
  transactions = false,
  /** All-in-one only: time probes to their `entered` event of an audience of buyers (`clickToEntered`), polling its members list. */
  audience = false,
): Promise<ClickToStageResult> {
  const { kafka, redis } = h.services;
  const started: Proc[] = [];
  let p: Proc;
  if (topology === 'all-in-one') {
    p = await h.start('app', {
      brokers: kafka.brokers,
      redisUrl: redis.url,
      groupId: `bench-app-${Date.now()}`,
      ns: 'lat:',
      partitions: o.partitions,
      transactions,
      audience,
    });
    started.push(p);
  } else {
    const w = await h.start('worker', {
      brokers: kafka.brokers,
      redisUrl: redis.url,
      groupId: `bench-worker-${Date.now()}`,
      ns: 'split:',
      consumer: { ...o.consumer, transactional: transactions },
    });
    p = await h.start('ingest', { brokers: kafka.brokers, partitions: o.partitions }, [...INGEST_NODE_FLAGS]);
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
    // The person's stage, or (audience) the audience's members, most recent entries first.
    const path = audience ? `/v1/audiences/${BENCH_AUDIENCE}/members?limit=1000` : `/v1/people/${person}`;
    const found = (body: string) => (audience ? body.includes(`"person":"${person}"`) : body.includes('"stage":"purchase"'));
    const once = () =>
      request({ agent: pollAgent, host: '127.0.0.1', port: p.port, path }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          if (res.statusCode === 200 && found(body)) polled.push(now() - t0);
          else if (now() < until) setTimeout(once, 1);
        });
      })
        // A poll cut by the app (a reset under load) is retried like a miss; unhandled, it would end the bench.
        .on('error', () => {
          if (now() < until) setTimeout(once, 1);
        })
        .end();
    once();
  };
  // Probe ids are new in every measurement: a later one (the same topology without transactions)
  // shares the Redis, where an id already at purchase would make no transition.
  const run = Date.now().toString(36);
  const next = (i: number, tag: string, pollEvery: number) => {
    if (i % 10 === 0) {
      const person = `probe-${run}${tag}-${probeNo++}`;
      const b = probeBatch(person, Date.now());
      const t = now();
      sentAt.set(person, t);
      if (pollEvery && topology === 'all-in-one' && probeNo % pollEvery === 0) poll(person, t);
      return { body: JSON.stringify(b.body), headers: { 'content-type': CONTENT_TYPE, 'user-agent': b.userAgent } };
    }
    const b = scenario.nextBatch(Date.now());
    return { body: JSON.stringify(b.body), headers: { 'content-type': CONTENT_TYPE, 'user-agent': b.userAgent } };
  };
  const load = (seconds: number, tag: string, pollEvery: number) =>
    pacedLoad({ port: p.port!, path: '/v1/collect', rate: o.clickRate, seconds, connections: o.pacedConnections, next: (i) => next(i, tag, pollEvery) });
  // Warm up until a probe comes back (the consumer group has joined), then a few seconds more.
  const warmUntil = Date.now() + 60_000;
  while (seen.size === 0 && Date.now() < warmUntil) await load(2, 'warm', 0);
  // Then more: the JIT of the processes (and of the broker, if this runs first) settles.
  await load(o.latencyWarmSeconds, 'warm', 0);
  await sleep(500);

  const p50s: number[] = [];
  const p99s: number[] = [];
  const all: number[] = [];
  const cpus: CpuReport[] = [];
  let missing = 0;
  let ingestP99 = 0;
  for (const s of started) resetLoopDelay(s);
  for (let w = 0; w < o.runs; w++) {
    const tag = `w${w}`;
    const meter = cpuMeter(roles(h.services, topology === 'all-in-one' ? { app: p } : { ingest: p, worker: started[1] }));
    const r = await load(o.latencyWindowSeconds, tag, 10);
    cpus.push(meter.stop());
    ingestP99 = Math.max(ingestP99, r.latency.p99);
    await sleep(1000);
    const lat: number[] = [];
    for (const [person, t] of sentAt) {
      if (!person.startsWith(`probe-${run}${tag}-`)) continue;
      const at = seen.get(person);
      if (at === undefined) missing++;
      else lat.push(at - t);
    }
    lat.sort((a, b) => a - b);
    all.push(...lat);
    p50s.push(percentile(lat, 50));
    p99s.push(percentile(lat, 99));
    if (r.statuses['202'] !== r.sent) log(`latency window ${w}: ${JSON.stringify(r.statuses)} errors ${r.errors}`);
  }
  all.sort((a, b) => a - b);
  polled.sort((a, b) => a - b);
  // Event-loop delay of each process over the measured windows (the all-in-one one: ingest, worker and API together).
  const loops = await Promise.all(started.map((s) => loopDelayOf(s)));
  const stopped = [];
  for (const s of started) stopped.push(await s.stop());
  pollAgent.destroy();
  const key = audience ? 'clickToEntered' : `${topology === 'all-in-one' ? 'clickToStage' : 'clickToStageSplit'}${transactions ? 'Tx' : ''}`;
  const how = transactions ? ', in transactions' : '';
  const p99 = spread(p99s.map((x) => round(x, 1)));
  const target = audience ? TARGETS.enteredP99 : topology === 'all-in-one' ? TARGETS.clickP99 : TARGETS.clickP99Split;
  const what = audience ? `click to \`entered\` (audience ${BENCH_AUDIENCE}), ${topology}${how}` : `click to queryable stage, ${topology}${how}`;
  const poller = audience ? `GET /v1/audiences/${BENCH_AUDIENCE}/members` : 'GET /v1/people';
  return {
    key,
    figures: {
      p50: {
        key: `${key}.p50`,
        what: `${what}, at ${(o.clickRate * 10).toLocaleString('en-US')} events/s, p50 (POST sent -> ${audience ? 'the entered event on the live feed' : 'onTransitions'})`,
        unit: 'ms',
        value: spread(p50s.map((x) => round(x, 1))),
      },
      p99: {
        key: `${key}.p99`,
        what: `${what}, p99 (${all.length} probes in ${o.runs} windows, ${missing} missing)`,
        unit: 'ms',
        value: p99,
        target: targetText(target),
        ok: meets(target, p99.median) && missing === 0,
        note: `pooled p50 ${round(percentile(all, 50), 1)}, p99 ${round(percentile(all, 99), 1)}, max ${round(all[all.length - 1] ?? NaN, 1)}; ${polled.length ? `by polling ${poller} (${polled.length} probes): p50 ${round(percentile(polled, 50), 1)}, p99 ${round(percentile(polled, 99), 1)}; ` : ''}POST p99 ${round(ingestP99, 1)}; event-loop delay p99 / max ${loops.map((l) => (l ? `${l.p99} / ${l.max}` : 'n/a')).join(', ')} ms; ${cpuNote(middle(cpus))}`,
      },
    },
    details: {
      processes: stopped,
      eventLoopDelayMs: loops,
      probes: all.length,
      missing,
      pooled: { p50: percentile(all, 50), p90: percentile(all, 90), p99: percentile(all, 99), max: all[all.length - 1] },
      polled: { probes: polled.length, p50: percentile(polled, 50), p99: percentile(polled, 99) },
      ingestP99,
    },
  };
}
