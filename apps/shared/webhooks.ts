import { parseWebhookTargets, startWebhooks, type RunningWebhooks, type WebhookMetrics, type WebhookTarget } from '../../history/transitions/webhooks.js';
import type { Env } from '../../lib/config.js';
import type { Logger } from '../../lib/logger.js';
import type { Backends } from './backends.js';

/**
 * The receivers of WEBHOOK_URLS: comma-separated entries `<url>` or `<url>#kinds=<kind>+<kind>…`
 * (kinds: stage, stalled, entered, exited; default stage alone, what receivers got before stalls
 * and audiences). Throws on a bad entry: call it at start, before anything is served.
 */
export function webhookTargetsFromEnv(env: Env): WebhookTarget[] {
  return parseWebhookTargets(env.WEBHOOK_URLS, 'WEBHOOK_URLS');
}

/**
 * Webhook delivery as configured in the environment (WEBHOOK_URLS, WEBHOOK_SECRET, ...), for every
 * process that delivers them (`apps/api.ts`, `npm start`); nothing runs without WEBHOOK_URLS.
 * Deliveries read history.transitions with consumers of their own: the fold never waits for a receiver.
 */
export async function startWebhooksFromEnv(env: Env, deps: { backends: Backends; logger: Logger; metrics: WebhookMetrics }): Promise<RunningWebhooks> {
  const { backends, logger, metrics } = deps;
  return startWebhooks(backends.logPort, {
    urls: webhookTargetsFromEnv(env),
    secret: env.WEBHOOK_SECRET ?? '',
    retryMaxMs: env.WEBHOOK_RETRY_MAX_MS,
    groupPrefix: env.KAFKA_GROUP_ID,
    logger,
    // Requests a receiver refuses for good are parked on history.webhooks.parked.
    producer: backends.producer,
    metrics,
  });
}
