import { promisify } from 'node:util';
import { gunzip as gunzipCb } from 'node:zlib';
import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';

const gunzip = promisify(gunzipCb);

/** JSON, or the text/plain that `navigator.sendBeacon` and analytics.js send without a CORS preflight. */
const JSON_TYPES = /^(application\/json|text\/plain)\s*(;|$)/i;
/** RudderStack's Node SDK labels its (gzipped) JSON this way; only endpoints that opt in read it, and only as JSON. */
const FORM_TYPE = /^application\/x-www-form-urlencoded\s*(;|$)/i;

/** One decoder for every request (decoding without `stream` keeps no state between calls). */
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Depth of the whole body; every legitimate payload stays far below it. */
export const MAX_BODY_DEPTH = 16;

/** The client went away mid-body, or sent a broken chunked encoding: no one may read this answer. */
const UNREADABLE = { ok: false, status: 400, reason: 'unreadable_body', message: 'the body could not be read to its end' } as const;

export type BodyResult =
  | { ok: true; body: unknown; text: string }
  | { ok: false; status: ContentfulStatusCode; reason: string; message: string; text?: string };

export interface ReadBodyOptions {
  maxBytes: number;
  /** Segment's libraries may gzip (Content-Encoding: gzip); the snippet never does. */
  gzip?: boolean;
  /**
   * Also take `application/x-www-form-urlencoded` when the body is JSON (what RudderStack's Node
   * SDK sends); a body that really is a form is still refused (415).
   */
  formJson?: boolean;
}

/**
 * Reads a JSON body: media type, encoding, size after decompression, strict UTF-8, syntax, depth.
 * Returns a result instead of throwing, so the endpoint decides how to answer and what to dead-letter.
 * The raw byte limit is `limitBody` (before the handler), so nothing here reads an oversized body.
 */
export async function readJsonBody(c: Context, opts: ReadBodyOptions): Promise<BodyResult> {
  const type = c.req.header('content-type') ?? '';
  const form = opts.formJson === true && FORM_TYPE.test(type);
  if (!form && !JSON_TYPES.test(type)) {
    return {
      ok: false,
      status: 415,
      reason: 'unsupported_media_type',
      message: `send the body as application/json (or text/plain${opts.formJson ? ', or JSON labelled application/x-www-form-urlencoded' : ''})`,
    };
  }
  const encoding = (c.req.header('content-encoding') ?? 'identity').trim().toLowerCase();
  if (encoding !== 'identity' && !(opts.gzip && encoding === 'gzip')) {
    return {
      ok: false,
      status: 415,
      reason: 'unsupported_encoding',
      message: `content-encoding "${encoding.slice(0, 32)}" is not supported${opts.gzip ? ' (use gzip or none)' : ''}`,
    };
  }
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await c.req.arrayBuffer());
  } catch {
    return UNREADABLE;
  }
  if (encoding === 'gzip') {
    try {
      bytes = await gunzip(bytes, { maxOutputLength: opts.maxBytes });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        return { ok: false, status: 413, reason: 'body_too_large', message: `the body is larger than ${opts.maxBytes} bytes once decompressed` };
      }
      return { ok: false, status: 400, reason: 'malformed_gzip', message: 'the body is not valid gzip' };
    }
  }
  let text: string;
  try {
    text = STRICT_UTF8.decode(bytes);
  } catch {
    return {
      ok: false,
      status: 400,
      reason: 'invalid_utf8',
      message: 'the body is not valid UTF-8',
      text: new TextDecoder('utf-8').decode(bytes.subarray(0, 4096)),
    };
  }
  // Not kept as the dead letter's excerpt: a form's fields (writeKey=...) escape the JSON redaction.
  if (form && !/^\s*[[{]/.test(text)) {
    return {
      ok: false,
      status: 415,
      reason: 'unsupported_media_type',
      message: 'the body is a form, not JSON: form fields are not read; send the events as a JSON object (application/json or text/plain)',
    };
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    return { ok: false, status: 400, reason: 'malformed_json', message: `the body is not valid JSON: ${(err as Error).message}`, text };
  }
  if (depthExceeds(body, MAX_BODY_DEPTH)) {
    return { ok: false, status: 400, reason: 'too_deep', message: `the body nests deeper than ${MAX_BODY_DEPTH} levels`, text };
  }
  return { ok: true, body, text };
}

/**
 * Whether objects or arrays nest deeper than `max`. Recursive, but never deeper than `max + 1`
 * calls: a body of 100,000 nested arrays stops at the first level past the limit. No allocation
 * per value (this runs on every request; the tuples and Object.values arrays of a stack-based walk
 * fed the garbage collector).
 */
function depthExceeds(value: unknown, max: number): boolean {
  return value !== null && typeof value === 'object' && nestsDeeper(value, 1, max);
}

function nestsDeeper(v: object, depth: number, max: number): boolean {
  if (depth > max) return true;
  if (Array.isArray(v)) {
    for (const x of v) if (x !== null && typeof x === 'object' && nestsDeeper(x, depth + 1, max)) return true;
    return false;
  }
  const o = v as Record<string, unknown>;
  for (const k in o) {
    const x = o[k];
    if (x !== null && typeof x === 'object' && nestsDeeper(x, depth + 1, max)) return true;
  }
  return false;
}

/**
 * The byte limit before the handler: 413 on Content-Length alone, or while streaming a chunked
 * body. A body stream that breaks while it is measured goes to `onUnreadable`, not to a 500.
 */
export function limitBody(
  maxBytes: number,
  onTooLarge: (c: Context) => Promise<Response>,
  onUnreadable: (c: Context, result: Extract<BodyResult, { ok: false }>) => Promise<Response>,
): MiddlewareHandler {
  const limit = bodyLimit({ maxSize: maxBytes, onError: onTooLarge });
  return async (c, next) => {
    // A body with a Content-Length (every browser's and SDK's) is judged on the header alone, as
    // hono's bodyLimit does, but without asking for `c.req.raw.body`: on @hono/node-server that
    // builds a whole web Request (with its AbortSignal) per request, a fifth of ingest's CPU in the
    // bench's profile, while the body is then read straight from the socket. A length that is not
    // a plain number goes the slow way; Node's parser refuses one that disagrees with the body.
    const length = c.req.header('content-length');
    if (length !== undefined && c.req.header('transfer-encoding') === undefined && /^\d{1,15}$/.test(length)) {
      return Number(length) > maxBytes ? onTooLarge(c) : next();
    }
    let measured = false;
    try {
      await limit(c, async () => {
        measured = true;
        await next();
      });
    } catch (err) {
      if (measured || err instanceof HTTPException) throw err;
      return onUnreadable(c, UNREADABLE);
    }
  };
}
