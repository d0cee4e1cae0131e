import { createHash } from 'node:crypto';
import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { type StalledEntry, Stalled, StallRules } from '../../../contract/query.js';
import { STALL_RULE_NAME } from '../../../contract/stall-rule.js';
import { httpError } from '../../../lib/http-errors.js';
import type { CompiledStallRule } from '../../stalls/rules.js';
import type { AutomationEntry, AutomationSet, HistoryStore } from '../../store/store.js';
import { csvLine, pullStream } from '../csv.js';
import { bad, errors, knownTopic, MAX_ID, notFound, PAGE_MAX, type QueryRouteContext, security, topicParam } from './common.js';

/**
 * `GET /v1/stalls`: the topic map's stall rules; `GET /v1/topics/{topic}/stalled`: the dialogues of a
 * topic a rule holds stalled now, most recently stalled first. Also the paging and export helpers
 * the audience members share (./audiences.ts): both read an automation set of the store.
 */

// --- paging an automation set ------------------------------------------------------------------

/**
 * A cursor over an automation set: the last entry given, and which set it belongs to. Not a snapshot
 * (unlike the needs listings): people who enter the set while someone pages come before the cursor
 * and are in the next first page; people who leave are not given again.
 */
interface SetCursor {
  v: 1;
  /** The last entry given. */
  p: string;
  a: number;
  /** Which set (setTag). */
  q: string;
}

const NOT_OURS = 'this cursor is not one the API gave out: start again without a cursor';

const setTag = (set: AutomationSet) =>
  createHash('sha256')
    .update(JSON.stringify('audience' in set ? ['a', set.audience] : ['s', set.topic, set.rule]))
    .digest('base64url')
    .slice(0, 12);

export function encodeSetCursor(set: AutomationSet, last: AutomationEntry): string {
  const c: SetCursor = { v: 1, p: last.person, a: last.at, q: setTag(set) };
  return Buffer.from(JSON.stringify(c)).toString('base64url');
}

/** A cursor is attacker-controlled: every field is checked before the store reads with it. */
export function decodeSetCursor(set: AutomationSet, s: string): AutomationEntry {
  let c: Partial<SetCursor>;
  try {
    c = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as Partial<SetCursor>;
  } catch {
    throw bad('cursor', NOT_OURS);
  }
  if (
    typeof c !== 'object' ||
    c === null ||
    c.v !== 1 ||
    typeof c.p !== 'string' ||
    c.p.length === 0 ||
    c.p.length > MAX_ID ||
    !Number.isSafeInteger(c.a) ||
    c.a! < 0 ||
    typeof c.q !== 'string'
  ) {
    throw bad('cursor', NOT_OURS);
  }
  if (c.q !== setTag(set)) throw bad('cursor', 'this cursor belongs to another list: keep the path and `rule` as they were on the first page');
  return { person: c.p, at: c.a! };
}

export const cursorQuery = z
  .string()
  .max(512)
  .optional()
  .openapi({ param: { name: 'cursor', in: 'query' }, description: 'From `nextCursor` (or `X-Next-Cursor`) of the previous page.' });

export const limitQuery = z.coerce
  .number()
  .int()
  .min(1)
  .max(PAGE_MAX)
  .optional()
  .openapi({
    param: { name: 'limit', in: 'query' },
    description: `Entries per page; default 50, at most ${PAGE_MAX} (CSV and NDJSON without a limit: the whole list, streamed).`,
    example: 50,
  });

export const formatQuery = z
  .enum(['json', 'csv', 'ndjson'])
  .optional()
  .openapi({
    param: { name: 'format', in: 'query' },
    description: 'csv or ndjson for an export (also chosen by `Accept: text/csv` or `application/x-ndjson`); default json.',
  });

export type ExportFormat = 'csv' | 'ndjson';

/** `format=` wins over `Accept`. */
export function exportFormatOf(c: Context, format: 'json' | 'csv' | 'ndjson' | undefined): ExportFormat | null {
  if (format !== undefined) return format === 'json' ? null : format;
  const accept = c.req.header('accept') ?? '';
  if (/\btext\/csv\b/i.test(accept)) return 'csv';
  if (/\bapplication\/x-ndjson\b/i.test(accept)) return 'ndjson';
  return null;
}

