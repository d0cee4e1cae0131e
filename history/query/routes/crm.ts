import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import { CrmModelView } from '../../../contract/query.js';
import { crmModelView, DEFAULT_LTV_HORIZON_DAYS } from '../crm.js';
import { errors, security, type QueryRouteContext } from './common.js';

/** `GET /v1/crm/model`: the RFM quintiles and the lifetime-value model in force. */
export function crmRoutes(app: OpenAPIHono, ctx: QueryRouteContext): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/crm/model',
      summary: 'The RFM thresholds and the lifetime-value model in force',
      description:
        'Computed by a worker every CRM_MODEL_INTERVAL_S from a sample of up to CRM_MODEL_SAMPLE purchasers: the quintiles of last purchase, purchases and total value (RFM scores 1 to 5), ' +
        'and BG/NBD with Gamma-Gamma fitted by maximum likelihood (projected lifetime value over `horizonDays`). One model per deployment: person ids are not per site. ' +
        'Below `minSample` purchasers the fixed RFM thresholds apply and there is no projection.',
      tags: ['crm'],
      security,
      middleware: [ctx.auth.read] as const,
      responses: { 200: { description: 'The model.', content: { 'application/json': { schema: CrmModelView } } }, ...errors },
    }),
    async (c) => c.json(crmModelView(await ctx.store.crmModel(), ctx.ltvHorizonDays ?? DEFAULT_LTV_HORIZON_DAYS, ctx.crmEverySeconds ?? null), 200),
  );
}
