import { z, type Hook } from '@hono/zod-openapi';
import type { Env, MiddlewareHandler } from 'hono';
import { ErrorBody } from '../../../contract/query.js';
import { PERSON_ID } from '../../../contract/raw-event.js';
import { httpError, type Issue } from '../../../lib/http-errors.js';
import type { Logger } from '../../../lib/logger.js';
import type { HistoryStore } from '../../store/store.js';
import type { LiveFeed } from '../../transitions/live-feed.js';
import { parseTime, TIME_HELP } from '../params.js';

/**
 * What every route file of the query API shares: the context a route is registered with, the
 * parameters more than one resource takes, the error answers, and the helpers that turn a bad
 * parameter into the API's 400.
 */
export interface QueryRouteContext {
  store: HistoryStore;
  logger: Logger;
  ladder: readonly string[];
  now: () => number;
  /** Live transitions for the event stream; without one the stream answers 503. */
  feed: LiveFeed | undefined;
  /** The horizon of projected lifetime value, days (CRM_LTV_HORIZON_DAYS; default 365). */
  ltvHorizonDays?: number | undefined;
  /** How often the CRM model is recomputed (CRM_MODEL_INTERVAL_S), for GET /v1/crm/model. */
  crmEverySeconds?: number | undefined;
  /** A stage of the ladder, as a query parameter. */
  stageEnum: ReturnType<typeof stageEnumOf>;
  auth: {
    read: MiddlewareHandler;
    erase: MiddlewareHandler;
    /** Read, also with the key in the stream's cookie (EventSource cannot send headers). */
    readStream: MiddlewareHandler;
  };
}

export const MAX_ID = 128;
export const MAX_TOPIC = 256;
export const PAGE_MAX = 1000;

export const security = [{ bearer: [] }];

export const stageEnumOf = (ladder: readonly string[]) => z.enum(ladder as unknown as [string, ...string[]]);

export const errors = {
  400: { description: 'A parameter is invalid; `error.issues` names each one and why.', content: { 'application/json': { schema: ErrorBody } } },
  401: { description: 'No API key, or one that is not valid.', content: { 'application/json': { schema: ErrorBody } } },
  403: { description: 'The API key may not do this (a read-only key on DELETE).', content: { 'application/json': { schema: ErrorBody } } },
} as const;
export const notFound = { description: 'No such person or topic.', content: { 'application/json': { schema: ErrorBody } } } as const;

export const personParam = z.object({
  person: z
    .string()
    .min(1)
    .max(MAX_ID, `a person id has at most ${MAX_ID} characters`)
    .openapi({ param: { name: 'person', in: 'path' }, example: 'v-alice' }),
});
/** A person id as the raw records carry them (contract/raw-event.ts): what an erase may name. */
export const personIdParam = z.object({
  person: z
    .string()
    .regex(PERSON_ID, 'a person id is 1 to 128 letters, digits and . _ : @ + - | = ~ ! $ *')
    .openapi({ param: { name: 'person', in: 'path' }, example: 'v-alice' }),
});
export const topicParam = z.object({
  topic: z
    .string()
    .min(1)
    .max(MAX_TOPIC, `a topic has at most ${MAX_TOPIC} characters`)
    .openapi({ param: { name: 'topic', in: 'path' }, example: 'product:sku-1' }),
});
export const timeParam = (name: string, description: string) =>
  z
    .string()
    .max(40)
    .refine((s) => typeof parseTime(s, 0) === 'number', `not ${TIME_HELP}`)
    .optional()
    .openapi({ param: { name, in: 'query' }, description, example: name === 'since' ? '30d' : '2026-06-30' });

/** The zod issues of a failed validation, as our error envelope: `query.since: …`. */
export function validationHook(): Hook<unknown, Env, string, unknown> {
  return (result) => {
    if (result.success) return;
    const issues: Issue[] = result.error.issues.map((i) => ({ path: i.path.map(String).join('.') || result.target, message: i.message }));
    throw httpError(400, 'invalid_parameter', issues.map((i) => `${i.path}: ${i.message}`).join('; '), { issues });
  };
}

/** A 400 naming one parameter and why. */
export const bad = (path: string, message: string) => httpError(400, 'invalid_parameter', `${path}: ${message}`, { issues: [{ path, message }] });

/** A time parameter as epoch ms (durations count back from the context's clock). */
export function timeOf(ctx: QueryRouteContext, name: string, s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const t = parseTime(s, ctx.now());
  if (typeof t !== 'number') throw bad(name, t.error);
  return t;
}

/** 404 unless some dialogue was ever about the topic. */
export async function knownTopic(ctx: QueryRouteContext, topic: string): Promise<void> {
  if (!(await ctx.store.hasTopic(topic))) throw httpError(404, 'unknown_topic', `no dialogue was ever about topic "${topic}"`);
}
