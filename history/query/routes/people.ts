import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import { Person, PersonExport } from '../../../contract/query.js';
import { httpError } from '../../../lib/http-errors.js';
import { recentTransitions } from '../recent-transitions.js';
import { DEFAULT_LTV_HORIZON_DAYS, personCrm } from '../crm.js';
import { errors, notFound, personParam, security, type QueryRouteContext } from './common.js';

/** `GET /v1/people/{person}`: a person's communication history; `.../export`: everything held about them. */
export function peopleRoutes(app: OpenAPIHono, ctx: QueryRouteContext): void {
  const { store, ladder } = ctx;

  const personOf = async (person: string): Promise<Person> => {
    const view = await store.getPerson(person);
    if (!view) throw httpError(404, 'unknown_person', `no history for person "${person}"`);
    const crm = personCrm(await store.crmModel(), view, ctx.now(), ctx.ltvHorizonDays ?? DEFAULT_LTV_HORIZON_DAYS);
    return { ...view, ...crm, recentTransitions: recentTransitions(view.person, view.dialogues, ladder) };
  };

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/people/{person}',
      summary: 'A person’s communication history',
      description:
        'Dialogues (topic, stage, when each stage was first reached, last activity, counts, channels), linked visitor ids, RFM inputs and scores (`rfmScale` says on which scale), lifetime value (`ltv`), recent transitions.',
      tags: ['people'],
      security,
      middleware: [ctx.auth.read] as const,
      request: { params: personParam },
      responses: { 200: { description: 'The person.', content: { 'application/json': { schema: Person } } }, ...errors, 404: notFound },
    }),
    async (c) => c.json(await personOf(c.req.valid('param').person), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/people/{person}/export',
      summary: 'Everything held about a person (right of access)',
      description:
        'One JSON document, as a download: the person’s dialogues, linked visitor ids, RFM inputs and scores, recent transitions, and what clickfold knows of their consent (nothing: see `consent`). ' +
        'For answering a data subject’s access request; the README’s Privacy section says what else exists and for how long.',
      tags: ['people'],
      security,
      middleware: [ctx.auth.read] as const,
      request: { params: personParam },
      responses: {
        200: { description: 'The export.', content: { 'application/json': { schema: PersonExport } } },
        ...errors,
        404: notFound,
      },
    }),
    async (c) => {
      const person = await personOf(c.req.valid('param').person);
      const body: PersonExport = { ...person, exportedAt: new Date(ctx.now()).toISOString(), consent: null };
      const file = `person-${person.person}`.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 100);
      return c.json(body, 200, { 'content-disposition': `attachment; filename="${file}.json"`, 'cache-control': 'no-store' });
    },
  );
}
