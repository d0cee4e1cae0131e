import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import { Person } from '../../../contract/query.js';
import { httpError } from '../../../lib/http-errors.js';
import { recentTransitions } from '../recent-transitions.js';
import { rfmScores } from '../rfm.js';
import { errors, notFound, personParam, security, type QueryRouteContext } from './common.js';

/** `GET /v1/people/{person}`: a person's communication history. */
export function peopleRoutes(app: OpenAPIHono, ctx: QueryRouteContext): void {
  const { store, ladder } = ctx;
  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/people/{person}',
      summary: 'A person’s communication history',
      description:
        'Dialogues (topic, stage, when each stage was first reached, last activity, counts, channels), linked visitor ids, RFM inputs and scores, recent transitions.',
      tags: ['people'],
      security,
      middleware: [ctx.auth.read] as const,
      request: { params: personParam },
      responses: { 200: { description: 'The person.', content: { 'application/json': { schema: Person } } }, ...errors, 404: notFound },
    }),
    async (c) => {
      const { person } = c.req.valid('param');
      const view = await store.getPerson(person);
      if (!view) throw httpError(404, 'unknown_person', `no history for person "${person}"`);
      const rfm = view.rfm;
      const scores = rfm ? rfmScores({ last: Date.parse(rfm.lastPurchase), count: rfm.purchases, total: rfm.totalValue }, ctx.now()) : null;
      const body: Person = { ...view, rfmScores: scores, recentTransitions: recentTransitions(view.person, view.dialogues, ladder) };
      return c.json(body, 200);
    },
  );
}
