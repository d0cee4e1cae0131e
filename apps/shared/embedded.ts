import { TOPICS } from '../../contract/raw-event.js';
import type { FoldOptions } from '../../history/fold/fold.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { restoreStore, storeLines } from '../../history/store/memory-snapshot.js';
import { resolve } from 'node:path';
import type { Env } from '../../lib/config.js';
import { DurableLog } from '../../lib/log-durable.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import type { RetentionLimits } from '../../lib/log-retention.js';
import type { Logger } from '../../lib/logger.js';
import { Gauge, Registry } from 'prom-client';

/** The embedded log's bound from the environment (README "Running `npm start` for months"). */
export function retentionFromEnv(env: Env): RetentionLimits {
  return {
    maxEvents: env.EMBEDDED_LOG_MAX_EVENTS,
    maxBytes: Math.round(env.EMBEDDED_LOG_MAX_MB * 1024 * 1024),
    maxAgeMs: env.EMBEDDED_LOG_MAX_AGE_HOURS * 3_600_000,
  };
}

/** The folder the embedded mode keeps its data in, or undefined to stay in memory (DATA_DIR's rules in lib/config.ts). */
export function dataDirOf(env: Env, fallback: string | undefined): string | undefined {
  const dir = env.DATA_DIR ?? fallback;
  return dir === undefined || dir === '' || dir === 'memory' ? undefined : resolve(dir);
}

/**
 * The embedded backends of `npm start`: the in-process log and the in-memory store, bounded; with
 * DATA_DIR, the log in segment files and the store in its snapshots, so that both come back after a
 * restart or a crash (lib/log-durable.ts says how).
 */
export async function openEmbedded(
  env: Env,
  fold: FoldOptions,
  logger: Logger,
  dataDir: string | undefined,
): Promise<{ log: PartitionedLog; store: MemoryHistoryStore; dataDir?: string }> {
  const store = new MemoryHistoryStore(fold);
  const retention = retentionFromEnv(env);
  // Records the worker has not folded are never dropped, whatever the bound.
  const protect = [{ group: env.KAFKA_GROUP_ID, topic: TOPICS.raw }];
  if (!dataDir) return { log: new PartitionedLog(env.KAFKA_PARTITIONS, { logger, retention, protect }), store };

  const { log, restored } = await DurableLog.open({
    dir: dataDir,
    partitions: env.KAFKA_PARTITIONS,
    logger,
    retention,
    protect,
    snapshotIntervalMs: env.EMBEDDED_SNAPSHOT_INTERVAL_S * 1000,
  });
  try {
    if (restored) {
      const { people } = restoreStore(store, restored.lines);
      logger.info({ people, snapshotAt: new Date(restored.at).toISOString() }, 'restored the histories from the data directory; folding what came after');
    }
  } catch (err) {
    // No snapshot on the way out: it would hold the empty store, not the one that failed to load.
    await log.abandon();
    throw err;
  }
  log.snapshotWith(() => storeLines(store));
  return { log, store, dataDir };
}

/**
 * What the embedded mode keeps, for `GET /metrics` (and the soak): records, bytes and segments the
 * log keeps within its bound, the ids the store holds, and the newest snapshot.
 */
export function createEmbeddedMetrics(log: PartitionedLog, store: MemoryHistoryStore): Registry {
  const registry = new Registry();
  const registers = [registry];
  const kept = () => log.records.size();
  new Gauge({
    name: 'clickfold_embedded_log_records',
    help: 'Records the embedded log keeps (every topic), within EMBEDDED_LOG_MAX_EVENTS',
    registers,
    collect() {
      this.set(kept().events);
    },
  });
  new Gauge({
    name: 'clickfold_embedded_log_bytes',
    help: 'Bytes the embedded log keeps: frames on disk with DATA_DIR, keys and values in memory without',
    registers,
    collect() {
      this.set(kept().bytes);
    },
  });
  new Gauge({
    name: 'clickfold_embedded_log_segments',
    help: 'Segments the embedded log keeps (the oldest goes first past the bound)',
    registers,
    collect() {
      this.set(kept().segments);
    },
  });
  new Gauge({
    name: 'clickfold_embedded_store_ids',
    help: 'Ids the in-memory store holds a hash for (people, and visitor ids merged into them)',
    registers,
    collect() {
      this.set(store.state().people.size);
    },
  });
  new Gauge({
    name: 'clickfold_embedded_store_dialogues',
    help: 'Dialogues the in-memory store holds (entries of its stage indexes)',
    registers,
    collect() {
      let n = 0;
      for (const stages of store.state().index.values()) for (const members of stages.values()) n += members.size;
      this.set(n);
    },
  });
  if (log instanceof DurableLog) {
    new Gauge({
      name: 'clickfold_embedded_snapshots_total',
      help: 'Snapshots written to DATA_DIR since the directory was created',
      registers,
      collect() {
        this.set(log.stats().snapshotSeq);
      },
    });
  }
  return registry;
}
