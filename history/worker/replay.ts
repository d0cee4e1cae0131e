import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import type { Kafka } from 'kafkajs';
import { TOPICS } from '../../contract/raw-event.js';
import { KafkaLogConsumer } from '../../lib/kafka.js';
import type { LogProducer } from '../../lib/log.js';
import type { Logger } from '../../lib/logger.js';
import { RedisHistoryStore } from '../store/redis.js';
import type { TopicMapConfig } from '../fold/topic-map.js';
import { compileTopicMap, foldOptionsOf } from '../fold/topic-map.js';
import { createBatchHandler } from './batch.js';

/**
 * Rebuilds histories from `clicks.raw` into a fresh key namespace, for example after a topic-map
 * change: the live namespace keeps serving until the replay has caught up, then processes are
 * pointed at the new one (`activeNamespaceKey`). Historical transitions are not published again.
 */
export interface ReplayOptions {
  kafka: Kafka;
  redis: Redis | Cluster;
  map: TopicMapConfig;
  logger: Logger;
  /** Where to start: an epoch-ms time, or 'earliest'. */
  from: number | 'earliest';
  /** The namespace to build (default: a new one). */
  namespace?: string;
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

export async function replay(opts: ReplayOptions, producer: LogProducer): Promise<ReplayResult> {
  const namespace = opts.namespace ?? `r${Date.now().toString(36)}:`;
  const groupId = `clickfold-replay-${namespace.replace(/[^\w-]/g, '')}-${randomUUID().slice(0, 6)}`;
  const admin = opts.kafka.admin();
  await admin.connect();
  let starts: { partition: number; offset: string }[];
  let ends: Map<number, bigint>;
  try {
    const high = await admin.fetchTopicOffsets(TOPICS.raw);
    ends = new Map(high.map((p) => [p.partition, BigInt(p.high)]));
    if (opts.from === 'earliest') {
      starts = high.map((p) => ({ partition: p.partition, offset: p.low }));
    } else {
      const byTime = await admin.fetchTopicOffsetsByTimestamp(TOPICS.raw, opts.from);
      starts = byTime.map((p) => ({ partition: p.partition, offset: p.offset }));
    }
    await admin.setOffsets({ groupId, topic: TOPICS.raw, partitions: starts });
  } finally {
    await admin.disconnect();
  }

  const total = Number(starts.reduce((sum, s) => sum + ((ends.get(s.partition) ?? 0n) - BigInt(s.offset)), 0n));
  const map = compileTopicMap(opts.map);
  const store = new RedisHistoryStore(opts.redis, foldOptionsOf(map), namespace);
  const handler = createBatchHandler({ store, topicMap: map, producer: dropTransitions(producer), logger: opts.logger });
  const position = new Map(starts.map((s) => [s.partition, BigInt(s.offset)]));
  const started = Date.now();
  let done = 0;

  const caughtUp = () => [...ends].every(([p, end]) => (position.get(p) ?? 0n) >= end);
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const consumer = new KafkaLogConsumer(opts.kafka, { groupId, topic: TOPICS.raw, fromBeginning: true });
  if (caughtUp()) finish();
  await consumer.run(async (batch) => {
    // The whole batch is folded, also records newer than the start: the group's committed offsets
    // then match the namespace exactly, and workers switched to it continue without a gap.
    await handler(batch);
    const last = batch.messages.at(-1);
    if (last) position.set(batch.partition, BigInt(last.offset) + 1n);
    done += batch.messages.length;
    const seconds = (Date.now() - started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    opts.onProgress?.({ done: Math.min(done, total), total, rate, etaSeconds: rate > 0 ? Math.max(0, (total - done) / rate) : Infinity });
    if (caughtUp()) finish();
  });
  await finished;
  await consumer.stop();
  return { namespace, groupId, records: done };
}
