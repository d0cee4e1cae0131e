/**
 * Click to the page's own `stages` callback under the load of --click-rate (5,000 events/s by
 * default). The load generator speaks the add-on's protocol (tracker-snippet/src/stages.ts): each
 * probe is a new visitor with an id as the snippet makes it that opens `GET /v1/me/stream` as EventSource
 * would, waits for its first map (the stream is in place), sends its batch (intro, detail and
 * purchase of a product: `probeBatch`) and times from sending the POST to the message in which
 * the product stands at purchase, which is when the add-on calls the page's callback. Meanwhile
 * the scenario's visitors send the background load.
 *
 * `all-in-one`: apps/all-in-one-app.ts startApp on Kafka and Redis (ingest, worker and the visitor
 * API share one event loop); `split`: an ingest process that also serves the visitor API (reading
 * Redis, following history.transitions with a group of its own) and a worker process.
 * clicks.raw must be empty when it starts (the all-in-one app's group reads it from the beginning).
 */
import { randomBytes } from 'node:crypto';
import { Agent, request, type ClientRequest } from 'node:http';
import { CONTENT_TYPE, createScenario, probeBatch } from '../../load/scenario.js';
import { roles, type Harness } from '../harness.js';
import { cpuMeter, loopDelayOf, now, pacedLoad, percentile, sleep, spread, type CpuReport, type Proc } from '../lib.js';
import { cpuNote, log, middle, round, type Figure } from '../report.js';
import type { Settings, Topology } from '../settings.js';
import { meets, targetText, TARGETS } from '../targets.js';
import { INGEST_NODE_FLAGS } from '../../apps/shared/node-flags.js';

export type ClickToCallbackOptions = Pick<
  Settings,
  'runs' | 'partitions' | 'clickRate' | 'latencyWindowSeconds' | 'latencyWarmSeconds' | 'pacedConnections' | 'consumer'
>;

export interface ClickToCallbackResult {
  key: string;
  figures: { p50: Figure; p99: Figure };
  details: Record<string, unknown>;
}

/** Probes started per second, beside the load (each is one more request of 10 events). */
const PROBES_PER_SECOND = 10;
/** A probe whose purchase has not arrived by then counts as missing. */
const PROBE_TIMEOUT_MS = 5000;

/** A visitor id as the snippet makes it: 128 random bits, four 32-bit numbers as digits. */
const visitorId = () => {
  const bytes = randomBytes(16);
  return [0, 4, 8, 12].map((i) => bytes.readUInt32LE(i)).join('');
};

interface Probe {
  stream: ClientRequest;
  done: Promise<number | undefined>;
}

/** Why probes went missing, by reason (printed with the figures). */
const failures: Record<string, number> = {};
/** Per probe, ms: stream opened to its first map, and POST sent to its 202 (where the time goes). */
const phases = { firstMap: [] as number[], accepted: [] as number[] };

/**
 * One probe: stream first, then the POST once the stream's first map came; resolves with the
 * milliseconds from the POST to the map with purchase, or undefined when it did not come.
 */
function probe(port: number, agent: Agent): Probe {
  const visitor = visitorId();
  const topic = 'product:sku-probe';
  let resolve!: (ms: number | undefined) => void;
  const done = new Promise<number | undefined>((r) => (resolve = r));
  let sentAt = 0;
  let finished = false;
  const finish = (ms: number | undefined, why?: string) => {
    if (finished) return;
    finished = true;
    if (ms === undefined) failures[why ?? 'timeout'] = (failures[why ?? 'timeout'] ?? 0) + 1;
    clearTimeout(timer);
    stream.destroy();
    resolve(ms);
  };
  const timer = setTimeout(() => finish(undefined, sentAt ? 'no purchase in time' : 'no first map in time'), PROBE_TIMEOUT_MS);
  const post = () => {
    const b = probeBatch(visitor, Date.now());
    const body = JSON.stringify(b.body);
    sentAt = now();
    const req = request(
      { agent, host: '127.0.0.1', port, path: '/v1/collect', method: 'POST', headers: { 'content-type': CONTENT_TYPE, 'user-agent': b.userAgent } },
      (res) => {
        res.resume();
        if (res.statusCode !== 202) finish(undefined, `POST ${res.statusCode}`);
        else phases.accepted.push(now() - sentAt);
      },
    );
    req.on('error', (err) => finish(undefined, `POST ${err.message}`));
    req.end(body);
  };
  // Its own connection, as a browser's EventSource has.
  const openedAt = now();
  const stream = request({ host: '127.0.0.1', port, path: `/v1/me/stream?site=demo&visitor=${visitor}`, headers: { accept: 'text/event-stream' } }, (res) => {
    if (res.statusCode !== 200) return finish(undefined, `stream ${res.statusCode}`);
    let buf = '';
    let first = true;
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const line = block.split('\n').find((l) => l.startsWith('data: '));
        if (!line) continue;
        if (first) {
          first = false;
          phases.firstMap.push(now() - openedAt);
          post();
        } else if ((JSON.parse(line.slice(6)) as { stages: Record<string, string> }).stages[topic] === 'purchase') {
          finish(now() - sentAt);
        }
      }
    });
  });
  stream.on('error', (err) => finish(undefined, `stream ${err.message}`));
  stream.end();
  return { stream, done };
}

