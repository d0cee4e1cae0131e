import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { MAX_NEEDS, Needs } from '../../../contract/query.js';
import { toCsv } from '../csv.js';
import { CursorError, queryNeeds, type NeedsPage } from '../needs.js';
import { DURATION, DURATION_HELP, parseDuration } from '../params.js';
import { bad, errors, knownTopic, notFound, PAGE_MAX, security, topicParam, type QueryRouteContext } from './common.js';

const CSV_COLUMNS = ['person', 'topic', 'stage', 'last_activity', 'stage_reached_at', 'interactions', 'channels', 'score'];

/** `GET /v1/topics/{topic}/needs`: who to contact, ranked (../needs.ts, ../needs-rank.ts), as JSON pages or CSV. */
export function needsRoutes(app: OpenAPIHono, ctx: QueryRouteContext): void {
  const { store, ladder, stageEnum } = ctx;
  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/topics/{topic}/needs',
      summary: 'Who to contact: people standing at a stage and not past it',
      description:
        'People whose dialogue stands at `stage` (or above it but below `notReached`), last active within `activeWithin`, ranked by recency × intensity ' +
        '(recency halves every 3 days without activity; intensity = log2(1 + interactions, each weighted by its stage’s position: 1, 2, 3 …)). ' +
        'Paged by an opaque `cursor`: the list is fixed by the first page, so pages never repeat or skip a person while histories change (people erased or past the need since are left out). ' +
        'With `Accept: text/csv` the same list comes as CSV (all of it unless `limit` is given; the next cursor, if any, in the `X-Next-Cursor` header).',
      tags: ['topics'],
      security,
      middleware: [ctx.auth.read] as const,
      request: {
        params: topicParam,
        query: z.object({
          stage: stageEnum.openapi({ param: { name: 'stage', in: 'query' }, description: 'The stage people stand at.', example: ladder[1] }),
          notReached: stageEnum.optional().openapi({
            param: { name: 'notReached', in: 'query' },
            description: 'The first stage they have not reached; default: the stage after `stage`.',
            example: ladder.at(-1),
          }),
          activeWithin: z
            .string()
            .regex(DURATION, `not ${DURATION_HELP}`)
            .optional()
            .openapi({
              param: { name: 'activeWithin', in: 'query' },
              description: 'Last activity at most this long ago; default: the topic map’s quiet period (dialogues still open).',
              example: '7d',
            }),
          limit: z.coerce
            .number()
            .int()
            .min(1)
            .max(MAX_NEEDS)
            .optional()
            .openapi({
              param: { name: 'limit', in: 'query' },
              description: `People per page; default 50, at most ${PAGE_MAX} (CSV: the whole list, at most ${MAX_NEEDS}).`,
              example: 50,
            }),
          cursor: z
            .string()
            .max(512)
            .optional()
            .openapi({ param: { name: 'cursor', in: 'query' }, description: 'From `nextCursor` of the previous page.' }),
        }),
      },
      responses: {
        200: {
          description: 'A page of the list.',
          headers: { 'X-Next-Cursor': { description: 'CSV only: the cursor of the next page, when there is one.', schema: { type: 'string' } } },
          content: {
            'application/json': { schema: Needs },
            'text/csv': {
              schema: z.string().openapi({
                description: 'person,topic,stage,last_activity,stage_reached_at,interactions,channels,score; formula-like cells start with an apostrophe.',
              }),
            },
          },
        },
        ...errors,
        404: notFound,
      },
    }),
    async (c) => {
      const { topic } = c.req.valid('param');
      const q = c.req.valid('query');
      const csv = wantsCsv(c);
      const stage = ladder.indexOf(q.stage);
      const notReached = q.notReached === undefined ? stage + 1 : ladder.indexOf(q.notReached);
      if (stage === ladder.length - 1)
        throw bad('stage', `"${q.stage}" is the last stage: nobody stands below it after reaching it; pick one of ${ladder.slice(0, -1).join(', ')}`);
      if (notReached <= stage) throw bad('notReached', `"${q.notReached}" must come after stage "${q.stage}" on the ladder (${ladder.join(' < ')})`);
      if (!csv && q.limit !== undefined && q.limit > PAGE_MAX) throw bad('limit', `at most ${PAGE_MAX} per page (the CSV export takes up to ${MAX_NEEDS})`);
      let activeWithinMs = store.options.quietMs;
      if (q.activeWithin !== undefined) {
        const d = parseDuration(q.activeWithin);
        if (typeof d !== 'number') throw bad('activeWithin', d.error);
        activeWithinMs = d;
      }
      await knownTopic(ctx, topic);
      const limit = q.limit ?? (csv ? MAX_NEEDS : 50);
      let page: NeedsPage;
      try {
        page = await queryNeeds(store, ladder, { topic, stage, notReached, activeWithinMs, limit, cursor: q.cursor, now: ctx.now() });
      } catch (err) {
        if (err instanceof CursorError) throw bad('cursor', err.message);
        throw err;
      }
      if (csv) {
        const body = toCsv(
          CSV_COLUMNS,
          page.rows.map((r) => [r.person, topic, r.stage, r.lastActivity, r.stageReachedAt, r.interactions, r.channels.join(';'), r.score]),
        );
        const day = new Date(page.asOf).toISOString().slice(0, 10);
        const name = `needs-${topic}-${q.stage}-${day}.csv`.replace(/[^A-Za-z0-9._-]+/g, '_');
        const headers: Record<string, string> = {
          'content-type': 'text/csv; charset=utf-8',
          'content-disposition': `attachment; filename="${name}"`,
          'x-total-count': String(page.total),
        };
        if (page.nextCursor) headers['x-next-cursor'] = page.nextCursor;
        return c.body(body, 200, headers);
      }
      const body: Needs = {
        topic,
        stage: q.stage,
        notReached: ladder[notReached]!,
        activeWithin: q.activeWithin ?? `${Math.round(activeWithinMs / 86_400_000)}d`,
        asOf: new Date(page.asOf).toISOString(),
        total: page.total,
        truncated: page.truncated,
        nextCursor: page.nextCursor,
        needs: page.rows,
      };
      return c.json(body, 200);
    },
  );
}

/** `Accept: text/csv` (alone or among others) asks for the CSV export. */
function wantsCsv(c: Context): boolean {
  return /\btext\/csv\b/i.test(c.req.header('accept') ?? '');
}
