import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { Related, Suggestions } from '../../../contract/query.js';
import { httpError } from '../../../lib/http-errors.js';
import { DEFAULT_FOLLOWER_CAPACITY, MAX_PAIRS_PER_PURCHASE, suggest } from '../../crm/cross-sell.js';
import { errors, knownTopic, notFound, personParam, security, topicParam, type QueryRouteContext } from './common.js';

const MAX_SUGGESTIONS = 50;

const limitParam = (fallback: number, max: number) =>
  z.coerce
    .number()
    .int()
    .min(1)
    .max(max)
    .optional()
    .openapi({ param: { name: 'limit', in: 'query' }, description: `How many (default ${fallback}, at most ${max}).`, example: fallback });

const COUNTED =
  'Counted by the worker as it folds: each time a dialogue reaches the top stage (a purchase of Y), every other topic X the person had bought before (the ' +
  `${MAX_PAIRS_PER_PURCHASE} most recent) counts one purchase of Y after X. Each topic keeps the ${DEFAULT_FOLLOWER_CAPACITY} topics most bought after it ` +
  '(Space-Saving: a count may overstate by its `error`, never understate). A worker that crashes right after writing a batch may leave its few purchases uncounted: counts, not a ledger.';

/**
 * Cross-selling from the histories themselves (../../crm/cross-sell.ts): what a person might buy
 * next, and what a topic's buyers went on to buy, from the counters the fold keeps.
 */
export function crossSellRoutes(app: OpenAPIHono, ctx: QueryRouteContext): void {
  const { store, ladder } = ctx;
  const top = ladder[ladder.length - 1]!;

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/people/{person}/suggestions',
      summary: 'What a person might buy next',
      description: `The topics people who bought what this person bought went on to buy, most likely first, with the counts behind each; never one the person bought already. ${COUNTED}`,
      tags: ['people'],
      security,
      middleware: [ctx.auth.read] as const,
      request: { params: personParam, query: z.object({ limit: limitParam(5, MAX_SUGGESTIONS) }) },
      responses: { 200: { description: 'The suggestions.', content: { 'application/json': { schema: Suggestions } } }, ...errors, 404: notFound },
    }),
    async (c) => {
      const { person } = c.req.valid('param');
      const { limit = 5 } = c.req.valid('query');
      const view = await store.getPerson(person);
      if (!view) throw httpError(404, 'unknown_person', `no history for person "${person}"`);
      const bought = view.dialogues.filter((d) => d.stage === top);
      // The most recent purchases, as the fold pairs them: older ones say less about what comes next.
      const from = bought
        .map((d) => ({ topic: d.topic, at: d.firstReached[top] ?? '' }))
        .sort((a, b) => (a.at !== b.at ? (a.at < b.at ? 1 : -1) : a.topic < b.topic ? -1 : 1))
        .slice(0, MAX_PAIRS_PER_PURCHASE)
        .map((b) => b.topic);
      const counts = new Map((await store.crossSell(from)).map((x, i) => [from[i]!, x]));
      const found = suggest(
        from,
        (t) => counts.get(t)?.followers,
        (t) => counts.get(t)?.buyers ?? 0,
        limit,
        new Set(bought.map((d) => d.topic)),
      );
      const body: Suggestions = {
        person: view.person,
        suggestions: found.map((s) => ({
          topic: s.topic,
          score: s.score,
          support: s.support.map((x) => ({ from: x.after, count: x.count, buyers: x.buyers, error: x.error })),
        })),
      };
      return c.json(body, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/topics/{topic}/related',
      summary: 'What the buyers of a topic went on to buy',
      description: `The topics most bought after this one by the same people, most first. ${COUNTED}`,
      tags: ['topics'],
      security,
      middleware: [ctx.auth.read] as const,
      request: { params: topicParam, query: z.object({ limit: limitParam(10, DEFAULT_FOLLOWER_CAPACITY) }) },
      responses: { 200: { description: 'The related topics.', content: { 'application/json': { schema: Related } } }, ...errors, 404: notFound },
    }),
    async (c) => {
      const { topic } = c.req.valid('param');
      const { limit = 10 } = c.req.valid('query');
      await knownTopic(ctx, topic);
      const [[counts], related] = await Promise.all([store.crossSell([topic]), store.related(topic, limit)]);
      const body: Related = { topic, buyers: counts?.buyers ?? 0, related };
      return c.json(body, 200);
    },
  );
}
