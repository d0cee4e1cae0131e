import { OpenAPIHono, createRoute, z, type Hook } from '@hono/zod-openapi';
import type { Context, Env } from 'hono';
import { httpError, onError, type Issue } from '../../lib/http-errors.js';
import type { Logger } from '../../lib/logger.js';
import { NO_KEYS, requireKey, type ApiKeys } from './auth.js';
import { toCsv } from './csv.js';
import { dashboardRoutes } from '../dashboard/route.js';
import { computeFunnel } from './funnel.js';
import type { LiveFeed } from '../transitions/live-feed.js';
import { CursorError, MAX_NEEDS, queryNeeds } from './needs.js';
import { DURATION, DURATION_HELP, parseDuration, parseTime, TIME_HELP } from './params.js';
import { recentTransitions } from './recent-transitions.js';
import { rfmScores } from './rfm.js';
import type { HistoryStore } from '../store/store.js';
import { streamTransitions } from '../transitions/sse.js';

export interface QueryApiOptions {
  store: HistoryStore;
  logger: Logger;
  /** Live transitions for the event stream; without one the stream answers 503. */
  feed?: LiveFeed | undefined;
  /** API keys; none: the API is open (the process's main decides whether that is allowed). */
  keys?: ApiKeys;
  /** Serve the dashboard at /dashboard (default true). */
  dashboard?: boolean;
  now?: () => number;
}

const MAX_ID = 128;
const MAX_TOPIC = 256;
const PAGE_MAX = 1000;

// ---------------------------------------------------------------------------------------------
// Schemas: what the API answers, as OpenAPI components.

const ErrorBody = z
  .object({
    error: z.object({
      code: z.string().openapi({ example: 'invalid_parameter' }),
      message: z.string().openapi({ example: 'since: "yesterday" is not an ISO 8601 date or date-time …' }),
      issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
    }),
  })
  .openapi('Error');

const errors = {
  400: { description: 'A parameter is invalid; `error.issues` names each one and why.', content: { 'application/json': { schema: ErrorBody } } },
  401: { description: 'No API key, or one that is not valid.', content: { 'application/json': { schema: ErrorBody } } },
  403: { description: 'The API key may not do this (a read-only key on DELETE).', content: { 'application/json': { schema: ErrorBody } } },
} as const;
const notFound = { description: 'No such person or topic.', content: { 'application/json': { schema: ErrorBody } } } as const;

const Dialogue = z
  .object({
    topic: z.string().openapi({ example: 'product:sku-1' }),
    stage: z.string().openapi({ description: 'Highest stage reached in this dialogue.', example: 'detail' }),
    started: z.string().openapi({ format: 'date-time' }),
    lastActivity: z.string().openapi({ format: 'date-time' }),
    firstReached: z.record(z.string(), z.string()).openapi({ description: 'When each stage was first reached (stages never reached are absent).' }),
    counts: z.record(z.string(), z.number().int()).openapi({ description: 'Interactions per stage.' }),
    channels: z.array(z.string()).openapi({ example: ['web', 'email'] }),
  })
  .openapi('Dialogue');

const PastTransition = z
  .object({
    id: z.string(),
    topic: z.string(),
    from: z.string().nullable(),
    to: z.string(),
    at: z.string().openapi({ format: 'date-time' }),
  })
  .openapi('PastTransition');

