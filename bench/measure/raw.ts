/**
 * The floor of ingest: a producer alone (`bench/proc.ts raw`), kafkajs and @platformatic/kafka
 * side by side (KAFKA_PRODUCER's two clients), each with the project's settings, sending the prepared records (the same records, keys and settings ingest produces).
 * `send10`: what ingest does without batching, one 10-record send per HTTP request, many at once;
 * `batch`: the producer's best, large sends back to back. The `batch` topics are what the fold
 * measurement then consumes (kafkajs's, the default client's). Figure keys: `raw.*` for kafkajs,
 * `raw.platformatic.*` for the other.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { roles, type Harness } from '../harness.js';
import { cpuMeter, spread, type CpuReport, type Proc, type Spread } from '../lib.js';
import type { Prepared } from '../records.js';
import { cpuNote, cpuPerEvent, middle, round, type Figure } from '../report.js';
import type { Settings } from '../settings.js';
import { meets, targetText, TARGETS } from '../targets.js';
import type { ProducerClient } from '../../lib/kafka/producer.js';
import { INGEST_NODE_FLAGS } from '../../apps/shared/node-flags.js';

export type RawOptions = Pick<Settings, 'runs' | 'connections' | 'partitions' | 'send10Records' | 'producers'>;

export interface RawResult {
  /** Per client: the better of the two modes' medians, events/s, and the `batch` mode's CPU per event (µs). */
  byClient: Partial<Record<ProducerClient, { best: number; cpuPerEvent: number }>>;
  /** The topics kafkajs's `batch` runs filled (else the other client's), one per run. */
  topics: string[];
  figures: Figure[];
}

export async function measureRaw(h: Harness, o: RawOptions, records: Pick<Prepared, 'file' | 'records'>): Promise<RawResult> {
  const byClient: RawResult['byClient'] = {};
  const figures: Figure[] = [];
  let topics: string[] = [];
  for (const client of o.producers) {
    const r = await measureClient(h, o, records, client);
    byClient[client] = { best: r.best, cpuPerEvent: r.cpuPerEvent };
    figures.push(r.figures.send10, r.figures.batch, r.figures.batchCpu);
    if (topics.length === 0 || client === 'kafkajs') topics = r.topics;
  }
  return { byClient, topics, figures };
}

async function measureClient(
  h: Harness,
  o: RawOptions,
  records: Pick<Prepared, 'file' | 'records'>,
  client: ProducerClient,
): Promise<{ best: number; cpuPerEvent: number; topics: string[]; figures: { send10: Figure; batch: Figure; batchCpu: Figure } }> {
  const prefix = client === 'kafkajs' ? 'raw' : `raw.${client}`;
  // @platformatic/kafka's idempotent producer numbers a request's records from the last sequence
  // acknowledged, so it must never have two sends in flight (they would share sequence numbers):
  // its modes send one at a time, the way KafkaLogProducer drives it.
  const oneAtATime = client === 'platformatic';
  const modes = [
    // What ingest does without batching: one 10-record send per HTTP request, many at once.
    { name: 'send10', requestSize: 10, concurrency: oneAtATime ? 1 : o.connections, limit: Math.min(records.records, o.send10Records) },
    // The producer's best: large sends back to back (two at once, so one is built while the other flies).
    { name: 'batch', requestSize: 2000, concurrency: oneAtATime ? 1 : 2, limit: records.records },
  ] as const;
  const figures: Partial<{ send10: Figure; batch: Figure; batchCpu: Figure }> = {};
  let cpuPerEventMedian = NaN;
  const best: Record<string, Spread> = {};
  const topics: string[] = [];
  for (const m of modes) {
    let file = records.file;
    if (m.limit < records.records) {
      file = records.file.replace(/\.tsv$/, `.${m.limit}.tsv`);
      writeFileSync(file, `${readFileSync(records.file, 'utf8').split('\n').slice(0, m.limit).join('\n')}\n`);
    }
    const rates: number[] = [];
    const cpus: CpuReport[] = [];
    for (let i = 0; i < o.runs; i++) {
      const topic = `bench.raw.${client}.${m.name}.${Date.now()}`;
      let p: Proc | undefined;
      const meter = cpuMeter(roles(h.services, { producer: undefined }, () => ({ producer: p })));
      // Under ingest's V8 flags, as the process it is the floor of.
      p = await h.start(
        'raw',
        {
          brokers: h.services.kafka.brokers,
          partitions: o.partitions,
          topic,
          records: file,
          requestSize: m.requestSize,
          concurrency: m.concurrency,
          client,
        },
        [...INGEST_NODE_FLAGS],
      );
      const r = (await p.result) as { eventsPerSecond: number };
      cpus.push(meter.stop());
      await p.stop();
      rates.push(r.eventsPerSecond);
      if (m.name === 'batch') topics.push(topic);
    }
    best[m.name] = spread(rates);
    figures[m.name] = {
      key: `${prefix}.${m.name}`,
      what:
        m.name === 'send10'
          ? `raw ${client} producer, 10 records per send, ${m.concurrency} at once`
          : `raw ${client} producer, ${m.requestSize} records per send`,
      unit: 'events/s',
      value: best[m.name]!,
      note: cpuNote(middle(cpus)),
    };
    if (m.name === 'batch') {
      const cpu = spread(rates.map((r, i) => cpuPerEvent(cpus[i]!, 'producer', r)));
      cpuPerEventMedian = cpu.median;
      figures.batchCpu = {
        key: `${prefix}.cpu`,
        what: `raw ${client} producer (${m.requestSize} per send): its process CPU per event`,
        unit: 'µs/event',
        value: cpu,
      };
    }
  }
  return {
    best: Math.max(best.batch!.median, best.send10!.median),
    cpuPerEvent: cpuPerEventMedian,
    topics,
    figures: figures as { send10: Figure; batch: Figure; batchCpu: Figure },
  };
}

/** Ingest's throughput over the raw producer's best (the same client's), same records, same run. */
export function ingestRatio(ingestEventsPerSecond: number, rawBest: number, client: ProducerClient = 'kafkajs'): { ratio: number; figure: Figure } {
  const ratio = ingestEventsPerSecond / rawBest;
  return {
    ratio,
    figure: {
      key: client === 'kafkajs' ? 'ingest.ratio' : `ingest.${client}.ratio`,
      what: `ingest / raw producer (best raw mode), ${client}, same records, same run`,
      unit: 'x',
      value: round(ratio, 2),
      target: targetText(TARGETS.ratio),
      ok: meets(TARGETS.ratio, ratio),
    },
  };
}
