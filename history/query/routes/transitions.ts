import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { ErrorBody, StreamTransition } from '../../../contract/query.js';
import { httpError } from '../../../lib/http-errors.js';
import { streamTransitions } from '../../transitions/sse.js';
import { errors, MAX_TOPIC, security, type QueryRouteContext } from './common.js';

/** `GET /v1/transitions/stream`: live transitions as server-sent events (../../transitions/sse.ts). */
export function transitionsRoutes(app: OpenAPIHono, ctx: QueryRouteContext): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/transitions/stream',
      summary: 'Live transitions (server-sent events)',
      description:
        'An `event: ready` once subscribed, then one `event: transition` per stage advance as it happens (`id` = the transition id, `data` = the Transition as JSON), and a keep-alive comment every 20 s. ' +
        'Browsers’ EventSource cannot send headers: it may send the key in the `clickfold_key` cookie instead (this endpoint only).',
      tags: ['transitions'],
      security,
      middleware: [ctx.auth.readStream] as const,
      request: {
        query: z.object({
          topic: z
            .string()
            .min(1)
            .max(MAX_TOPIC)
            .optional()
            .openapi({ param: { name: 'topic', in: 'query' }, description: 'Only this topic.' }),
          to: ctx.stageEnum.optional().openapi({ param: { name: 'to', in: 'query' }, description: 'Only advances to this stage.' }),
        }),
      },
      responses: {
        200: { description: 'The event stream.', content: { 'text/event-stream': { schema: StreamTransition } } },
        ...errors,
        503: { description: 'This process has no live feed.', content: { 'application/json': { schema: ErrorBody } } },
      },
    }),
    (c) => {
      if (!ctx.feed) throw httpError(503, 'no_live_feed', 'this process has no live feed of transitions');
      const q = c.req.valid('query');
      return streamTransitions(c, ctx.feed, { topic: q.topic, to: q.to });
    },
  );
}
