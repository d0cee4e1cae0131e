import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { Logger } from './logger.js';

export interface Issue {
  /** Dotted path into the request body: `events.3.ts`. */
  path: string;
  message: string;
}

export interface ErrorBody {
  error: { code: string; message: string; issues?: Issue[] };
  [extra: string]: unknown;
}

/** One exception that carries its JSON response; `onError` turns it into the answer. */
export function httpError(
  status: ContentfulStatusCode,
  code: string,
  message: string,
  extra: { issues?: Issue[]; headers?: Record<string, string>; body?: Record<string, unknown> } = {},
): HTTPException {
  const body: ErrorBody = { ...extra.body, error: { code, message, ...(extra.issues ? { issues: extra.issues } : {}) } };
  const res = new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...extra.headers },
  });
  return new HTTPException(status, { res, message });
}

export function onError(logger: Logger) {
  return (err: Error, c: Context): Response => {
    if (err instanceof HTTPException) return err.getResponse();
    logger.error({ err, path: c.req.path }, 'unhandled error');
    return c.json({ error: { code: 'internal', message: 'internal error' } }, 500);
  };
}
