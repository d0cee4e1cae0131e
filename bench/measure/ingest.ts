/**
 * Ingest: `bench/proc.ts ingest` (createIngestApp + KafkaLogProducer) under autocannon playing the
 * scenario (throughput, 202 responses x 10), then its latency at half the throughput just
 * measured: autocannon's overallRate (bursty) and the open-loop paced generator; then the producer
 * alone at the same paced rate (bench/proc.ts raw with `rate`), the floor of that latency.
 */
import { CONTENT_TYPE, createScenario } from '../../load/scenario.js';
import { cannon, responses } from '../cannon.js';
import { roles, type Harness, type Profiler } from '../harness.js';
import type { ProducerClient } from '../../lib/kafka/producer.js';
import { cpuMeter, loopDelayOf, pacedLoad, resetLoopDelay, spread, type CpuReport, type PacedResult, type Proc } from '../lib.js';
import type { LoopDelay } from '../proc.js';
import type { ProfileSummary } from '../profile.js';
import { cpuNote, cpuPerEvent, middle, type Figure } from '../report.js';
import type { Settings } from '../settings.js';
import { meets, targetText, TARGETS } from '../targets.js';
import { INGEST_NODE_FLAGS } from '../../apps/shared/node-flags.js';

export type IngestOptions = Pick<Settings, 'runs' | 'ingestSeconds' | 'halfLoadSeconds' | 'connections' | 'pacedConnections' | 'partitions'>;

export interface IngestResult {
  client: ProducerClient;
  /** Median throughput, events/s (acknowledged). */
  eventsPerSecond: number;
  /** Median CPU of the ingest process per event at full load, µs. */
  cpuPerEvent: number;
  figures: {
    throughput: Figure;
    cpu: Figure;
    halfLoadAutocannon: Figure;
    producerPaced: Figure;
    halfLoadP50: Figure;
    halfLoadP99: Figure;
    loopDelay: Figure;
  };
  details: Record<string, { halfLoadPaced: PacedResult[]; producer: unknown; cpu: CpuReport[]; eventLoopDelayMs: Record<string, LoopDelay | undefined> }>;
  profile?: ProfileSummary;
}

/**
 * `client`: the producer's (KAFKA_PRODUCER). Figure keys are `ingest.*` for kafkajs (the default)
 * and `ingest.<client>.*` for the other, so that both are measured side by side.
 */
