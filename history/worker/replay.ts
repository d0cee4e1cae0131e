import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { TOPICS } from '../../contract/raw-event.js';
import { recordsBetween, type Log, type LogProducer, type StartAt } from '../../lib/log.js';
import type { Logger } from '../../lib/logger.js';
import { erasuresGroupOf, followErasures } from '../store/erasure-log.js';
import { RedisHistoryStore } from '../store/redis.js';
import type { HistoryStore } from '../store/store.js';
import type { TopicMapConfig } from '../fold/topic-map.js';
import { compileTopicMap, foldOptionsOf } from '../fold/topic-map.js';
import { createBatchHandler } from './batch.js';

/**
 * Rebuilds histories from `clicks.raw` into a fresh key namespace, for example after a topic-map
 * change: the live namespace keeps serving until the replay has caught up, then processes are
 * pointed at the new one (`activeNamespaceKey`). Historical transitions are not published again.
 *
 * Erasures: before the first raw record, the replay applies every record of `history.erasures` to
 * the new namespace (tombstones: the fold then skips every record of an erased id received before its
 * erasure, so no replay resurrects anyone); when it has caught up, it applies the erasures made
 * meanwhile. Its erasure group (`<group>.erasures`) stops where it did, so the workers switched to the
 * namespace apply every later erasure to it.
 */
export interface ReplayOptions {
  /** The log to read `clicks.raw` from; dead letters go to its producer, transitions nowhere. */
  log: Log;
  redis: Redis | Cluster;
  map: TopicMapConfig;
  logger: Logger;
  /** Where to start: an epoch-ms time, or 'earliest'. */
  from: number | 'earliest';
  /** The namespace to build (default: a new one). */
  namespace?: string;
  /** How long tombstones of erased ids live (lib/retention.ts tombstoneMs); default: from the default retention. */
  tombstoneTtlSeconds?: number;
  onProgress?: (p: ReplayProgress) => void;
}

export interface ReplayProgress {
  done: number;
  total: number;
  /** Events per second so far. */
  rate: number;
  /** Seconds left at that rate. */
  etaSeconds: number;
}

export interface ReplayResult {
  namespace: string;
  /** The consumer group whose committed offsets sit where the replay stopped: workers continue from it. */
  groupId: string;
  records: number;
}

/** A Redis key (outside every namespace) naming the namespace and consumer group processes use. */
export const activeNamespaceKey = (base: string) => `${base}clickfold:active`;

const dropTransitions = (inner: LogProducer): LogProducer => ({
  send: (topic, messages) => (topic === TOPICS.transitions ? Promise.resolve() : inner.send(topic, messages)),
  ready: () => inner.ready(),
  close: () => inner.close(),
});

export async function replay(opts: ReplayOptions): Promise<ReplayResult> {
  const namespace = opts.namespace ?? `r${Date.now().toString(36)}:`;
  const groupId = `clickfold-replay-${namespace.replace(/[^\w-]/g, '')}-${randomUUID().slice(0, 6)}`;
  const startAt: StartAt = opts.from === 'earliest' ? 'beginning' : { timestamp: opts.from };
  // The end is where this replay stops: what was on the log when it began.
  const [starts, ends] = await Promise.all([opts.log.offsets(TOPICS.raw, startAt), opts.log.offsets(TOPICS.raw, 'end')]);

  const total = recordsBetween(starts, ends);
  const map = compileTopicMap(opts.map);
  const store = new RedisHistoryStore(opts.redis, foldOptionsOf(map), namespace, undefined, opts.tombstoneTtlSeconds);
  const erasures = await followErasuresInto(opts.log, store, erasuresGroupOf(groupId), opts.logger);
  try {
    await erasures.upTo(await opts.log.offsets(TOPICS.erasures, 'end'));
    const records = await foldRaw(opts, store, map, groupId, startAt, starts, ends, total);
    // Erasures made while the replay ran: the live namespace has them, this one now too.
    await erasures.upTo(await opts.log.offsets(TOPICS.erasures, 'end'));
    return { namespace, groupId, records };
  } finally {
    await erasures.stop();
  }
}

/** Follows `history.erasures` into `store`; `upTo(ends)` resolves once every record before `ends` is applied. */
async function followErasuresInto(log: Log, store: HistoryStore, group: string, logger: Logger) {
  const position = new Map([...(await log.offsets(TOPICS.erasures, 'beginning'))].map(([p, o]) => [p, BigInt(o)]));
  const apply = followErasures(store, logger);
  let progressed: () => void = () => {};
  const consumer = log.consumer({ topic: TOPICS.erasures, group, startAt: 'beginning', logger });
  await consumer.run(async (batch, ctl) => {
    await apply(batch, ctl);
    const last = batch.messages.at(-1);
    if (last) {
      await ctl.commit(last.offset);
      position.set(batch.partition, BigInt(last.offset) + 1n);
    }
    progressed();
  });
  return {
    upTo: async (ends: ReadonlyMap<number, string>) => {
      const reached = () => [...ends].every(([p, end]) => (position.get(p) ?? 0n) >= BigInt(end));
      while (!reached()) await new Promise<void>((resolve) => (progressed = resolve));
    },
    stop: () => consumer.stop(),
  };
}

async function foldRaw(
  opts: ReplayOptions,
  store: RedisHistoryStore,
  map: ReturnType<typeof compileTopicMap>,
  groupId: string,
  startAt: StartAt,
  starts: Map<number, string>,
  ends: Map<number, string>,
  total: number,
): Promise<number> {
  const handler = createBatchHandler({ store, topicMap: map, producer: dropTransitions(opts.log.producer()), logger: opts.logger });
  const position = new Map([...starts].map(([p, offset]) => [p, BigInt(offset)]));
  const started = Date.now();
  let done = 0;

  const caughtUp = () => [...ends].every(([p, end]) => (position.get(p) ?? 0n) >= BigInt(end));
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  // A new group: it starts where `starts` says (the same question, asked by the consumer).
  const consumer = opts.log.consumer({ topic: TOPICS.raw, group: groupId, startAt, logger: opts.logger });
  if (caughtUp()) finish();
  await consumer.run(async (batch, ctl) => {
    // The whole batch is folded, also records newer than the start: the group's committed offsets
    // then match the namespace exactly, and workers switched to it continue without a gap.
    await handler(batch);
    const last = batch.messages.at(-1);
    if (last) {
      // Committed before the replay may finish and stop the consumer.
      await ctl.commit(last.offset);
      position.set(batch.partition, BigInt(last.offset) + 1n);
    }
    done += batch.messages.length;
    const seconds = (Date.now() - started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    opts.onProgress?.({ done: Math.min(done, total), total, rate, etaSeconds: rate > 0 ? Math.max(0, (total - done) / rate) : Infinity });
    if (caughtUp()) finish();
  });
  await finished;
  await consumer.stop();
  return done;
}
