/**
 * Where the worker's CPU goes, in µs per event: the consumer alone (`bench/proc.ts fold` with a
 * no-op handler) on the same records, the worker's steps without any I/O (`bench/proc.ts parts`),
 * and the whole worker (the fold runs).
 */
import type { Harness } from '../harness.js';
import { spread } from '../lib.js';
import type { Prepared } from '../records.js';
import { round, type Figure } from '../report.js';
import type { Settings } from '../settings.js';

export type FoldBreakdownOptions = Pick<Settings, 'consumer'>;

export interface FoldBreakdownResult {
  figures: { steps: Figure[]; consumerOnly: Figure };
  details: { foldBreakdown: { microsecondsPerEvent: Record<string, number>; consumerOnlyEventsPerSecond: number } };
}

/** `topic`: one the fold consumed; `foldRuns`: the fold's runs (their worker CPU). */
export async function measureFoldBreakdown(
  h: Harness,
  o: FoldBreakdownOptions,
  topic: string,
  prepared: Prepared,
  foldRuns: { cpuSeconds: number }[],
): Promise<FoldBreakdownResult> {
  const noop = await h.start('fold', {
    brokers: h.services.kafka.brokers,
    redisUrl: h.services.redis.url,
    topic,
    groupId: `bench-noop-${Date.now()}`,
    ns: 'noop:',
    expected: prepared.records,
    noop: true,
    consumer: o.consumer,
  });
  const consumerOnly = (await noop.result) as { eventsPerSecond: number; cpuSeconds: number };
  await noop.stop();
  const parts = await h.start('parts', { records: prepared.file, redisUrl: h.services.redis.url });
  const steps = (await parts.result) as Record<string, number>;
  await parts.stop();
  const fullCpu = foldRuns.map((r) => (r.cpuSeconds / prepared.records) * 1e6);
  const breakdown: Record<string, number> = {
    'KafkaLogConsumer alone (fetch, decode, commit; no-op handler)': (consumerOnly.cpuSeconds / prepared.records) * 1e6,
    ...steps,
    'whole worker on Kafka + Redis (the fold runs above)': spread(fullCpu).median,
  };
  return {
    figures: {
      steps: Object.entries(breakdown).map(([name, us]) => ({
        key: `fold.cpu.${name}`,
        what: `fold CPU breakdown: ${name}`,
        unit: 'µs/event',
        value: round(us, 1),
      })),
      consumerOnly: {
        key: 'fold.consumerOnly',
        what: 'KafkaLogConsumer alone (no-op handler), same records',
        unit: 'events/s',
        value: round(consumerOnly.eventsPerSecond),
      },
    },
    details: { foldBreakdown: { microsecondsPerEvent: breakdown, consumerOnlyEventsPerSecond: consumerOnly.eventsPerSecond } },
  };
}
