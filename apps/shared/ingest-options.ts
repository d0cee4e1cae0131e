import type { IngestOptions } from '../../ingest/app.js';
import type { IngestMetrics } from '../../ingest/metrics.js';
import { compileSites, type SitesFile } from '../../ingest/sites.js';
import type { Env } from '../../lib/config.js';
import type { LogProducer } from '../../lib/log.js';
import type { Logger } from '../../lib/logger.js';
import { clientIpResolver } from '../../lib/serve.js';

/**
 * Ingest's options from the environment, for every process that serves ingest (`apps/ingest.ts`,
 * `npm start`): body limits, Retry-After, client addresses behind TRUST_PROXY, the sites file,
 * the link secret, the dead-letter rate. `sites`: the loaded INGEST_SITES file (loadSites).
 */
export function ingestOptionsFromEnv(env: Env, deps: { producer: LogProducer; logger: Logger; metrics: IngestMetrics; sites: SitesFile }): IngestOptions {
  const { producer, logger, metrics, sites } = deps;
  return {
    producer,
    logger,
    maxBodyBytes: env.INGEST_MAX_BODY,
    retryAfterSeconds: env.INGEST_RETRY_AFTER_S,
    clientIp: clientIpResolver(env.TRUST_PROXY, () => metrics.forwardedFallbacks.inc()),
    trustProxy: env.TRUST_PROXY,
    deadLettersPerSecond: env.INGEST_DEAD_LETTERS_PER_SECOND,
    sites: compileSites(sites),
    linkSecret: env.INGEST_LINK_SECRET,
    batchMaxBodyBytes: env.INGEST_BATCH_MAX_BODY,
    metrics,
  };
}
