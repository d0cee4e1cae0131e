import { openAudienceRegistry, type AudienceRegistry } from '../../history/automation/registry.js';
import type { TopicMap } from '../../history/fold/topic-map.js';
import { compileStallRules, type CompiledStallRule } from '../../history/stalls/rules.js';
import type { Env } from '../../lib/config.js';
import type { Logger } from '../../lib/logger.js';
import type { Backends } from './backends.js';

/**
 * What stalls, audiences and the CRM model need from the environment, for every process that folds
 * or answers the API: the topic map's compiled stall rules, the audience registry (Redis under
 * REDIS_PREFIX or the data directory, plus AUDIENCES_FILE), and the CRM settings.
 */
export async function openAutomation(
  env: Env,
  topicMap: TopicMap,
  backends: Backends,
  logger: Logger,
): Promise<{ stallRules: CompiledStallRule[]; registry: AudienceRegistry }> {
  const stallRules = compileStallRules(topicMap.stalls, topicMap.ladder, topicMap.quietMs).rules;
  const registry = await openAudienceRegistry({
    store: backends.store,
    stallRules,
    producer: backends.producer,
    logger,
    file: env.AUDIENCES_FILE,
    ...backends.audiences,
  });
  return { stallRules, registry };
}

/** The CRM model job's settings for a worker (CRM_MODEL_INTERVAL_S, CRM_MODEL_SAMPLE, CRM_LTV_HORIZON_DAYS). */
export const crmJobOptions = (env: Env) => ({ everyMs: env.CRM_MODEL_INTERVAL_S * 1000, sample: env.CRM_MODEL_SAMPLE, horizonDays: env.CRM_LTV_HORIZON_DAYS });

/** What the query API says about the CRM model's schedule and horizon. */
export const crmQueryOptions = (env: Env) => ({ horizonDays: env.CRM_LTV_HORIZON_DAYS, everySeconds: env.CRM_MODEL_INTERVAL_S });
