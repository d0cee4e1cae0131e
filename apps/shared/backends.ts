import { TOPICS } from '../../contract/raw-event.js';
import type { FoldOptions } from '../../history/fold/fold.js';
import type { HistoryStore } from '../../history/store/store.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { RedisHistoryStore } from '../../history/store/redis.js';
import { activeNamespaceKey } from '../../history/worker/replay.js';
import type { Env } from '../../lib/config.js';
import { openKafkaLog } from '../../lib/kafka/log.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import type { Log, LogConsumer, LogProducer } from '../../lib/log.js';
import type { Logger } from '../../lib/logger.js';
import { checkEvictionPolicy, createRedis, hasRedis, RedisWatch } from '../../lib/redis.js';

/**
 * The one place that decides between the real stack (Kafka + Redis) and the embedded backends.
 * Both sides satisfy the same interfaces, so everything above is unaware of the choice.
 */
export interface Backends {
  mode: 'real' | 'embedded';
  /** The process's one log (Kafka, or the in-process log): every producer and consumer comes from it. */
  logPort: Log;
  /** The embedded mode's in-process log, the same object as `logPort` (tests read and append to it); absent on the real stack. */
  log?: PartitionedLog;
  /** `logPort.producer()`. */
  producer: LogProducer;
  /**
   * A member of the worker's consumer group on `clicks.raw` (KAFKA_GROUP_ID, or the group a replay
   * switched to); it reports failing batches to the logger given to openBackends.
   */
  rawConsumer(): LogConsumer;
  store: HistoryStore;
  /** The real stack's Redis connection and out-of-memory state, for /readyz and the metrics. */
  redis?: RedisWatch;
  /** Stops every consumer still running, closes the producer and the store. */
  close(): Promise<void>;
}

/**
 * The process's log: Kafka when KAFKA_BROKERS is set (its topics created when missing, the producer
 * connected), else a new in-process log.
 */
export async function openLog(env: Env, logger: Logger, opts: { clientId?: string } = {}): Promise<Log> {
  if (!env.KAFKA_BROKERS) return new PartitionedLog(env.KAFKA_PARTITIONS, { logger });
  return openKafkaLog({
    brokers: env.KAFKA_BROKERS,
    clientId: opts.clientId ?? env.KAFKA_CLIENT_ID,
    logger,
    topics: { partitions: env.KAFKA_PARTITIONS, replicationFactor: env.KAFKA_REPLICATION_FACTOR },
    producer: { ackTimeoutMs: env.INGEST_ACK_TIMEOUT_MS },
    consumers: { sessionTimeoutMs: env.KAFKA_SESSION_TIMEOUT_MS, transactionTimeoutMs: env.WORKER_TRANSACTION_TIMEOUT_MS },
  });
}

export async function openBackends(env: Env, fold: FoldOptions, logger: Logger): Promise<Backends> {
  if (!env.KAFKA_BROKERS !== !hasRedis(env)) {
    throw new Error('set both KAFKA_BROKERS and REDIS_URL (or REDIS_CLUSTER_NODES) for the real stack, or neither for the embedded mode');
  }
  // The worker's batches are durable when its handler resolves: one in flight at stop() is committed.
  // On Kafka the transitions go out with the commit, in one transaction unless WORKER_TRANSACTIONS=false.
  const raw = (log: Log, group: string) => () =>
    log.consumer({ topic: TOPICS.raw, group, commitOnStop: true, transactional: !!env.KAFKA_BROKERS && env.WORKER_TRANSACTIONS });
  if (!env.KAFKA_BROKERS || !hasRedis(env)) {
    const log = new PartitionedLog(env.KAFKA_PARTITIONS, { logger });
    const store = new MemoryHistoryStore(fold);
    return { mode: 'embedded', logPort: log, log, producer: log.producer(), rawConsumer: raw(log, env.KAFKA_GROUP_ID), store, close: () => log.close() };
  }

  // Keep retrying while Redis is away instead of failing commands: the worker must wait, not skip.
  const redis = createRedis(env);
  const watch = new RedisWatch(redis, logger.child({ component: 'redis' }));
  let log: Log | undefined;
  try {
    // Before anything else: a Redis that would evict histories is refused (worker, API, npm start).
    await checkEvictionPolicy(redis, logger);
    log = await openLog(env, logger);
    // A finished replay may have pointed the deployment at the namespace it built (npm run replay -- --switch).
    const active = await redis.get(activeNamespaceKey(env.REDIS_PREFIX));
    const { namespace, groupId } = active
      ? (JSON.parse(active) as { namespace: string; groupId: string })
      : { namespace: env.REDIS_PREFIX, groupId: env.KAFKA_GROUP_ID };
    if (active) logger.info({ namespace, groupId }, 'using the namespace a replay switched to');
    const store = new RedisHistoryStore(redis, fold, namespace);
    const opened = log;
    return {
      mode: 'real',
      logPort: opened,
      producer: opened.producer(),
      rawConsumer: raw(opened, groupId),
      store,
      redis: watch,
      close: async () => {
        await opened.close();
        await store.close();
        redis.disconnect();
      },
    };
  } catch (err) {
    await log?.close().catch(() => {});
    redis.disconnect();
    throw err;
  }
}
