import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { MAX_NEEDS, Needs } from '../../../contract/query.js';
import { SIGNAL_NAME } from '../../fold/topic-map.js';
import { type CsvValue, csvLine, pullStream, toCsv } from '../csv.js';
import { CursorError, needsList, queryNeeds, type NeedRow, type NeedsPage, type NeedsQuery } from '../needs.js';
import { DURATION, DURATION_HELP, parseDuration } from '../params.js';
import { DEFAULT_LTV_HORIZON_DAYS } from '../crm.js';
import { bad, errors, knownTopic, notFound, PAGE_MAX, security, topicParam, type QueryRouteContext } from './common.js';

const CSV_COLUMNS = ['person', 'topic', 'stage', 'last_activity', 'stage_reached_at', 'interactions', 'channels', 'score', 'ltv_to_date', 'ltv_projected'];

/** A row's CSV cells, CSV_COLUMNS order (a null projection: an empty cell). */
const csvRow = (r: NeedRow, topic: string): CsvValue[] => [
  r.person,
  topic,
  r.stage,
  r.lastActivity,
  r.stageReachedAt,
  r.interactions,
  r.channels.join(';'),
  r.score,
  r.ltv.toDate,
  r.ltv.projected,
];

/** `GET /v1/topics/{topic}/needs`: who to contact, ranked (../needs.ts, ../needs-rank.ts), as JSON pages or CSV. */
export function needsRoutes(app: OpenAPIHono, ctx: QueryRouteContext): void {
  const { store, ladder, stageEnum } = ctx;
  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/topics/{topic}/needs',
      summary: 'Who to contact: people standing at a stage and not past it',
      description:
        'People whose dialogue stands at `stage` (or above it but below `notReached`), ranked by recency × intensity ' +
        '(recency halves every 3 days without activity; intensity = log2(1 + interactions, each weighted by its stage’s position: 1, 2, 3 …, ' +
        'plus the topic map’s weight of each signal open on the dialogue, counted from 1 up to 4095)), ' +
        'listed while their score is at least that of a single interaction `activeWithin` ago (a single look: last active within `activeWithin`; a more intense dialogue stays up to about 11 days longer). ' +
        'Paged by an opaque `cursor`: the list is fixed by the first page, so pages never repeat or skip a person while histories change (people erased or past the need since are left out). ' +
        'With `Accept: text/csv` the same list comes as CSV, or with `Accept: application/x-ndjson` as one JSON `Need` per line: without `limit` all of it, streamed, ' +
        'with `limit` one page (the next cursor, if any, in the `X-Next-Cursor` header). ' +
        'Each row carries the person’s lifetime value (`ltv`: to date and projected, as in the person view), which `minLtv` filters on; ' +
        'it does not change the order: the list is read from indexes ordered by the ranking, so there is no `sort` (a `sort` parameter is refused).',
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
              description: `People per page; default 50, at most ${PAGE_MAX} (CSV and NDJSON without a limit: the whole list, streamed).`,
              example: 50,
            }),
          cursor: z
            .string()
            .max(512)
            .optional()
            .openapi({ param: { name: 'cursor', in: 'query' }, description: 'From `nextCursor` of the previous page.' }),
          signal: z
            .string()
            .regex(SIGNAL_NAME, 'a signal name: a lower-case letter, then up to 31 letters, digits, _ and -')
            .optional()
            .openapi({
              param: { name: 'signal', in: 'query' },
              description:
                'Only people whose dialogue carries this signal of the topic map. Filtered from each page’s own dialogues: a page may hold fewer than `limit` (even none) while `nextCursor` leads on; `total` counts the list unfiltered.',
              example: 'inquiry',
            }),
          open: z
            .enum(['true', 'false'])
            .optional()
            .openapi({ param: { name: 'open', in: 'query' }, description: 'With `signal`: `true` only while it is open, `false` only once closed.' }),
          minLtv: z
            .string()
            .regex(/^\d{1,15}(\.\d{1,6})?$/, 'a non-negative number, such as 250 or 99.5')
            .optional()
            .openapi({
              param: { name: 'minLtv', in: 'query' },
              description:
                'Only people whose lifetime value is at least this: `ltv.projected` when it is a number, else `ltv.toDate` (no fitted model yet, or a history the fit leaves out). ' +
                'Filtered from each page’s own rows, as `signal` is: a page may hold fewer than `limit` (even none) while `nextCursor` leads on; `total` counts the list unfiltered.',
              example: '250',
            }),
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
                description:
                  'person,topic,stage,last_activity,stage_reached_at,interactions,channels,score,ltv_to_date,ltv_projected (empty when null); formula-like cells start with an apostrophe.',
              }),
            },
            'application/x-ndjson': { schema: z.string().openapi({ description: 'One `Need` object per line.' }) },
          },
        },
        ...errors,
        404: notFound,
      },
    }),
    async (c) => {
      const { topic } = c.req.valid('param');
      const q = c.req.valid('query');
      const format = exportFormat(c);
      const stage = ladder.indexOf(q.stage);
      const notReached = q.notReached === undefined ? stage + 1 : ladder.indexOf(q.notReached);
      if (stage === ladder.length - 1)
        throw bad('stage', `"${q.stage}" is the last stage: nobody stands below it after reaching it; pick one of ${ladder.slice(0, -1).join(', ')}`);
      if (notReached <= stage) throw bad('notReached', `"${q.notReached}" must come after stage "${q.stage}" on the ladder (${ladder.join(' < ')})`);
      if (q.limit !== undefined && q.limit > PAGE_MAX)
        throw bad('limit', `at most ${PAGE_MAX} per page (without a limit, the CSV and NDJSON exports stream the whole list)`);
      let activeWithinMs = store.options.quietMs;
      if (q.activeWithin !== undefined) {
        const d = parseDuration(q.activeWithin);
        if (typeof d !== 'number') throw bad('activeWithin', d.error);
        activeWithinMs = d;
      }
      if (c.req.query('sort') !== undefined)
        throw bad(
          'sort',
          'the needs list has one order, its ranking (recency × intensity), which its indexes are kept in; filter by lifetime value with minLtv instead',
        );
      if (q.open !== undefined && q.signal === undefined) throw bad('open', 'open filters a signal: give signal too');
      if (q.signal !== undefined && !store.options.signals?.has(q.signal)) {
        const known = [...(store.options.signals?.keys() ?? [])];
        throw bad('signal', `"${q.signal}" is not a signal of the topic map (${known.length ? known.join(', ') : 'it declares none'})`);
      }
      await knownTopic(ctx, topic);
      const query: NeedsQuery = { topic, stage, notReached, activeWithinMs, limit: q.limit ?? 50, cursor: q.cursor, now: ctx.now() };
      if (q.signal !== undefined) query.signal = { name: q.signal, open: q.open === undefined ? undefined : q.open === 'true' };
      if (q.minLtv !== undefined) query.minLtv = Number(q.minLtv);
      query.ltvHorizonDays = ctx.ltvHorizonDays ?? DEFAULT_LTV_HORIZON_DAYS;
      const cursorErrors = async <T>(read: () => Promise<T>): Promise<T> => {
        try {
          return await read();
        } catch (err) {
          if (err instanceof CursorError) throw bad('cursor', err.message);
          throw err;
        }
      };
      if (format && q.limit === undefined) {
        // The whole list, streamed: the first page is read before answering (its errors are a 400, its total a header).
        const list = needsList(store, ladder, query);
        const head = await cursorErrors(() => list.next());
        const { total, asOf } = head.value as { total: number; asOf: number };
        const line = format === 'csv' ? (r: NeedRow) => csvLine(csvRow(r, topic)) : (r: NeedRow) => `${JSON.stringify(r)}\n`;
        return c.body(pullStream(format === 'csv' ? csvLine(CSV_COLUMNS) : '', list as AsyncGenerator<NeedRow>, line), 200, {
          ...exportHeaders(format, topic, q.stage, asOf),
          'x-total-count': String(total),
        });
      }
      const page: NeedsPage = await cursorErrors(() => queryNeeds(store, ladder, query));
      if (format) {
        const body =
          format === 'csv'
            ? toCsv(
                CSV_COLUMNS,
                page.rows.map((r) => csvRow(r, topic)),
              )
            : page.rows.map((r) => `${JSON.stringify(r)}\n`).join('');
        const headers: Record<string, string> = { ...exportHeaders(format, topic, q.stage, page.asOf), 'x-total-count': String(page.total) };
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

/** `Accept: text/csv` (alone or among others) asks for the CSV export, `application/x-ndjson` for one JSON row per line. */
function exportFormat(c: Context): 'csv' | 'ndjson' | null {
  const accept = c.req.header('accept') ?? '';
  if (/\btext\/csv\b/i.test(accept)) return 'csv';
  if (/\bapplication\/x-ndjson\b/i.test(accept)) return 'ndjson';
  return null;
}

function exportHeaders(format: 'csv' | 'ndjson', topic: string, stage: string, asOf: number): Record<string, string> {
  const day = new Date(asOf).toISOString().slice(0, 10);
  const name = `needs-${topic}-${stage}-${day}.${format === 'csv' ? 'csv' : 'ndjson'}`.replace(/[^A-Za-z0-9._-]+/g, '_');
  return {
    'content-type': format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
    'content-disposition': `attachment; filename="${name}"`,
  };
}
