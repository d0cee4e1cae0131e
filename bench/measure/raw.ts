/**
 * The floor of ingest: the kafkajs producer alone (`bench/proc.ts raw`), with the project's
 * settings, sending the prepared records (the same records, keys and settings ingest produces).
 * `send10`: what ingest does without batching, one 10-record send per HTTP request, many at once;
 * `batch`: the producer's best, large sends back to back. The `batch` topics are what the fold
 * measurement then consumes.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { roles, type Harness } from '../harness.js';
import { cpuMeter, spread, type CpuReport, type Proc, type Spread } from '../lib.js';
import type { Prepared } from '../records.js';
import { cpuNote, cpuPerEvent, middle, round, type Figure } from '../report.js';
import type { Settings } from '../settings.js';
import { meets, targetText, TARGETS } from '../targets.js';

export type RawOptions = Pick<Settings, 'runs' | 'connections' | 'partitions' | 'send10Records'>;

export interface RawResult {
  /** The better of the two modes' medians, events/s. */
  best: number;
  /** The topics the `batch` runs filled, one per run. */
  topics: string[];
  figures: { send10: Figure; batch: Figure; batchCpu: Figure };
}

export async function measureRaw(h: Harness, o: RawOptions, records: Pick<Prepared, 'file' | 'records'>): Promise<RawResult> {
  const modes = [
    // What ingest does without batching: one 10-record send per HTTP request, many at once.
    { name: 'send10', requestSize: 10, concurrency: o.connections, limit: Math.min(records.records, o.send10Records) },
    // The producer's best: large sends back to back (two at once, so one is built while the other flies).
    { name: 'batch', requestSize: 2000, concurrency: 2, limit: records.records },
  ] as const;
  const figures: Partial<RawResult['figures']> = {};
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
      const topic = `bench.raw.${m.name}.${Date.now()}`;
      let p: Proc | undefined;
      const meter = cpuMeter(roles(h.services, { producer: undefined }, () => ({ producer: p })));
      p = await h.start('raw', {
        brokers: h.services.kafka.brokers,
        partitions: o.partitions,
        topic,
        records: file,
        requestSize: m.requestSize,
        concurrency: m.concurrency,
      });
      const r = (await p.result) as { eventsPerSecond: number };
      cpus.push(meter.stop());
      await p.stop();
      rates.push(r.eventsPerSecond);
      if (m.name === 'batch') topics.push(topic);
    }
    best[m.name] = spread(rates);
    figures[m.name] = {
      key: `raw.${m.name}`,
      what:
        m.name === 'send10' ? `raw kafkajs producer, 10 records per send, ${m.concurrency} at once` : `raw kafkajs producer, ${m.requestSize} records per send`,
      unit: 'events/s',
      value: best[m.name]!,
      note: cpuNote(middle(cpus)),
    };
    if (m.name === 'batch')
      figures.batchCpu = {
        key: 'raw.cpu',
        what: `raw kafkajs producer (${m.requestSize} per send): its process CPU per event`,
        unit: 'µs/event',
        value: spread(rates.map((r, i) => cpuPerEvent(cpus[i]!, 'producer', r))),
      };
  }
  return { best: Math.max(best.batch!.median, best.send10!.median), topics, figures: figures as RawResult['figures'] };
}

/** Ingest's throughput over the raw producer's best, same records, same run. */
export function ingestRatio(ingestEventsPerSecond: number, rawBest: number): { ratio: number; figure: Figure } {
  const ratio = ingestEventsPerSecond / rawBest;
  return {
    ratio,
    figure: {
      key: 'ingest.ratio',
      what: 'ingest / raw producer (best raw mode), same records, same run',
      unit: 'x',
      value: round(ratio, 2),
      target: targetText(TARGETS.ratio),
      ok: meets(TARGETS.ratio, ratio),
    },
  };
}
