import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { AUDIENCE_NAME } from '../../../contract/audience.js';
import { ErrorBody, StreamTransition } from '../../../contract/query.js';
import { EVENT_KINDS, type EventKind } from '../../../contract/transition.js';
import { httpError } from '../../../lib/http-errors.js';
import { streamTransitions } from '../../transitions/sse.js';
import { errors, MAX_TOPIC, security, type QueryRouteContext } from './common.js';

/** A comma-separated list of kinds, each once or more: `stalled,entered`. */
const KINDS_LIST = new RegExp(`^(${EVENT_KINDS.join('|')})(,(${EVENT_KINDS.join('|')}))*$`);

const kindsOf = (s: string | undefined): EventKind[] | undefined => (s === undefined ? undefined : [...new Set(s.split(',') as EventKind[])]);

/** `GET /v1/transitions/stream`: live events of history.transitions as server-sent events (../../transitions/sse.ts). */
export function transitionsRoutes(app: OpenAPIHono, ctx: QueryRouteContext): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/transitions/stream',
      summary: 'Live transitions, stalls and audience changes (server-sent events)',
      description:
        'An `event: ready` once subscribed (`data`: the filter in effect, `{"topic", "to", "audience", "kinds"}`), then one event per change as it happens, named by its kind, ' +
        'with `id` = the event id and `data` = the event as JSON, exactly as published on `history.transitions`:\n\n' +
        '- `event: transition`: a dialogue advanced a stage (kind `stage`), `data` a Transition `{"id", "person", "topic", "from", "to", "at", "channel"}` (the schema below; it has no `kind`);\n' +
        '- `event: stalled`: a dialogue went quiet at a stage for as long as a stall rule of the topic map waits, `data` `{"kind": "stalled", "id", "person", "topic", "stage", "rule", "since", "at"}` ' +
        '(`since`: its last activity, `at`: since + the rule’s wait, epoch ms); once per dialogue, rule and quiet spell;\n' +
        '- `event: entered` and `event: exited`: a person entered or left an audience, `data` `{"kind": "entered"|"exited", "id", "audience", "person", "at"}` (epoch ms).\n\n' +
        'A keep-alive comment comes every 20 s. Filters narrow, each one given must hold: `kinds` (default all), `topic` (transitions and stalls of the topic; audience events have no topic, so a `topic` filter leaves them out), ' +
        '`to` (stage transitions to that stage only), `audience` (that audience’s entries and exits only). ' +
        'EventSource clients that listen for `transition` alone keep receiving exactly what they did before. ' +
        'Browsers’ EventSource cannot send headers: it may send the key in the `clickfold_key` cookie instead (this endpoint only).',
      tags: ['transitions'],
      security,
      middleware: [ctx.auth.readStream] as const,
      request: {
        query: z.object({
          kinds: z
            .string()
            .regex(KINDS_LIST, `a comma-separated list of ${EVENT_KINDS.join(', ')}`)
            .optional()
            .openapi({
              param: { name: 'kinds', in: 'query' },
              description: `Only these kinds, comma-separated: ${EVENT_KINDS.map((k) => `\`${k}\``).join(', ')} (\`stage\` is a transition); default all.`,
              example: 'stage,stalled',
            }),
          topic: z
            .string()
            .min(1)
            .max(MAX_TOPIC)
            .optional()
            .openapi({ param: { name: 'topic', in: 'query' }, description: 'Only transitions and stalls of this topic (no audience events).' }),
          to: ctx.stageEnum
            .optional()
            .openapi({ param: { name: 'to', in: 'query' }, description: 'Only stage transitions to this stage (no stalls, no audience events).' }),
          audience: z
            .string()
            .regex(AUDIENCE_NAME, 'an audience name: lower-case letters, digits, - and _')
            .optional()
            .openapi({ param: { name: 'audience', in: 'query' }, description: 'Only entries into and exits from this audience.', example: 'hesitant-buyers' }),
        }),
      },
      responses: {
        200: {
          description: 'The event stream. The schema is the `data` of `event: transition`; the other events are described above.',
          content: { 'text/event-stream': { schema: StreamTransition } },
        },
        ...errors,
        503: { description: 'This process has no live feed.', content: { 'application/json': { schema: ErrorBody } } },
      },
    }),
    (c) => {
      if (!ctx.feed) throw httpError(503, 'no_live_feed', 'this process has no live feed of transitions');
      const q = c.req.valid('query');
      return streamTransitions(c, ctx.feed, { kinds: kindsOf(q.kinds), topic: q.topic, to: q.to, audience: q.audience });
    },
  );
}