export function exportHeaders(format: ExportFormat, name: string, now: number): Record<string, string> {
  const day = new Date(now).toISOString().slice(0, 10);
  const file = `${name}-${day}.${format}`.replace(/[^A-Za-z0-9._-]+/g, '_');
  return {
    'content-type': format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
    'content-disposition': `attachment; filename="${file}"`,
  };
}

/** One page of a set; `more` from reading one entry past it, so the last page names no cursor. */
export async function setPage(
  store: HistoryStore,
  set: AutomationSet,
  after: AutomationEntry | undefined,
  limit: number,
): Promise<{ entries: AutomationEntry[]; next: AutomationEntry | null }> {
  const read = await store.automationPage(set, after, limit + 1);
  const entries = read.slice(0, limit);
  return { entries, next: read.length > limit ? (entries.at(-1) ?? null) : null };
}

/** Rows of the page, for one page's worth of entries (stalled reads the dialogues; members need nothing). */
export type RowsOf<R> = (entries: AutomationEntry[]) => Promise<R[]>;

/** The whole set from `after` on, a page at a time, as rows; the next page is read only when the consumer asks for more. */
export async function* setRows<R>(store: HistoryStore, set: AutomationSet, after: AutomationEntry | undefined, rowsOf: RowsOf<R>): AsyncGenerator<R> {
  let cursor = after;
  for (;;) {
    const page = await setPage(store, set, cursor, PAGE_MAX);
    yield* await rowsOf(page.entries);
    if (!page.next) return;
    cursor = page.next;
  }
}

/**
 * A list route's answer: JSON (one page), or an export (CSV, NDJSON): one page with `limit`, the
 * whole list streamed without. `total` and the next cursor also in headers for the exports.
 */
export async function answerList<R>(
  c: Context,
  q: { limit?: number | undefined; cursor?: string | undefined; format?: 'json' | 'csv' | 'ndjson' | undefined },
  list: {
    store: HistoryStore;
    set: AutomationSet;
    rowsOf: RowsOf<R>;
    csv: { columns: string[]; cells: (r: R) => (string | number | null)[] };
    file: string;
    now: number;
    json: (page: { rows: R[]; total: number; nextCursor: string | null }) => unknown;
  },
): Promise<Response> {
  const format = exportFormatOf(c, q.format);
  const after = q.cursor === undefined ? undefined : decodeSetCursor(list.set, q.cursor);
  const total = await list.store.automationCount(list.set);
  const line = format === 'csv' ? (r: R) => csvLine(list.csv.cells(r)) : (r: R) => `${JSON.stringify(r)}\n`;
  const head = format === 'csv' ? csvLine(list.csv.columns) : '';
  if (format && q.limit === undefined) {
    return c.body(pullStream(head, setRows(list.store, list.set, after, list.rowsOf), line), 200, {
      ...exportHeaders(format, list.file, list.now),
      'x-total-count': String(total),
    });
  }
  const page = await setPage(list.store, list.set, after, q.limit ?? 50);
  const rows = await list.rowsOf(page.entries);
  const nextCursor = page.next ? encodeSetCursor(list.set, page.next) : null;
  if (format) {
    const headers: Record<string, string> = { ...exportHeaders(format, list.file, list.now), 'x-total-count': String(total) };
    if (nextCursor) headers['x-next-cursor'] = nextCursor;
    return c.body(head + rows.map(line).join(''), 200, headers);
  }
  return c.json(list.json({ rows, total, nextCursor }), 200);
}

export const exportContent = (schema: z.ZodType, csvColumns: string[], item: string) => ({
  'application/json': { schema },
  'text/csv': {
    schema: z.string().openapi({ description: `${csvColumns.join(',')}; formula-like cells start with an apostrophe.` }),
  },
  'application/x-ndjson': { schema: z.string().openapi({ description: `One \`${item}\` object per line.` }) },
});

export const exportHeadersDoc = {
  'X-Next-Cursor': { description: 'CSV and NDJSON with `limit`: the cursor of the next page, when there is one.', schema: { type: 'string' as const } },
  'X-Total-Count': { description: 'CSV and NDJSON: entries in the whole list.', schema: { type: 'string' as const } },
};

// --- durations ---------------------------------------------------------------------------------

const UNITS: [string, number][] = [
  ['w', 7 * 86_400_000],
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1000],
];

/** A rule's wait as the topic map writes it: the largest unit that divides it (3d, not 72h). */
export function durationText(ms: number): string {
  for (const [unit, size] of UNITS) if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  return `${Math.max(1, Math.round(ms / 1000))}s`;
}