export async function measureIngest(
  h: Harness,
  o: IngestOptions,
  records: string,
  profiler?: Profiler,
  client: ProducerClient = 'kafkajs',
): Promise<IngestResult> {
  const k = client === 'kafkajs' ? 'ingest' : `ingest.${client}`;
  const on = client === 'kafkajs' ? '' : ` (${client} producer)`;
  const p = await h.start('ingest', { brokers: h.services.kafka.brokers, partitions: o.partitions, client }, [
    ...INGEST_NODE_FLAGS,
    ...(profiler?.args(`ingest-${client}`) ?? []),
  ]);
  await cannon(p.port!, o.connections, 3, 1); // warm-up: JIT, Kafka connections, metadata
  const loops: Record<string, LoopDelay | undefined> = {};
  resetLoopDelay(p);
  const rates: number[] = [];
  const cpus: CpuReport[] = [];
  const non202: number[] = [];
  for (let i = 0; i < o.runs; i++) {
    const meter = cpuMeter(roles(h.services, { ingest: p }));
    const r = await cannon(p.port!, o.connections, o.ingestSeconds, 10 + i);
    cpus.push(meter.stop());
    rates.push((responses(r, '202') * 10) / r.duration);
    non202.push(r.requests.total - responses(r, '202') + r.errors);
  }
  loops.fullLoad = await loopDelayOf(p);
  const max = spread(rates);
  const throughput: Figure = {
    key: `${k}.throughput`,
    what: `ingest${on} into Kafka, acknowledged (202 x 10), ${o.connections} connections`,
    unit: 'events/s',
    value: max,
    target: targetText(TARGETS.ingest),
    ok: meets(TARGETS.ingest, max.median),
    note: `${cpuNote(middle(cpus))}; not 202: ${non202.join('/')}`,
  };
  const cpuSpread = spread(rates.map((r, i) => cpuPerEvent(cpus[i]!, 'ingest', r)));
  const cpu: Figure = {
    key: `${k}.cpu`,
    what: `ingest${on}: its process CPU per event at full load`,
    unit: 'µs/event',
    value: cpuSpread,
  };

  // Latency at half the load just measured: autocannon's overallRate, and an open-loop paced
  // generator (autocannon's rate limit sends each connection's quota at the start of every second).
  const half = Math.round(max.median / 10 / 2);
  resetLoopDelay(p);
  const acMeter = cpuMeter(roles(h.services, { ingest: p }));
  const ac = await cannon(p.port!, o.connections, o.halfLoadSeconds, 20, { overallRate: half, connections: 50 });
  const acCpu = acMeter.stop();
  const halfLoadAutocannon: Figure = {
    key: `${k}.halfLoad.autocannon`,
    what: `ingest${on} latency at half load (${half} req/s = ${(half * 10).toLocaleString('en-US')} events/s), autocannon overallRate, p50 / p99`,
    unit: 'ms',
    value: `${ac.latency.p50} / ${ac.latency.p99}`,
    target: targetText(TARGETS.ingestP99, 'p99 '),
    ok: meets(TARGETS.ingestP99, ac.latency.p99),
    note: `bursty: each connection sends its per-second quota at once; ${cpuNote(acCpu)}`,
  };
  loops.halfLoadAutocannon = await loopDelayOf(p);
  const p50s: number[] = [];
  const p99s: number[] = [];
  resetLoopDelay(p);
  const pacedCpu: CpuReport[] = [];
  const scenario = createScenario({ seed: 30 });
  const pacedRuns: PacedResult[] = [];
  for (let i = 0; i < o.runs; i++) {
    const meter = cpuMeter(roles(h.services, { ingest: p }));
    const r = await pacedLoad({
      port: p.port!,
      path: '/v1/collect',
      rate: half,
      seconds: o.halfLoadSeconds,
      connections: o.pacedConnections,
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
  loops.halfLoadPaced = await loopDelayOf(p);
  const p99 = spread(p99s);
  const result = (await p.stop()) as { producer?: unknown } | undefined;
  const lp = loops.halfLoadPaced;

  // The same paced rate without HTTP: ingest's producer alone, 10 records per send (the part of
  // ingest's tail that is the producer's and the broker's, not ingest's own).
  const floorP50s: number[] = [];
  const floorP99s: number[] = [];
  const floorCpu: CpuReport[] = [];
  for (let i = 0; i < o.runs; i++) {
    let f: Proc | undefined;
    const meter = cpuMeter(roles(h.services, { producer: undefined }, () => ({ producer: f })));
    f = await h.start(
      'raw',
      {
        brokers: h.services.kafka.brokers,
        partitions: o.partitions,
        topic: `bench.paced.${client}.${Date.now()}`,
        records,
        requestSize: 10,
        concurrency: 1,
        rate: half,
        seconds: o.halfLoadSeconds,
        client,
      },
      [...INGEST_NODE_FLAGS],
    );
    const r = (await f.result) as { p50: number; p99: number; failed: number; firstError?: string };
    floorCpu.push(meter.stop());
    await f.stop();
    if (r.failed > 0) throw new Error(`the paced producer had ${r.failed} failed sends: ${r.firstError}`);
    floorP50s.push(r.p50);
    floorP99s.push(r.p99);
  }
  const floorP99 = spread(floorP99s);
  const floorP50 = spread(floorP50s);
  return {
    client,
    eventsPerSecond: max.median,
    cpuPerEvent: cpuSpread.median,
    figures: {
      throughput,
      cpu,
      halfLoadAutocannon,
      halfLoadP50: { key: `${k}.halfLoad.p50`, what: `ingest${on} latency at half load, paced open loop, p50`, unit: 'ms', value: spread(p50s) },
      halfLoadP99: {
        key: `${k}.halfLoad.p99`,
        what: `ingest${on} latency at half load, paced open loop, p99`,
        unit: 'ms',
        value: p99,
        target: targetText(TARGETS.ingestP99),
        ok: meets(TARGETS.ingestP99, p99.median),
        note: cpuNote(middle(pacedCpu)),
      },
      producerPaced: {
        key: `${k}.halfLoad.producerP99`,
        what: `raw ${client} producer alone at the same paced rate (${half} sends/s of 10 records), p99 (p50 ${floorP50.median.toFixed(1)} ms)`,
        unit: 'ms',
        value: floorP99,
        note: `the floor of ingest's p99 at half load: its producer and the broker without HTTP; ${cpuNote(middle(floorCpu))}`,
      },
      loopDelay: {
        key: `${k}.halfLoad.loopDelay`,
        what: `ingest${on} event-loop delay at half load, paced, p50 / p99 / max`,
        unit: 'ms',
        value: lp ? `${lp.p50} / ${lp.p99} / ${lp.max}` : 'n/a',
        note: `full load: ${fmtLoop(loops.fullLoad)}; autocannon half load: ${fmtLoop(loops.halfLoadAutocannon)}`,
      },
    },
    details: { [k]: { halfLoadPaced: pacedRuns, producer: result?.producer, cpu: cpus, eventLoopDelayMs: loops } },
    profile: profiler?.latest(`ingest-${client}`),
  };
}

const fmtLoop = (l: LoopDelay | undefined) => (l ? `p50 ${l.p50}, p99 ${l.p99}, max ${l.max} ms` : 'n/a');
