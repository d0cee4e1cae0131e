import { OpenAPIHono } from '@hono/zod-openapi';
import { onError } from '../../lib/http-errors.js';
import type { Logger } from '../../lib/logger.js';
import { dashboardRoutes } from '../dashboard/route.js';
import type { HistoryStore } from '../store/store.js';
import type { LiveFeed } from '../transitions/live-feed.js';
import { NO_KEYS, requireKey, type ApiKeys } from './auth.js';
import { stageEnumOf, validationHook, type QueryRouteContext } from './routes/common.js';
import { crossSellRoutes } from './routes/cross-sell.js';
import { crmRoutes } from './routes/crm.js';
import { eraseRoutes } from './routes/erase.js';
import { funnelsRoutes } from './routes/funnels.js';
import { needsRoutes } from './routes/needs.js';
import { peopleRoutes } from './routes/people.js';
import { topicsRoutes } from './routes/topics.js';
import { transitionsRoutes } from './routes/transitions.js';
import { transitionsRecentRoutes } from './routes/transitions-recent.js';
import { trendRoutes } from './routes/trend.js';
import type { AudienceRegistry } from '../automation/registry.js';
import type { CompiledStallRule } from '../stalls/rules.js';
import { automationRoutes } from './routes/audiences.js';

export interface QueryApiOptions {
  store: HistoryStore;
  logger: Logger;
  /** Live transitions for the event stream; without one the stream answers 503. */
  feed?: LiveFeed | undefined;
  /** API keys; none: the API is open (the process's main decides whether that is allowed). */
  keys?: ApiKeys;
  /** Serve the dashboard at /dashboard (default true). */
  dashboard?: boolean;
  now?: () => number;
  /** Audience definitions; without, the audience routes answer 503. */
  registry?: AudienceRegistry | undefined;
  /** The topic map's compiled stall rules (GET /v1/stalls, the stalled lists). */
  stallRules?: readonly CompiledStallRule[] | undefined;
  /** The horizon of projected lifetime value, days (CRM_LTV_HORIZON_DAYS), and how often the CRM model is recomputed, s. */
  crm?: { horizonDays: number; everySeconds: number } | undefined;
}

/**
 * The marketers' query API over the folded history, described by OpenAPI at /v1/openapi.json,
 * plus the dashboard that reads it. Every answer comes from the stage indexes or named hashes.
 *
 * One file per resource under routes/ (the order here is the order of the OpenAPI document's
 * paths); the answers' shapes are contract/query.ts.
 */
export function createQueryApp(opts: QueryApiOptions): OpenAPIHono {
  const { store, logger } = opts;
  const keys = opts.keys ?? NO_KEYS;
  const ctx: QueryRouteContext = {
    store,
    logger,
    ladder: store.options.ladder,
    now: opts.now ?? Date.now,
    feed: opts.feed,
    ltvHorizonDays: opts.crm?.horizonDays,
    crmEverySeconds: opts.crm?.everySeconds,
    stageEnum: stageEnumOf(store.options.ladder),
    auth: { read: requireKey(keys, 'read'), erase: requireKey(keys, 'erase'), readStream: requireKey(keys, 'read', { allowCookie: true }) },
  };

  const app = new OpenAPIHono({ defaultHook: validationHook() });
  app.onError(onError(logger));
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'An API key from API_KEYS (read and erase) or API_READ_KEYS (read only).',
  });

  peopleRoutes(app, ctx);
  eraseRoutes(app, ctx);
  topicsRoutes(app, ctx);
  funnelsRoutes(app, ctx);
  trendRoutes(app, ctx);
  crossSellRoutes(app, ctx);
  crmRoutes(app, ctx);
  needsRoutes(app, ctx);
  transitionsRoutes(app, ctx);
  transitionsRecentRoutes(app, ctx);
  automationRoutes(app, ctx, { registry: opts.registry, stallRules: opts.stallRules });

  app.doc31('/v1/openapi.json', (c) => ({
    openapi: '3.1.0',
    info: {
      title: 'clickfold query API',
      version: '1',
      description:
        'Who is at which stage of what. Every endpoint but this document needs `Authorization: Bearer <API key>` when the server has keys. ' +
        'Errors: `{"error": {"code", "message", "issues"?}}` with 400 for a bad parameter (each in `issues`), 401 without a valid key, 403 for a read-only key on DELETE, 404 for an unknown person or topic.',
    },
    servers: [{ url: new URL(c.req.url).origin }],
  }));

  if (opts.dashboard ?? true) app.route('/', dashboardRoutes({ logger }));
  return app;
}
