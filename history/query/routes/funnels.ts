import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { Funnel } from '../../../contract/query.js';
import { countedWindow } from '../../store/hour-counts.js';
import { computeFunnel } from '../funnel.js';
import { bad, errors, knownTopic, notFound, security, timeOf, timeParam, topicParam, type QueryRouteContext } from './common.js';

const DEFINITION =
  'people whose last activity on the topic lies in the window, by the highest stage reached; reached = at least this stage; conversionToNext = reached(next) / reached(this)';

const MAX_DATE_MS = 8.64e15;

/** `GET /v1/topics/{topic}/funnel`: a topic's funnel in a time window (arithmetic: ../funnel.ts). */
export function funnelsRoutes(app: OpenAPIHono, ctx: QueryRouteContext): void {
  const { store, ladder } = ctx;
  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/topics/{topic}/funnel',
      summary: 'A topic’s funnel in a time window',
      description:
        'The people whose dialogue about the topic was last active within [since, until] (both inclusive, both optional), counted by the highest stage they reached. ' +
        '`reached` is cumulative: people who reached at least that stage. `conversionToNext` = reached(next) / reached(this). ' +
        'Without `until` the window runs to now, so `since=7d` means "active in the last 7 days"; with an `until` in the past, someone also active after it counts at their latest activity, i.e. not in this window. ' +
        'Counts are exact to the hour: the window is widened to the whole UTC hours it touches (from the start of since’s hour to the end of until’s), and `window` in the answer gives the bounds counted. ' +
        'A window in the future counts nobody.',
      tags: ['topics'],
      security,
      middleware: [ctx.auth.read] as const,
      request: {
        params: topicParam,
        query: z.object({
          since: timeParam('since', 'Start of the window (last activity at or after it).'),
          until: timeParam('until', 'End of the window (last activity at or before it). A date alone means its first millisecond, UTC.'),
        }),
      },
      responses: { 200: { description: 'The funnel.', content: { 'application/json': { schema: Funnel } } }, ...errors, 404: notFound },
    }),
    async (c) => {
      const { topic } = c.req.valid('param');
      const q = c.req.valid('query');
      const since = timeOf(ctx, 'since', q.since);
      const until = timeOf(ctx, 'until', q.until);
      if (since !== undefined && until !== undefined && since > until) throw bad('until', 'the window ends before it starts (until is earlier than since)');
      await knownTopic(ctx, topic);
      const [counts = []] = await store.stageCounts([topic], { since, until });
      // The end of the last representable date's hour lies past what a Date holds: say that date.
      const iso = (t: number | undefined) => (t === undefined ? null : new Date(Math.min(t, MAX_DATE_MS)).toISOString());
      // The bounds actually counted: the stores count by hour of last activity (hour-counts.ts).
      const counted = countedWindow({ since, until });
      const body: Funnel = {
        topic,
        window: { since: iso(counted.since), until: iso(counted.until) },
        definition: DEFINITION,
        ...computeFunnel(ladder, counts),
      };
      return c.json(body, 200);
    },
  );
}