const Person = z
  .object({
    person: z.string().openapi({ description: 'The person id (a visitor id merged into a known user answers with the user).' }),
    linkedIds: z.array(z.string()).openapi({ description: 'Anonymous visitor ids merged into this person by identify.' }),
    dialogues: z.array(Dialogue).openapi({ description: 'Most recently active first.' }),
    rfm: z
      .object({ lastPurchase: z.string().openapi({ format: 'date-time' }), purchases: z.number().int(), totalValue: z.number() })
      .nullable()
      .openapi({ description: 'RFM inputs, from purchase events that carry a value; null before the first.' }),
    rfmScores: z
      .object({ recency: z.number().int().min(1).max(5), frequency: z.number().int().min(1).max(5), monetary: z.number().int().min(1).max(5), code: z.string().openapi({ example: '543' }) })
      .nullable()
      .openapi({
        description:
          'Each 1 (weakest) to 5 (strongest), from fixed thresholds. Recency, days since the last purchase: ≤7 → 5, ≤30 → 4, ≤90 → 3, ≤180 → 2, older → 1. ' +
          'Frequency, purchases: ≥10 → 5, ≥5 → 4, ≥3 → 3, 2 → 2, 1 → 1. Monetary, total value: ≥1000 → 5, ≥500 → 4, ≥200 → 3, ≥50 → 2, less → 1.',
      }),
    recentTransitions: z.array(PastTransition).openapi({
      description: 'Up to 20 most recent stage advances across the current dialogues, newest first (read back from the first-reached times).',
    }),
  })
  .openapi('Person');

const Erased = z.object({ person: z.string(), erasedIds: z.array(z.string()).openapi({ description: 'The person and every visitor id linked to them.' }) }).openapi('Erased');

const TopicSummary = z
  .object({
    topic: z.string(),
    people: z.number().int().openapi({ description: 'People with a dialogue about this topic.' }),
    stages: z.record(z.string(), z.number().int()).openapi({ description: 'People standing at each stage (their highest).', example: { intro: 40, detail: 12, purchase: 3 } }),
  })
  .openapi('TopicSummary');

const Topics = z.object({ ladder: z.array(z.string()), topics: z.array(TopicSummary).openapi({ description: 'Most people first.' }) }).openapi('Topics');

const Funnel = z
  .object({
    topic: z.string(),
    window: z.object({ since: z.string().nullable(), until: z.string().nullable() }),
    definition: z.string(),
    people: z.number().int(),
    overallConversion: z.number().nullable(),
    stages: z.array(
      z.object({
        stage: z.string(),
        atStage: z.number().int().openapi({ description: 'People whose highest stage is this one.' }),
        reached: z.number().int().openapi({ description: 'People who reached at least this stage.' }),
        conversionToNext: z.number().nullable().openapi({ description: 'reached(next) / reached(this), 0 to 1; null for the last stage or when nobody reached this one.' }),
      }),
    ),
  })
  .openapi('Funnel');

const Need = z
  .object({
    person: z.string(),
    stage: z.string(),
    lastActivity: z.string().openapi({ format: 'date-time' }),
    stageReachedAt: z.string().nullable().openapi({ format: 'date-time' }),
    interactions: z.number().int(),
    channels: z.array(z.string()),
    score: z.number().openapi({ description: 'recency × intensity; higher is more worth contacting first.' }),
  })
  .openapi('Need');

const Needs = z
  .object({
    topic: z.string(),
    stage: z.string(),
    notReached: z.string(),
    activeWithin: z.string(),
    asOf: z.string().openapi({ format: 'date-time', description: 'The time scores are computed for (the first page’s).' }),
    total: z.number().int().openapi({ description: 'People in the whole list, all pages.' }),
    truncated: z.boolean().openapi({ description: `The list holds only the ${MAX_NEEDS} most recently active candidates.` }),
    nextCursor: z.string().nullable().openapi({ description: 'Pass as `cursor` for the next page; null on the last page.' }),
    needs: z.array(Need),
  })
  .openapi('Needs');

const Transition = z
  .object({ id: z.string(), person: z.string(), topic: z.string(), from: z.string().nullable(), to: z.string(), at: z.number().openapi({ description: 'epoch ms' }), channel: z.string() })
  .openapi('Transition');

// ---------------------------------------------------------------------------------------------

const personParam = z.object({
  person: z.string().min(1).max(MAX_ID, `a person id has at most ${MAX_ID} characters`).openapi({ param: { name: 'person', in: 'path' }, example: 'v-alice' }),
});
const topicParam = z.object({
  topic: z.string().min(1).max(MAX_TOPIC, `a topic has at most ${MAX_TOPIC} characters`).openapi({ param: { name: 'topic', in: 'path' }, example: 'product:sku-1' }),
});
const timeParam = (name: string, description: string) =>
  z
    .string()
    .max(40)
    .refine((s) => typeof parseTime(s, 0) === 'number', `not ${TIME_HELP}`)
    .optional()
    .openapi({ param: { name, in: 'query' }, description, example: name === 'since' ? '30d' : '2026-06-30' });

