import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { Trend } from '../../../contract/query.js';
import { bucketOf, DAY_MS, DEFAULT_TREND_RETENTION, HOUR_MS, oldestKept, type Granularity } from '../../crm/trends.js';
import { bad, errors, knownTopic, notFound, security, timeOf, timeParam, topicParam, type QueryRouteContext } from './common.js';

const WIDTH: Record<Granularity, number> = { hour: HOUR_MS, day: DAY_MS };
const KEPT: Record<Granularity, number> = { hour: DEFAULT_TREND_RETENTION.hours, day: DEFAULT_TREND_RETENTION.days };
/** Without `since`: the last two days of hours, the last thirty days. */
const DEFAULT_BUCKETS: Record<Granularity, number> = { hour: 48, day: 30 };

/** `GET /v1/topics/{topic}/trend`: transitions per stage and UTC hour or day, from the trend counters (../../crm/trends.ts). */
export function trendRoutes(app: OpenAPIHono, ctx: QueryRouteContext): void {
  const { store, ladder } = ctx;
  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/topics/{topic}/trend',
      summary: 'Transitions per stage of a topic, per hour or per day',
      description:
        'How many dialogues about the topic moved into each stage in each UTC hour (`by=hour`) or day (`by=day`) of the window [since, until], oldest first, every bucket present (zeros where nothing happened). ' +
        'The window is widened to the whole buckets it touches. Without `until` it ends now; without `since` it covers the last 48 hours, or the last 30 days. ' +
        `Counters are kept ${DEFAULT_TREND_RETENTION.hours / 24} days by the hour and ${DEFAULT_TREND_RETENTION.days} days by the day: a longer window is refused (400); the part of a window before that, or after now, is left out. ` +
        'They count the transitions as the worker folds them (a redelivered record counts once); a worker that crashes right after writing a batch may leave that batch’s few transitions uncounted: counts, not a ledger.',
      tags: ['topics'],
      security,
      middleware: [ctx.auth.read] as const,
      request: {
        params: topicParam,
        query: z.object({
          by: z
            .enum(['hour', 'day'])
            .optional()
            .openapi({ param: { name: 'by', in: 'query' }, description: 'Bucket width (default hour).', example: 'day' }),
          since: timeParam('since', 'Start of the window: its bucket is the first.'),
          until: timeParam('until', 'End of the window: its bucket is the last (default now).'),
        }),
      },
      responses: { 200: { description: 'The trend.', content: { 'application/json': { schema: Trend } } }, ...errors, 404: notFound },
    }),
    async (c) => {
      const { topic } = c.req.valid('param');
      const q = c.req.valid('query');
      const by: Granularity = q.by ?? 'hour';
      const now = ctx.now();
      const until = timeOf(ctx, 'until', q.until) ?? now;
      const since = timeOf(ctx, 'since', q.since) ?? until - (DEFAULT_BUCKETS[by] - 1) * WIDTH[by];
      if (since > until) throw bad('until', 'the window ends before it starts (until is earlier than since)');
      if (until - since > KEPT[by] * WIDTH[by]) {
        const longest = by === 'hour' ? `${KEPT.hour / 24} days` : `${KEPT.day} days`;
        throw bad('since', `by ${by} the counters are kept ${longest}: ask for a shorter window${by === 'hour' ? ', or by day' : ''}`);
      }
      let last = bucketOf(until, by);
      // A window of exactly the retention touches one bucket more: its oldest, partly outside, goes.
      let first = Math.max(bucketOf(since, by), last - KEPT[by] + 1);
      await knownTopic(ctx, topic);
      const requested = { first, last };
      first = Math.max(first, oldestKept(by, now));
      last = Math.min(last, bucketOf(now, by));
      const counts = first <= last ? await store.trend(topic, by, first, last) : [];
      const bounds = first <= last ? { first, last } : requested;
      const body: Trend = {
        topic,
        by,
        since: new Date(bounds.first * WIDTH[by]).toISOString(),
        until: new Date((bounds.last + 1) * WIDTH[by] - 1).toISOString(),
        buckets: counts.map((row, i) => ({
          start: new Date((first + i) * WIDTH[by]).toISOString(),
          counts: Object.fromEntries(ladder.map((stage, s) => [stage, row[s] ?? 0])),
        })),
      };
      return c.json(body, 200);
    },
  );
}