export async function measureClickToCallback(h: Harness, o: ClickToCallbackOptions, topology: Topology): Promise<ClickToCallbackResult> {
  const { kafka, redis } = h.services;
  const started: Proc[] = [];
  let p: Proc;
  if (topology === 'all-in-one') {
    p = await h.start('app', { brokers: kafka.brokers, redisUrl: redis.url, groupId: `bench-cb-${Date.now()}`, ns: 'cb:', partitions: o.partitions });
    started.push(p);
  } else {
    const w = await h.start('worker', {
      brokers: kafka.brokers,
      redisUrl: redis.url,
      groupId: `bench-cb-worker-${Date.now()}`,
      ns: 'cbsplit:',
      consumer: o.consumer,
    });
    p = await h.start('ingest', { brokers: kafka.brokers, partitions: o.partitions, redisUrl: redis.url, ns: 'cbsplit:' }, [...INGEST_NODE_FLAGS]);
    started.push(p, w);
  }
  const scenario = createScenario({ seed: 91 });
  const load = (seconds: number) =>
    pacedLoad({
      port: p.port!,
      path: '/v1/collect',
      rate: o.clickRate,
      seconds,
      connections: o.pacedConnections,
      next: () => {
        const b = scenario.nextBatch(Date.now());
        return { body: JSON.stringify(b.body), headers: { 'content-type': CONTENT_TYPE, 'user-agent': b.userAgent } };
      },
    });
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  /** Probes at PROBES_PER_SECOND for `seconds`, beside the load; their latencies, and how many did not arrive. */
  const probes = async (seconds: number): Promise<{ lat: number[]; missing: number }> => {
    const all: Promise<number | undefined>[] = [];
    const until = Date.now() + seconds * 1000;
    while (Date.now() < until) {
      all.push(probe(p.port!, agent).done);
      await sleep(1000 / PROBES_PER_SECOND);
    }
    const got = await Promise.all(all);
    const lat = got.filter((x): x is number => x !== undefined).sort((a, b) => a - b);
    return { lat, missing: got.length - lat.length };
  };

  // Warm up until a probe comes back (the consumer groups have joined), then a few seconds more.
  const warmUntil = Date.now() + 60_000;
  let warm = { lat: [] as number[], missing: 0 };
  while (warm.lat.length === 0 && Date.now() < warmUntil) [, warm] = await Promise.all([load(2), probes(2)]);
  if (warm.lat.length === 0) log(`no probe came back in the warm-up: ${JSON.stringify(failures)}`);
  await Promise.all([load(o.latencyWarmSeconds), probes(o.latencyWarmSeconds)]);
  await sleep(500);
  // Only the measured windows' failures and phases are reported.
  for (const k of Object.keys(failures)) delete failures[k];
  phases.firstMap.length = phases.accepted.length = 0;

  const p50s: number[] = [];
  const p99s: number[] = [];
  const pooled: number[] = [];
  const cpus: CpuReport[] = [];
  let missing = 0;
  for (let w = 0; w < o.runs; w++) {
    const meter = cpuMeter(roles(h.services, topology === 'all-in-one' ? { app: p } : { ingest: p, worker: started[1] }));
    const [r, pr] = await Promise.all([load(o.latencyWindowSeconds), probes(o.latencyWindowSeconds)]);
    cpus.push(meter.stop());
    missing += pr.missing;
    pooled.push(...pr.lat);
    p50s.push(percentile(pr.lat, 50));
    p99s.push(percentile(pr.lat, 99));
    if (r.statuses['202'] !== r.sent) log(`callback window ${w}: ${JSON.stringify(r.statuses)} errors ${r.errors}`);
    await sleep(500);
  }
  pooled.sort((a, b) => a - b);
  const firstMap = [...phases.firstMap].sort((a, b) => a - b);
  const accepted = [...phases.accepted].sort((a, b) => a - b);
  const phaseNote = `stream open to first map p50 ${round(percentile(firstMap, 50), 1)} / p99 ${round(percentile(firstMap, 99), 1)} ms, POST to 202 p50 ${round(percentile(accepted, 50), 1)} / p99 ${round(percentile(accepted, 99), 1)} ms`;
  const loops = await Promise.all(started.map((s) => loopDelayOf(s)));
  const stopped = [];
  for (const s of started) stopped.push(await s.stop());
  agent.destroy();

  const key = topology === 'all-in-one' ? 'clickToCallback' : 'clickToCallbackSplit';
  const p99 = spread(p99s.map((x) => round(x, 1)));
  const target = TARGETS.callbackP99;
  return {
    key,
    figures: {
      p50: {
        key: `${key}.p50`,
        what: `click to the page's stages callback, ${topology}, at ${(o.clickRate * 10).toLocaleString('en-US')} events/s, p50 (POST sent -> /v1/me/stream message)`,
        unit: 'ms',
        value: spread(p50s.map((x) => round(x, 1))),
      },
      p99: {
        key: `${key}.p99`,
        what: `click to the page's stages callback, ${topology}, p99 (${pooled.length} probes in ${o.runs} windows, ${missing} missing)`,
        unit: 'ms',
        value: p99,
        target: targetText(target),
        ok: meets(target, p99.median) && missing === 0,
        note: `${missing ? `missing: ${JSON.stringify(failures)}; ` : ''}${phaseNote}; pooled p50 ${round(percentile(pooled, 50), 1)}, p99 ${round(percentile(pooled, 99), 1)}, max ${round(pooled[pooled.length - 1] ?? NaN, 1)}; event-loop delay p99 / max ${loops.map((l) => (l ? `${l.p99} / ${l.max}` : 'n/a')).join(', ')} ms; ${cpuNote(middle(cpus))}`,
      },
    },
    details: { [key]: { probes: pooled.length, missing, failures: { ...failures }, firstMap, accepted, processes: stopped } },
  };
}