// --- the routes --------------------------------------------------------------------------------

const STALLED_COLUMNS = ['person', 'topic', 'rule', 'stage', 'since', 'stalled_at'];

export function stallsRoutes(app: OpenAPIHono, ctx: QueryRouteContext, stallRules: readonly CompiledStallRule[]): void {
  const { store, ladder } = ctx;
  const rules = new Map(stallRules.map((r) => [r.name, r]));

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/stalls',
      summary: 'The stall rules of the topic map',
      description:
        'A dialogue that stands at `stage` with no activity for `after` counts as stalled under the rule, once per quiet spell (a `stalled` event on the transitions stream and webhooks). ' +
        'Rules are part of the topic map (`"stalls"`).',
      tags: ['stalls'],
      security,
      middleware: [ctx.auth.read] as const,
      responses: { 200: { description: 'The rules.', content: { 'application/json': { schema: StallRules } } }, 401: errors[401] },
    }),
    async (c) => {
      const body: StallRules = {
        rules: stallRules.map((r) => ({
          name: r.name,
          stage: ladder[r.stage] ?? String(r.stage),
          after: durationText(r.afterMs),
          afterMs: r.afterMs,
          topics: r.topics.source,
        })),
      };
      return c.json(body, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/topics/{topic}/stalled',
      summary: 'Dialogues of a topic stalled by a rule now',
      description:
        'People whose dialogue about the topic stands at the rule’s stage with no activity since `since`, for at least the rule’s wait (`at` = since + wait), most recently stalled first. ' +
        'New activity takes a dialogue out (and re-arms the rule). Paged by an opaque `cursor`; `format=csv` or `format=ndjson` (or the matching `Accept`) exports, without `limit` the whole list, streamed.',
      tags: ['stalls'],
      security,
      middleware: [ctx.auth.read] as const,
      request: {
        params: topicParam,
        query: z.object({
          rule: z
            .string()
            .regex(STALL_RULE_NAME, 'a stall rule name: lower-case letters, digits, - and _, at most 64')
            .openapi({ param: { name: 'rule', in: 'query' }, description: 'A stall rule of the topic map (`GET /v1/stalls`).', example: 'quiet-at-detail' }),
          limit: limitQuery,
          cursor: cursorQuery,
          format: formatQuery,
        }),
      },
      responses: {
        200: { description: 'A page of the list.', headers: exportHeadersDoc, content: exportContent(Stalled, STALLED_COLUMNS, 'StalledEntry') },
        ...errors,
        404: { ...notFound, description: 'No such topic or stall rule.' },
      },
    }),
    async (c) => {
      const { topic } = c.req.valid('param');
      const q = c.req.valid('query');
      const rule = rules.get(q.rule);
      if (!rule)
        throw httpError(
          404,
          'unknown_rule',
          `"${q.rule}" is not a stall rule of the topic map${rules.size ? ` (${[...rules.keys()].join(', ')})` : ' (it has none)'}`,
        );
      await knownTopic(ctx, topic);
      if (!rule.topics.matches(topic)) throw bad('rule', `rule "${rule.name}" watches topics ${rule.topics.source}, not "${topic}"`);
      const set: AutomationSet = { topic, rule: rule.name };
      const stage = ladder[rule.stage] ?? String(rule.stage);
      // The set is kept by the fold's index step, a moment after the person's write: the dialogue says whether it still holds.
      const rowsOf: RowsOf<StalledEntry> = async (entries) => {
        const dialogues = await store.dialogues(
          topic,
          entries.map((e) => e.person),
        );
        const rows: StalledEntry[] = [];
        entries.forEach((e, i) => {
          const d = dialogues[i];
          if (d && d.stage === rule.stage && d.last + rule.afterMs === e.at) {
            rows.push({ person: e.person, stage, since: new Date(d.last).toISOString(), at: new Date(e.at).toISOString() });
          }
        });
        return rows;
      };
      return answerList(c, q, {
        store,
        set,
        rowsOf,
        csv: { columns: STALLED_COLUMNS, cells: (r) => [r.person, topic, rule.name, r.stage, r.since, r.at] },
        file: `stalled-${topic}-${rule.name}`,
        now: ctx.now(),
        json: (page): Stalled => ({ topic, rule: rule.name, total: page.total, nextCursor: page.nextCursor, stalled: page.rows }),
      });
    },
  );
}
