import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { AUDIENCE_NAME } from '../../../contract/audience.js';
import { Audience, type AudienceMember, AudienceMembers, Audiences, ErrorBody } from '../../../contract/query.js';
import { httpError } from '../../../lib/http-errors.js';
import {
  AudienceConflictError,
  AudienceInputError,
  type AudienceRecord,
  type AudienceRegistry,
  MAX_AUDIENCES,
  MAX_DEFINITION_BYTES,
} from '../../automation/registry.js';
import type { CompiledStallRule } from '../../stalls/rules.js';
import { errors, type QueryRouteContext, security } from './common.js';
import { answerList, cursorQuery, exportContent, exportHeadersDoc, formatQuery, limitQuery, stallsRoutes } from './stalls.js';

/**
 * Audiences (`/v1/audiences`): named definitions kept live by the fold (history/automation/). Reads
 * need a key; PUT and DELETE need a full key, like an erase: they change what every fold computes.
 * Audiences from the audiences file are read-only here (409).
 */
export interface AutomationRouteOptions {
  /** Without one, the audience routes answer 503 (a process that does not serve them). */
  registry?: AudienceRegistry | undefined;
  /** The topic map's compiled stall rules; none: `GET /v1/stalls` lists none. */
  stallRules?: readonly CompiledStallRule[] | undefined;
}

/** The stall and audience routes (./stalls.ts and below). */
export function automationRoutes(app: OpenAPIHono, ctx: QueryRouteContext, opts: AutomationRouteOptions = {}): void {
  stallsRoutes(app, ctx, opts.stallRules ?? []);
  audiencesRoutes(app, ctx, opts.registry);
}

const nameParam = z.object({
  name: z
    .string()
    .regex(AUDIENCE_NAME, 'an audience name is 1 to 64 lower-case letters, digits, - and _, starting with a letter or digit')
    .openapi({ param: { name: 'name', in: 'path' }, example: 'cart-abandoners' }),
});

const json = (description: string) => ({ description, content: { 'application/json': { schema: ErrorBody } } });
const unknownAudience = json('No such audience.');
const conflict = json('The audience comes from the audiences file (read-only here), or the registry is full.');
const unavailable = json('This process does not serve audiences.');

const MEMBER_COLUMNS = ['person', 'entered_at'];

/** Room for the definition plus whitespace a client may pretty-print it with; the definition itself is measured again as compact JSON. */
const BODY_BYTES = 2 * MAX_DEFINITION_BYTES;

const EXAMPLE = {
  all: [{ topic: 'product:*', atLeast: 'detail', notReached: 'purchase', activeWithin: '7d' }, { not: { rfm: { frequency: { atLeast: 4 } } } }],
};

