/**
 * Fold throughput: one worker process (`bench/proc.ts fold`: KafkaLogConsumer + createBatchHandler
 * + RedisHistoryStore) on each topic the raw producer filled, until the group's committed offsets
 * reach the end (lag 0); Redis's own CPU per folded event and the commands per event (INFO
 * commandstats). Redis is left as the last run left it, for the collapse measurement.
 */
import { Redis } from 'ioredis';
import { roles, type Harness, type Profiler } from '../harness.js';
import { cpuMeter, spread, type CpuReport, type Proc } from '../lib.js';
import type { ProfileSummary } from '../profile.js';
import type { Prepared } from '../records.js';
import { cpuNote, middle, round, type Figure } from '../report.js';
import type { Settings } from '../settings.js';
import { meets, targetText, TARGETS } from '../targets.js';

export type FoldOptions = Pick<Settings, 'partitions' | 'consumer' | 'nullProducer'>;

interface FoldRun {
  eventsPerSecond: number;
  lag: number;
  cpuSeconds: number;
  seconds: number;
}

type CommandStats = Record<string, { calls: number; usec: number }>;

export interface FoldResult {
  figures: { throughput: Figure; redisCpu: Figure };
  details: { foldRuns: FoldRun[]; redisCommandsPerEvent: Record<string, number>; redisCommandStats: CommandStats };
  profile?: ProfileSummary;
}

/**
 * `transactions`: the worker publishes and commits each batch in a Kafka transaction
 * (WORKER_TRANSACTIONS=true, figure key `fold.throughputTx`); by default the plain path, the
 * product's default.
 */
export async function measureFold(
  h: Harness,
  o: FoldOptions,
  topics: string[],
  prepared: Prepared,
  profiler?: Profiler,
  transactions = false,
  /** 'off': the stages alone; 'on': the CRM steps, a stall rule and three audiences (bench/proc.ts benchAutomation). */
  features?: 'off' | 'on',
): Promise<FoldResult> {
  const redis = new Redis(h.services.redis.url);
  const rates: number[] = [];
  const cpus: CpuReport[] = [];
  const runs: FoldRun[] = [];
  let commandStats: CommandStats = {};
  let redisCpuSeconds = 0;
  for (let i = 0; i < topics.length; i++) {
    await redis.flushall();
    await redis.config('RESETSTAT');
    const cpu0 = await redisCpu(redis);
    let p: Proc | undefined;
    const meter = cpuMeter(roles(h.services, {}, () => ({ worker: p })));
    p = await h.start(
      'fold',
      {
        brokers: h.services.kafka.brokers,
        redisUrl: h.services.redis.url,
        topic: topics[i],
        groupId: `bench-fold-${Date.now()}`,
        ns: '',
        expected: prepared.records,
        consumer: { ...o.consumer, transactional: transactions },
        nullProducer: o.nullProducer,
        features,
      },
      i === topics.length - 1 ? (profiler?.args('fold') ?? []) : [],
    );
    const r = (await p.result) as FoldRun;
    cpus.push(meter.stop());
    await p.stop();
    if (r.lag !== 0) throw new Error(`the fold did not reach lag 0 (lag ${r.lag})`);
    rates.push(r.eventsPerSecond);
    runs.push(r);
    redisCpuSeconds = (await redisCpu(redis)) - cpu0;
    commandStats = await commandstats(redis);
  }
  redis.disconnect();
  const s = spread(rates);
  const perEvent = Object.fromEntries(Object.entries(commandStats).map(([k, v]) => [k, round(v.calls / prepared.records, 3)]));
  return {
    figures: {
      throughput: {
        key: features ? `fold.throughputFeatures${features === 'on' ? 'On' : 'Off'}` : transactions ? 'fold.throughputTx' : 'fold.throughput',
        what: `fold, one worker (${prepared.records.toLocaleString('en-US')} records, ${o.partitions} partitions) until lag 0${transactions ? ', in transactions' : ''}${
          features === 'on'
            ? ', CRM steps on, a stall rule and 3 audiences in force'
            : features === 'off'
              ? ', the stages alone (no CRM steps, nothing in force)'
              : ''
        }`,
        unit: 'events/s',
        value: s,
        target: targetText(TARGETS.fold),
        ok: meets(TARGETS.fold, s.median),
        note: `${cpuNote(middle(cpus))}; worker CPU ${round((middle(runs).cpuSeconds / prepared.records) * 1e6, 1)} µs per event`,
      },
      redisCpu: {
        key: 'fold.redisCpu',
        what: 'Redis CPU per folded event during the last fold (its ceiling for this workload on one core)',
        unit: 'µs/event',
        value: round((redisCpuSeconds / prepared.records) * 1e6, 2),
        note: `= ${Math.round(prepared.records / redisCpuSeconds).toLocaleString('en-US')} events/s of Redis CPU; commands/event ${Object.entries(perEvent)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}`,
      },
    },
    details: { foldRuns: runs, redisCommandsPerEvent: perEvent, redisCommandStats: commandStats },
    profile: profiler?.latest('fold'),
  };
}

async function redisCpu(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const get = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  return get('used_cpu_user') + get('used_cpu_sys');
}

async function commandstats(redis: Redis): Promise<CommandStats> {
  const info = await redis.info('commandstats');
  const out: CommandStats = {};
  for (const m of info.matchAll(/^cmdstat_(\w+(?:\|\w+)?):calls=(\d+),usec=(\d+)/gm)) {
    if (['info', 'config', 'flushall', 'ping', 'client', 'select', 'script', 'memory', 'scan', 'hlen'].includes(m[1]!)) continue;
    out[m[1]!] = { calls: Number(m[2]), usec: Number(m[3]) };
  }
  return out;
}
