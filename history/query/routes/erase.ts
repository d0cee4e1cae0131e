import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import { Erased } from '../../../contract/query.js';
import { httpError } from '../../../lib/http-errors.js';
import { errors, notFound, personParam, security, type QueryRouteContext } from './common.js';

/** `DELETE /v1/people/{person}`: erases a person and every visitor id linked to them (a full key only). */
export function eraseRoutes(app: OpenAPIHono, ctx: QueryRouteContext): void {
  const { store, logger } = ctx;
  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/people/{person}',
      summary: 'Erase a person',
      description: 'Removes the person and every visitor id linked to them from every key and index. Needs a key from API_KEYS.',
      tags: ['people'],
      security,
      middleware: [ctx.auth.erase] as const,
      request: { params: personParam },
      responses: { 200: { description: 'Erased.', content: { 'application/json': { schema: Erased } } }, ...errors, 404: notFound },
    }),
    async (c) => {
      const { person } = c.req.valid('param');
      const view = await store.getPerson(person);
      if (!view || !(await store.erase(person))) throw httpError(404, 'unknown_person', `no history for person "${person}"`);
      logger.info({ person: view.person, linked: view.linkedIds.length }, 'person erased');
      const body: Erased = { person: view.person, erasedIds: [view.person, ...view.linkedIds] };
      return c.json(body, 200);
    },
  );
}