export function audiencesRoutes(app: OpenAPIHono, ctx: QueryRouteContext, registry: AudienceRegistry | undefined): void {
  const { store } = ctx;
  const need = (): AudienceRegistry => {
    if (!registry) throw httpError(503, 'audiences_unavailable', 'this process does not serve audiences');
    return registry;
  };
  const viewOf = async (r: AudienceRecord): Promise<Audience> => ({
    name: r.name,
    definition: r.definition,
    version: r.version,
    source: r.source,
    updatedAt: new Date(r.updatedAt).toISOString(),
    members: await store.automationCount({ audience: r.name }),
    backfill: r.backfill
      ? {
          state: r.backfill.state,
          total: r.backfill.total,
          done: r.backfill.done,
          startedAt: new Date(r.backfill.startedAt).toISOString(),
          finishedAt: r.backfill.finishedAt === null ? null : new Date(r.backfill.finishedAt).toISOString(),
        }
      : null,
  });
  const recordOf = async (name: string): Promise<AudienceRecord> => {
    const r = await need().get(name);
    if (!r) throw httpError(404, 'unknown_audience', `no audience "${name}"`);
    return r;
  };
  const changeErrors = (err: unknown): never => {
    if (err instanceof AudienceInputError)
      throw httpError(400, 'invalid_definition', err.message, {
        issues: err.issues.map((i) => ({ path: i.path === 'name' ? 'name' : i.path.replace(/^definition/, 'body'), message: i.message })),
      });
    if (err instanceof AudienceConflictError) throw httpError(409, err.code, err.message);
    throw err;
  };
  const limitBody: MiddlewareHandler = bodyLimit({
    maxSize: BODY_BYTES,
    onError: () => httpError(413, 'body_too_large', `a definition has at most ${MAX_DEFINITION_BYTES} bytes of JSON`).getResponse(),
  });

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/audiences',
      summary: 'Every audience, with its members now',
      description: 'Definitions from the API and from the audiences file, by name, with how many people each holds now and the progress of its backfill.',
      tags: ['audiences'],
      security,
      middleware: [ctx.auth.read] as const,
      responses: {
        200: { description: 'The audiences.', content: { 'application/json': { schema: Audiences } } },
        401: errors[401],
        503: unavailable,
      },
    }),
    async (c) => {
      const list = await need().list();
      const body: Audiences = { audiences: await Promise.all(list.map(viewOf)) };
      return c.json(body, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'put',
      path: '/v1/audiences/{name}',
      summary: 'Create or replace an audience',
      description:
        'The body is the definition (grammar: README “Audiences”, contract/audience.ts): `all`, `any`, `not`, `rfm` and dialogue conditions ' +
        '(`topic`, `atLeast`, `exactly`, `notReached`, `activeWithin`, `stalled`). Checked against the topic map’s ladder and stall rules; a 400 names each problem and where. ' +
        `At most ${MAX_DEFINITION_BYTES} bytes, ${MAX_AUDIENCES} audiences. A new or changed definition is in force within a second and starts a backfill ` +
        '(every person who could be in the audience is evaluated; `backfill` shows the progress); the same definition again changes nothing. Needs a key from API_KEYS.',
      tags: ['audiences'],
      security,
      middleware: [ctx.auth.erase, limitBody] as const,
      request: {
        params: nameParam,
        body: {
          required: true,
          content: { 'application/json': { schema: { type: 'object', description: 'An audience definition.', example: EXAMPLE } } },
        },
      },
      responses: {
        200: { description: 'Replaced (or unchanged).', content: { 'application/json': { schema: Audience } } },
        201: { description: 'Created.', content: { 'application/json': { schema: Audience } } },
        ...errors,
        409: conflict,
        413: json('The body is larger than a definition may be.'),
        415: json('The body is not JSON.'),
        503: unavailable,
      },
    }),
    async (c) => {
      const { name } = c.req.valid('param');
      const reg = need();
      const definition = await jsonBody(c);
      const r = await reg.put(name, definition).catch(changeErrors);
      return c.json(await viewOf(r.record), r.created ? 201 : 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/audiences/{name}',
      summary: 'An audience',
      tags: ['audiences'],
      security,
      middleware: [ctx.auth.read] as const,
      request: { params: nameParam },
      responses: {
        200: { description: 'The audience.', content: { 'application/json': { schema: Audience } } },
        ...errors,
        404: unknownAudience,
        503: unavailable,
      },
    }),
    async (c) => c.json(await viewOf(await recordOf(c.req.valid('param').name)), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/audiences/{name}/members',
      summary: 'The people in an audience now',
      description:
        'Most recent entries first. Paged by an opaque `cursor`; `format=csv` or `format=ndjson` (or the matching `Accept`) exports, without `limit` the whole list, streamed.',
      tags: ['audiences'],
      security,
      middleware: [ctx.auth.read] as const,
      request: { params: nameParam, query: z.object({ limit: limitQuery, cursor: cursorQuery, format: formatQuery }) },
      responses: {
        200: { description: 'A page of the members.', headers: exportHeadersDoc, content: exportContent(AudienceMembers, MEMBER_COLUMNS, 'AudienceMember') },
        ...errors,
        404: unknownAudience,
        503: unavailable,
      },
    }),
    async (c) => {
      const { name } = c.req.valid('param');
      const q = c.req.valid('query');
      await recordOf(name);
      return answerList<AudienceMember>(c, q, {
        store,
        set: { audience: name },
        rowsOf: async (entries) => entries.map((e) => ({ person: e.person, enteredAt: new Date(e.at).toISOString() })),
        csv: { columns: MEMBER_COLUMNS, cells: (r) => [r.person, r.enteredAt] },
        file: `audience-${name}`,
        now: ctx.now(),
        json: (page): AudienceMembers => ({ audience: name, total: page.total, nextCursor: page.nextCursor, members: page.rows }),
      });
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/audiences/{name}',
      summary: 'Delete an audience',
      description:
        'Removes the definition and the audience’s members (nobody is told they left). Audiences from the audiences file are removed there. Needs a key from API_KEYS.',
      tags: ['audiences'],
      security,
      middleware: [ctx.auth.erase] as const,
      request: { params: nameParam },
      responses: {
        204: { description: 'Deleted.' },
        ...errors,
        404: unknownAudience,
        409: conflict,
        503: unavailable,
      },
    }),
    async (c) => {
      const { name } = c.req.valid('param');
      const deleted = await need().delete(name).catch(changeErrors);
      if (!deleted) throw httpError(404, 'unknown_audience', `no audience "${name}"`);
      return c.body(null, 204);
    },
  );
}

const JSON_TYPE = /^application\/([a-z0-9.+-]*\+)?json\s*(;|$)/i;

/** The body as JSON: the media type (JSON, or none), then the syntax; the size was limited before it was read. */
async function jsonBody(c: Context): Promise<unknown> {
  const type = c.req.header('content-type');
  if (type !== undefined && type.trim() !== '' && !JSON_TYPE.test(type))
    throw httpError(415, 'unsupported_media_type', 'send the definition as application/json');
  const text = await c.req.text();
  if (text.trim() === '')
    throw httpError(400, 'invalid_definition', 'body: the definition is missing', { issues: [{ path: 'body', message: 'the definition is missing' }] });
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const message = `not valid JSON: ${(err as Error).message}`;
    throw httpError(400, 'invalid_definition', `body: ${message}`, { issues: [{ path: 'body', message }] });
  }
}
