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
import { meets, targetText, TARGETS } from '../targets.js';

export type FoldBreakdownOptions = Pick<Settings, 'consumer'>;

export interface FoldBreakdownResult {
  figures: { steps: Figure[]; consumerOnly: Figure; cpuRatio: Figure };
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
  const consumerUs = (consumerOnly.cpuSeconds / prepared.records) * 1e6;
  const handlerUs = steps[REDIS_HANDLER] ?? NaN;
  const wholeUs = spread(fullCpu).median;
  const ratio = foldCpuRatio(wholeUs, consumerUs, handlerUs);
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
      cpuRatio: {
        key: 'fold.cpuRatio',
        what: 'worker CPU per event / (consumer alone + batch handler on Redis), same records',
        unit: 'x',
        value: round(ratio, 2),
        target: targetText(TARGETS.foldCpuRatio),
        ok: meets(TARGETS.foldCpuRatio, ratio),
        note: `${round(wholeUs, 1)} / (${round(consumerUs, 1)} + ${round(handlerUs, 1)}) µs per event`,
      },
    },
    details: { foldBreakdown: { microsecondsPerEvent: breakdown, consumerOnlyEventsPerSecond: consumerOnly.eventsPerSecond } },
  };
}

/** The `parts` step that is the handler's floor (bench/proc.ts). */
const REDIS_HANDLER = 'whole batch handler on Redis (RedisHistoryStore), no Kafka';

/** The whole worker's CPU per event over its floor: the consumer alone plus the handler on Redis. */
export function foldCpuRatio(wholeUs: number, consumerUs: number, handlerUs: number): number {
  return wholeUs / (consumerUs + handlerUs);
}
