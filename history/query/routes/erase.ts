import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import { Erased } from '../../../contract/query.js';
import { errors, personIdParam, security, type QueryRouteContext } from './common.js';

/**
 * `DELETE /v1/people/{person}`: erases a person and every visitor id linked to them (a full key only),
 * everywhere: the store (atomically per id, history/store/redis.ts `erase`), and through the store the
 * process serves, `history.erasures`, which every reader of `clicks.raw` honours (a replay included).
 */
export function eraseRoutes(app: OpenAPIHono, ctx: QueryRouteContext): void {
  const { store, logger } = ctx;
  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/people/{person}',
      summary: 'Erase a person',
      description:
        'Removes the person and every visitor id linked to them from every key, index and open needs listing, and records the erasure (Kafka topic ' +
        '`history.erasures`): records of these ids received until now are never folded again, also not by a replay; events after it fold as a new ' +
        'history. Recorded also for an id nothing is held of yet (its events may still be on their way), so the answer is 200 either way (`held`). ' +
        'Needs a key from API_KEYS.',
      tags: ['people'],
      security,
      middleware: [ctx.auth.erase] as const,
      request: { params: personIdParam },
      responses: { 200: { description: 'Erased.', content: { 'application/json': { schema: Erased } } }, ...errors },
    }),
    async (c) => {
      const { person } = c.req.valid('param');
      const at = ctx.now();
      const r = await store.erase(person, at);
      // No id in the log line: logs are kept elsewhere, for other reasons; the erasure itself is on history.erasures.
      logger.info({ ids: r.ids.length, held: r.held, at }, 'person erased');
      const body: Erased = {
        person: r.person,
        erasedIds: [r.person, ...r.ids.filter((x) => x !== r.person)],
        held: r.held,
        erasedAt: new Date(at).toISOString(),
      };
      return c.json(body, 200);
    },
  );
}
