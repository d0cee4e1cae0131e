/**
 * The flags of `npm run bench` and the settings they give (durations, runs, sizes). bench/run.ts
 * parses the command line with FLAGS (node:util parseArgs) and hands the values to `settingsOf`.
 */
import type { ProducerClient } from '../lib/kafka/producer.js';
import { CLICK_RATE_EVENTS_PER_SECOND } from './targets.js';

export const FLAGS = {
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
  /** The producer clients to measure ingest and the raw producer with: kafkajs, platformatic, or both (default). */
  producer: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const USAGE =
  'usage: npm run bench [-- --quick] [--profile] [--only latency,callback,context,ingest,raw,fold,redis,snippet,query] [--events N] [--producer kafkajs|platformatic|both]';

/** The values parseArgs gives for FLAGS. */
export interface Flags {
  quick?: boolean;
  profile?: boolean;
  only?: string;
  events?: string;
  consumer?: string;
  topology?: string;
  'click-rate'?: string;
  producer?: string;
  help?: boolean;
}

/** The measurements --only selects (collapse and the fold's breakdown come with `fold`). */
export const PARTS = ['latency', 'audience', 'callback', 'context', 'ingest', 'raw', 'fold', 'redis', 'snippet', 'query'] as const;
export type Part = (typeof PARTS)[number];

export type Topology = 'all-in-one' | 'split';

export interface Settings {
  quick: boolean;
  /** CPU-profile ingest and the worker (node --cpu-prof). */
  profile: boolean;
  parts: ReadonlySet<Part>;
  partitions: number;
  /** Events for the raw-producer, fold and collapse measurements (prepared once, the same records). */
  events: number;
  /** Repeated runs of every measurement with a min – max. */
  runs: number;
  ingestSeconds: number;
  contextSeconds: number;
  halfLoadSeconds: number;
  /** Click to stage: the length of each measured window, and of the warm-up after the first probe. */
  latencyWindowSeconds: number;
  latencyWarmSeconds: number;
  /** autocannon connections for throughput. */
  connections: number;
  /** Open-loop load: many browsers, each its own connection; few sockets would queue in the client. */
  pacedConnections: number;
  /** Requests/s of 10 events for click-to-stage: 500 = the target's 5,000 events/s. */
  clickRate: number;
  topologies: Topology[];
  /** Records the raw producer sends 10 at a time. */
  send10Records: number;
  /** Requests of each redis-benchmark test. */
  redisBenchmarkRequests: number;
  /** Query at scale: people on one topic (bench/measure/query-scale.ts). */
  queryPeople: number;
  /** --consumer, parsed: KafkaConsumerOptions for the fold's and the split stack's worker. */
  consumer: Record<string, unknown> | undefined;
  /** KAFKA_PRODUCER's clients that ingest and the raw producer are measured with: kafkajs first, then platformatic (the default). */
  producers: ProducerClient[];
  /** BENCH_NULL_PRODUCER=1: the fold's worker does not publish transitions (what publishing costs). */
  nullProducer: boolean;
}

export function settingsOf(flags: Flags, env: NodeJS.ProcessEnv = {}): Settings {
  const parts = new Set((flags.only?.split(',').map((s) => s.trim()) ?? PARTS) as Part[]);
  for (const p of parts) if (!PARTS.includes(p)) throw new Error(`--only: unknown measurement "${p}" (${PARTS.join(', ')})`);
  const quick = flags.quick ?? false;
  return {
    quick,
    profile: flags.profile ?? false,
    parts,
    partitions: 6,
    events: Number(flags.events ?? (quick ? 60_000 : 200_000)),
    runs: quick ? 2 : 3,
    ingestSeconds: quick ? 5 : 10,
    contextSeconds: quick ? 3 : 6,
    halfLoadSeconds: quick ? 4 : 8,
    latencyWindowSeconds: quick ? 6 : 15,
    latencyWarmSeconds: quick ? 8 : 12,
    connections: 100,
    pacedConnections: 256,
    clickRate: Math.round(Number(flags['click-rate'] ?? CLICK_RATE_EVENTS_PER_SECOND) / 10),
    // --topology split (or all-in-one) leaves the other out; any other value runs both.
    topologies: [...(flags.topology !== 'split' ? (['all-in-one'] as const) : []), ...(flags.topology !== 'all-in-one' ? (['split'] as const) : [])],
    send10Records: quick ? 20_000 : 50_000,
    redisBenchmarkRequests: quick ? 100_000 : 300_000,
    queryPeople: quick ? 200_000 : 1_000_000,
    consumer: flags.consumer ? (JSON.parse(flags.consumer) as Record<string, unknown>) : undefined,
    nullProducer: env.BENCH_NULL_PRODUCER === '1',
    producers: producersOf(flags.producer),
  };
}

/** --producer kafkajs | platformatic | both (default: both, kafkajs first). */
export function producersOf(flag: string | undefined): ProducerClient[] {
  if (flag === undefined || flag === 'both') return ['kafkajs', 'platformatic'];
  if (flag === 'kafkajs' || flag === 'platformatic') return [flag];
  throw new Error(`--producer: kafkajs, platformatic or both, not "${flag}"`);
}
