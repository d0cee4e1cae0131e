import { join } from 'node:path';
import type { Cluster, Redis } from 'ioredis';
import { TOPICS } from '../../contract/raw-event.js';
import type { FoldOptions } from '../../history/fold/fold.js';
import type { HistoryStore } from '../../history/store/store.js';
import { RedisHistoryStore } from '../../history/store/redis.js';
import { activeNamespaceKey } from '../../history/worker/replay.js';
import { erasuresGroupOf, withErasureLog } from '../../history/store/erasure-log.js';
import { retentionOf, type Env } from '../../lib/config.js';
import { tombstoneMs } from '../../lib/retention.js';
import { openKafkaLog } from '../../lib/kafka/log.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import type { Log, LogConsumer, LogProducer } from '../../lib/log.js';
import type { Logger } from '../../lib/logger.js';
import type { Registry } from 'prom-client';
import { createEmbeddedMetrics, dataDirOf, openEmbedded } from './embedded.js';
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
  /** The embedded mode's data directory (DATA_DIR); absent when it runs in memory only. */
  dataDir?: string | undefined;
  /** The embedded mode's gauges: what the log keeps, the ids the store holds (part of `GET /metrics`). */
  embeddedMetrics?: Registry;
  /** `logPort.producer()`. */
  producer: LogProducer;
  /**
   * A member of the worker's consumer group on `clicks.raw` (KAFKA_GROUP_ID, or the group a replay
   * switched to); it reports failing batches to the logger given to openBackends.
   */
  rawConsumer(): LogConsumer;
  /** A member of the group (the raw group's + `.erasures`) that applies `history.erasures` to `store`. */
  erasureConsumer(): LogConsumer;
  /** The process's store; its erase also records the erasure on `history.erasures` (history/store/erasure-log.ts). */
  store: HistoryStore;
  /** The real stack's Redis connection and out-of-memory state, for /readyz and the metrics. */
  redis?: RedisWatch;
  /**
   * Where audience definitions live (history/automation/registry.ts): Redis under REDIS_PREFIX (they
   * are configuration, kept across a replay's switch of namespace), or a file in the data directory.
   */
  audiences: { redis?: { client: Redis | Cluster; ns: string }; path?: string | undefined };
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
    topics: { partitions: env.KAFKA_PARTITIONS, replicationFactor: env.KAFKA_REPLICATION_FACTOR, retention: retentionOf(env) },
    producer: { ackTimeoutMs: env.INGEST_ACK_TIMEOUT_MS, client: env.KAFKA_PRODUCER },
    consumers: { sessionTimeoutMs: env.KAFKA_SESSION_TIMEOUT_MS, transactionTimeoutMs: env.WORKER_TRANSACTION_TIMEOUT_MS },
  });
}

/** `defaultDataDir`: the embedded mode's folder when DATA_DIR is unset (`npm start`'s; others stay in memory). */
export async function openBackends(env: Env, foldOptions: FoldOptions, logger: Logger, opts: { defaultDataDir?: string } = {}): Promise<Backends> {
  const fold: FoldOptions = { ...foldOptions, crmSteps: env.WORKER_CRM_STEPS };
  if (!env.KAFKA_BROKERS !== !hasRedis(env)) {
    throw new Error('set both KAFKA_BROKERS and REDIS_URL (or REDIS_CLUSTER_NODES) for the real stack, or neither for the embedded mode');
  }
  // The worker's batches are durable when its handler resolves: one in flight at stop() is committed.
  // On Kafka the transitions go out with the commit; in one transaction with WORKER_TRANSACTIONS=true.
  const raw = (log: Log, group: string) => () =>
    log.consumer({ topic: TOPICS.raw, group, commitOnStop: true, transactional: !!env.KAFKA_BROKERS && env.WORKER_TRANSACTIONS });
  const erasures = (log: Log, group: string) => () => log.consumer({ topic: TOPICS.erasures, group: erasuresGroupOf(group), commitOnStop: true });
  if (!env.KAFKA_BROKERS || !hasRedis(env)) {
    const { log, store, dataDir } = await openEmbedded(env, fold, logger, dataDirOf(env, opts.defaultDataDir));
    return {
      mode: 'embedded',
      logPort: log,
      log,
      dataDir,
      embeddedMetrics: createEmbeddedMetrics(log, store),
      producer: log.producer(),
      rawConsumer: raw(log, env.KAFKA_GROUP_ID),
      erasureConsumer: erasures(log, env.KAFKA_GROUP_ID),
      store: withErasureLog(store, log.producer()),
      audiences: { path: dataDir ? join(dataDir, 'audiences.json') : undefined },
      // The durable log takes its last snapshot of the store as it closes.
      close: () => log.close(),
    };
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
    const store = new RedisHistoryStore(redis, fold, namespace, undefined, Math.ceil(tombstoneMs(retentionOf(env)) / 1000));
    const opened = log;
    return {
      mode: 'real',
      logPort: opened,
      producer: opened.producer(),
      rawConsumer: raw(opened, groupId),
      erasureConsumer: erasures(opened, groupId),
      store: withErasureLog(store, opened.producer()),
      redis: watch,
      audiences: { redis: { client: redis, ns: env.REDIS_PREFIX } },
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
