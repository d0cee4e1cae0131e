import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { StreamTransition } from '../../../contract/query.js';
import { RECENT_TRANSITIONS } from '../../store/store.js';
import { errors, security, type QueryRouteContext } from './common.js';

/**
 * `GET /v1/transitions/recent`: the latest stage transitions across everyone, from the short list
 * the fold's trend step keeps (store.ts RECENT_TRANSITIONS), so the dashboard's "Happening now"
 * opens with them before the stream brings new ones.
 */
export function transitionsRecentRoutes(app: OpenAPIHono, ctx: QueryRouteContext): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/transitions/recent',
      summary: 'The latest transitions',
      description:
        `The latest stage transitions folded (at most ${RECENT_TRANSITIONS} are kept), newest first, each as the stream sends it. ` +
        'Stalls and audience changes are not listed; an erased person’s transitions are taken out.',
      tags: ['transitions'],
      security,
      middleware: [ctx.auth.read] as const,
      request: {
        query: z.object({
          limit: z.coerce
            .number()
            .int()
            .min(1)
            .max(RECENT_TRANSITIONS)
            .optional()
            .openapi({ param: { name: 'limit', in: 'query' }, description: `How many (default 20, at most ${RECENT_TRANSITIONS}).`, example: 20 }),
        }),
      },
      responses: {
        200: {
          description: 'The latest transitions.',
          content: { 'application/json': { schema: z.object({ transitions: z.array(StreamTransition) }) } },
        },
        ...errors,
      },
    }),
    async (c) => {
      const { limit = 20 } = c.req.valid('query');
      const transitions = (await ctx.store.recentTransitions(limit)).sort((a, b) => b.at - a.at);
      return c.json({ transitions }, 200);
    },
  );
}
