import type { HistoryEvent } from '../../contract/transition.js';
import { createAutomation } from '../../history/automation/evaluate.js';
import { startSweeper, type Sweeper } from '../../history/automation/sweeper.js';
import { DEFAULT_LTV_HORIZON_DAYS } from '../../history/query/crm.js';
import { type CrmModelJob, startCrmModelJob } from '../../history/worker/crm-model.js';
import type { AudienceRegistry, AutomationWatch } from '../../history/automation/registry.js';
import { compileStallRules } from '../../history/stalls/rules.js';
import type { TopicMap } from '../../history/fold/topic-map.js';
import { followErasures } from '../../history/store/erasure-log.js';
import { createBatchHandler } from '../../history/worker/batch.js';
import { workerReadiness, type WorkerReadiness } from '../../history/worker/http.js';
import { observeBatches, pollLag, type WorkerMetrics } from '../../history/worker/metrics.js';
import type { LogConsumer } from '../../lib/log.js';
import type { Logger } from '../../lib/logger.js';
import type { Backends } from './backends.js';

/** The history worker of a process: a member of the group on `clicks.raw`, folding into the store. */
export interface Worker {
  consumer: LogConsumer;
  /** For `/readyz`: the consumer runs, its batches get through, Redis has room, not shutting down. */
  readiness(): WorkerReadiness;
  /** Freshens the lag gauge (before a scrape). */
  refresh(): Promise<void>;
  /** Joins the group and starts folding; then polls the lag. */
  start(): Promise<void>;
  /** Stops polling, lets the batch in flight finish and commit, leaves the group. */
  stop(): Promise<void>;
}

export function createWorker(
  backends: Backends,
  deps: {
    topicMap: TopicMap;
    logger: Logger;
    metrics: WorkerMetrics;
    onTransitions?: (t: HistoryEvent[]) => void;
    /** The sweeper's round, ms (tests shorten it). */
    sweepEveryMs?: number;
    /** Audience definitions, applied to the store as they change (with the stall rules). */
    registry?: AudienceRegistry;
    /**
     * In a process that also answers HTTP (`npm start`): a turn of the event loop after every this
     * many records read, so that a large batch (a catch-up) does not hold answers back for the
     * whole of its reading. Batches are not cut into smaller commits: with WORKER_TRANSACTIONS each
     * would be a transaction of its own, which slowed the fold behind a lag (bench, all-in-one).
     */
    slice?: number;
    /** The CRM model job (CRM_MODEL_INTERVAL_S, CRM_MODEL_SAMPLE) and the LTV horizon (CRM_LTV_HORIZON_DAYS). */
    crm?: { everyMs: number; sample: number; horizonDays: number };
  },
): Worker {
  const { topicMap, logger, metrics } = deps;
  backends.redis?.onError((kind) => metrics.redisErrors.inc({ kind }));
  const consumer = backends.rawConsumer();
  // Erasures recorded by any process (an API whose store step failed, a replay's switch) reach this store too.
  const erasures = backends.erasureConsumer();
  let stopping = false;
  let lag: { stop(): void; poll(): Promise<void> } | undefined;
  let sweeper: Sweeper | undefined;
  let watch: AutomationWatch | undefined;
  // The topic map's stall rules (checked against the ladder when the map was parsed). Audiences join
  // them through the registry, which calls setAutomation again whenever a definition changes.
  const stallRules = compileStallRules(topicMap.stalls, topicMap.ladder, topicMap.quietMs).rules;
  if (!deps.registry && stallRules.length > 0) {
    backends.store.setAutomation(createAutomation({ ladder: topicMap.ladder, quietMs: topicMap.quietMs, stallRules, audiences: [] }));
  }
  const crmOptions = deps.crm ?? { everyMs: 600_000, sample: 20_000, horizonDays: DEFAULT_LTV_HORIZON_DAYS };
  let crm: CrmModelJob | undefined;
  const crmNow = () => ({ model: crm?.current() ?? null, horizonDays: crmOptions.horizonDays });
  return {
    consumer,
    readiness: () => workerReadiness({ consumer, redis: backends.redis, stopping: () => stopping }),
    refresh: async () => lag?.poll(),
    start: async () => {
      crm = startCrmModelJob({ store: backends.store, logger, everyMs: crmOptions.everyMs, sample: crmOptions.sample });
      if (deps.registry) watch = await deps.registry.watch(backends.store, stallRules, { crm: crmNow });
      const handler = createBatchHandler({
        store: backends.store,
        topicMap,
        producer: backends.producer,
        logger,
        metrics,
        onTransitions: deps.onTransitions,
        yieldEvery: deps.slice,
      });
      await Promise.all([erasures.run(followErasures(backends.store, logger)), consumer.run(observeBatches(handler, metrics, backends.redis))]);
      lag = pollLag(consumer, metrics, { logger });
      sweeper = startSweeper({ store: backends.store, producer: backends.producer, logger, everyMs: deps.sweepEveryMs });
    },
    stop: async () => {
      stopping = true;
      lag?.stop();
      await sweeper?.stop();
      await crm?.stop();
      await Promise.all([consumer.stop(), erasures.stop()]);
      await watch?.stop();
    },
  };
}
