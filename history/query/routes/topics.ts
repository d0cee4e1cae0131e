import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import { Topics, type TopicSummary } from '../../../contract/query.js';
import { errors, security, type QueryRouteContext } from './common.js';

/** `GET /v1/topics`: every topic with its people per stage, from the stage indexes. */
export function topicsRoutes(app: OpenAPIHono, ctx: QueryRouteContext): void {
  const { store, ladder } = ctx;
  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/topics',
      summary: 'Every topic with its people per stage',
      description: 'From the `topics` set and the stage indexes (no scan of people). Most people first.',
      tags: ['topics'],
      security,
      middleware: [ctx.auth.read] as const,
      responses: { 200: { description: 'The topics.', content: { 'application/json': { schema: Topics } } }, 401: errors[401] },
    }),
    async (c) => {
      const topics = await store.topics();
      const counts = await store.stageCounts(topics);
      const list: TopicSummary[] = topics
        .map((topic, i) => {
          const row = counts[i] ?? [];
          return { topic, people: row.reduce((a, b) => a + b, 0), stages: Object.fromEntries(ladder.map((s, j) => [s, row[j] ?? 0])) };
        })
        .sort((a, b) => b.people - a.people || (a.topic < b.topic ? -1 : 1));
      const body: Topics = { ladder: [...ladder], topics: list };
      return c.json(body, 200);
    },
  );
}