/** The zod issues of a failed validation, as our error envelope: `query.since: …`. */
function validationHook(): Hook<unknown, Env, string, unknown> {
  return (result, c) => {
    if (result.success) return;
    const issues: Issue[] = result.error.issues.map((i) => ({ path: i.path.map(String).join('.') || result.target, message: i.message }));
    throw httpError(400, 'invalid_parameter', issues.map((i) => `${i.path}: ${i.message}`).join('; '), { issues });
  };
}

/**
 * The marketers' query API over the folded history, described by OpenAPI at /v1/openapi.json,
 * plus the dashboard that reads it. Every answer comes from the stage indexes or named hashes.
 */
export function createQueryApp(opts: QueryApiOptions): OpenAPIHono {
  const { store, logger } = opts;
  const ladder = store.options.ladder;
  const now = opts.now ?? Date.now;
  const keys = opts.keys ?? NO_KEYS;
  const stageEnum = z.enum(ladder as unknown as [string, ...string[]]);
  const read = requireKey(keys, 'read');
  const erase = requireKey(keys, 'erase');
  const readStream = requireKey(keys, 'read', { allowCookie: true });
  const security = [{ bearer: [] }];

  const app = new OpenAPIHono({ defaultHook: validationHook() });
  app.onError(onError(logger));
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'An API key from API_KEYS (read and erase) or API_READ_KEYS (read only).',
  });

  const knownTopic = async (topic: string) => {
    if (!(await store.hasTopic(topic))) throw httpError(404, 'unknown_topic', `no dialogue was ever about topic "${topic}"`);
  };
  const bad = (path: string, message: string) => httpError(400, 'invalid_parameter', `${path}: ${message}`, { issues: [{ path, message }] });
  const time = (name: string, s: string | undefined): number | undefined => {
    if (s === undefined) return undefined;
    const t = parseTime(s, now());
    if (typeof t !== 'number') throw bad(name, t.error);
    return t;
  };

  // --- people ----------------------------------------------------------------------------------

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/people/{person}',
      summary: 'A person’s communication history',
      description: 'Dialogues (topic, stage, when each stage was first reached, last activity, counts, channels), linked visitor ids, RFM inputs and scores, recent transitions.',
      tags: ['people'],
      security,
      middleware: [read] as const,
      request: { params: personParam },
      responses: { 200: { description: 'The person.', content: { 'application/json': { schema: Person } } }, ...errors, 404: notFound },
    }),
    async (c) => {
      const { person } = c.req.valid('param');
      const view = await store.getPerson(person);
      if (!view) throw httpError(404, 'unknown_person', `no history for person "${person}"`);
      const t = now();
      const rfm = view.rfm;
      const scores = rfm ? rfmScores({ last: Date.parse(rfm.lastPurchase), count: rfm.purchases, total: rfm.totalValue }, t) : null;
      return c.json({ ...view, rfmScores: scores, recentTransitions: recentTransitions(view.person, view.dialogues, ladder) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/people/{person}',
      summary: 'Erase a person',
      description: 'Removes the person and every visitor id linked to them from every key and index. Needs a key from API_KEYS.',
      tags: ['people'],
      security,
      middleware: [erase] as const,
      request: { params: personParam },
      responses: { 200: { description: 'Erased.', content: { 'application/json': { schema: Erased } } }, ...errors, 404: notFound },
    }),
    async (c) => {
      const { person } = c.req.valid('param');
      const view = await store.getPerson(person);
      if (!view || !(await store.erase(person))) throw httpError(404, 'unknown_person', `no history for person "${person}"`);
      logger.info({ person: view.person, linked: view.linkedIds.length }, 'person erased');
      return c.json({ person: view.person, erasedIds: [view.person, ...view.linkedIds] }, 200);
    },
  );

  // --- topics ----------------------------------------------------------------------------------

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/topics',
      summary: 'Every topic with its people per stage',
      description: 'From the `topics` set and the stage indexes (no scan of people). Most people first.',
      tags: ['topics'],
      security,
      middleware: [read] as const,
      responses: { 200: { description: 'The topics.', content: { 'application/json': { schema: Topics } } }, 401: errors[401] },
    }),
    async (c) => {
      const topics = await store.topics();
      const counts = await store.stageCounts(topics);
      const list = topics
        .map((topic, i) => {
          const row = counts[i] ?? [];
          return { topic, people: row.reduce((a, b) => a + b, 0), stages: Object.fromEntries(ladder.map((s, j) => [s, row[j] ?? 0])) };
        })
        .sort((a, b) => b.people - a.people || (a.topic < b.topic ? -1 : 1));
      return c.json({ ladder: [...ladder], topics: list }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/topics/{topic}/funnel',
      summary: 'A topic’s funnel in a time window',
      description:
        'The people whose dialogue about the topic was last active within [since, until] (both inclusive, both optional), counted by the highest stage they reached. ' +
        '`reached` is cumulative: people who reached at least that stage. `conversionToNext` = reached(next) / reached(this). ' +
        'Without `until` the window runs to now, so `since=7d` means "active in the last 7 days"; with an `until` in the past, someone also active after it counts at their latest activity, i.e. not in this window.',
      tags: ['topics'],
      security,
      middleware: [read] as const,
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
      const since = time('since', q.since);
      const until = time('until', q.until);
      if (since !== undefined && until !== undefined && since > until) throw bad('until', 'the window ends before it starts (until is earlier than since)');
      await knownTopic(topic);
      const [counts = []] = await store.stageCounts([topic], { since, until });
      const f = computeFunnel(ladder, counts);
      return c.json(
        {
          topic,
          window: { since: since === undefined ? null : new Date(since).toISOString(), until: until === undefined ? null : new Date(until).toISOString() },
          definition: 'people whose last activity on the topic lies in the window, by the highest stage reached; reached = at least this stage; conversionToNext = reached(next) / reached(this)',
          ...f,
        },
        200,
      );
    },
  );

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
      middleware: [read] as const,
      request: {
        params: topicParam,
        query: z.object({
          stage: stageEnum.openapi({ param: { name: 'stage', in: 'query' }, description: 'The stage people stand at.', example: ladder[1] }),
          notReached: stageEnum.optional().openapi({ param: { name: 'notReached', in: 'query' }, description: 'The first stage they have not reached; default: the stage after `stage`.', example: ladder.at(-1) }),
          activeWithin: z
            .string()
            .regex(DURATION, `not ${DURATION_HELP}`)
            .optional()
            .openapi({ param: { name: 'activeWithin', in: 'query' }, description: 'Last activity at most this long ago; default: the topic map’s quiet period (dialogues still open).', example: '7d' }),
          limit: z.coerce.number().int().min(1).max(MAX_NEEDS).optional().openapi({ param: { name: 'limit', in: 'query' }, description: `People per page; default 50, at most ${PAGE_MAX} (CSV: the whole list, at most ${MAX_NEEDS}).`, example: 50 }),
          cursor: z.string().max(512).optional().openapi({ param: { name: 'cursor', in: 'query' }, description: 'From `nextCursor` of the previous page.' }),
        }),
      },
      responses: {
        200: {
          description: 'A page of the list.',
          headers: { 'X-Next-Cursor': { description: 'CSV only: the cursor of the next page, when there is one.', schema: { type: 'string' } } },
          content: {
            'application/json': { schema: Needs },
            'text/csv': { schema: z.string().openapi({ description: 'person,topic,stage,last_activity,stage_reached_at,interactions,channels,score; formula-like cells start with an apostrophe.' }) },
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
      if (stage === ladder.length - 1) throw bad('stage', `"${q.stage}" is the last stage: nobody stands below it after reaching it; pick one of ${ladder.slice(0, -1).join(', ')}`);
      if (notReached <= stage) throw bad('notReached', `"${q.notReached}" must come after stage "${q.stage}" on the ladder (${ladder.join(' < ')})`);
      if (!csv && q.limit !== undefined && q.limit > PAGE_MAX) throw bad('limit', `at most ${PAGE_MAX} per page (the CSV export takes up to ${MAX_NEEDS})`);
      let activeWithinMs = store.options.quietMs;
      if (q.activeWithin !== undefined) {
        const d = parseDuration(q.activeWithin);
        if (typeof d !== 'number') throw bad('activeWithin', d.error);
        activeWithinMs = d;
      }
      await knownTopic(topic);
      const limit = q.limit ?? (csv ? MAX_NEEDS : 50);
      let page;
      try {
        page = await queryNeeds(store, ladder, { topic, stage, notReached, activeWithinMs, limit, cursor: q.cursor, now: now() });
      } catch (err) {
        if (err instanceof CursorError) throw bad('cursor', err.message);
        throw err;
      }
      if (csv) {
        const body = toCsv(
          ['person', 'topic', 'stage', 'last_activity', 'stage_reached_at', 'interactions', 'channels', 'score'],
          page.rows.map((r) => [r.person, topic, r.stage, r.lastActivity, r.stageReachedAt, r.interactions, r.channels.join(';'), r.score]),
        );
        const day = new Date(page.asOf).toISOString().slice(0, 10);
        const name = `needs-${topic}-${q.stage}-${day}.csv`.replace(/[^A-Za-z0-9._-]+/g, '_');
        const headers: Record<string, string> = { 'content-type': 'text/csv; charset=utf-8', 'content-disposition': `attachment; filename="${name}"`, 'x-total-count': String(page.total) };
        if (page.nextCursor) headers['x-next-cursor'] = page.nextCursor;
        return c.body(body, 200, headers);
      }
      return c.json(
        {
          topic,
          stage: q.stage,
          notReached: ladder[notReached]!,
          activeWithin: q.activeWithin ?? `${Math.round(activeWithinMs / 86_400_000)}d`,
          asOf: new Date(page.asOf).toISOString(),
          total: page.total,
          truncated: page.truncated,
          nextCursor: page.nextCursor,
          needs: page.rows,
        },
        200,
      );
    },
  );

  // --- live transitions --------------------------------------------------------------------------

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
      middleware: [readStream] as const,
      request: {
        query: z.object({
          topic: z.string().min(1).max(MAX_TOPIC).optional().openapi({ param: { name: 'topic', in: 'query' }, description: 'Only this topic.' }),
          to: stageEnum.optional().openapi({ param: { name: 'to', in: 'query' }, description: 'Only advances to this stage.' }),
        }),
      },
      responses: {
        200: { description: 'The event stream.', content: { 'text/event-stream': { schema: Transition } } },
        ...errors,
        503: { description: 'This process has no live feed.', content: { 'application/json': { schema: ErrorBody } } },
      },
    }),
    (c) => {
      if (!opts.feed) throw httpError(503, 'no_live_feed', 'this process has no live feed of transitions');
      const q = c.req.valid('query');
      return streamTransitions(c, opts.feed, { topic: q.topic, to: q.to });
    },
  );

  app.doc31('/v1/openapi.json', (c) => ({
    openapi: '3.1.0',
    info: {
      title: 'clickfold query API',
      version: '1',
      description:
        'Who is at which stage of what. Every endpoint but this document needs `Authorization: Bearer <API key>` when the server has keys. ' +
        'Errors: `{"error": {"code", "message", "issues"?}}` with 400 for a bad parameter (each in `issues`), 401 without a valid key, 403 for a read-only key on DELETE, 404 for an unknown person or topic.',
    },
    servers: [{ url: new URL(c.req.url).origin }],
  }));

  if (opts.dashboard ?? true) app.route('/', dashboardRoutes());
  return app;
}

/** `Accept: text/csv` (alone or among others) asks for the CSV export. */
function wantsCsv(c: Context): boolean {
  return /\btext\/csv\b/i.test(c.req.header('accept') ?? '');
}
