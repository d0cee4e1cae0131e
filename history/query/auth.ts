import { createHash } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { getCookie } from 'hono/cookie';
import { httpError } from '../../lib/http-errors.js';
import type { Env } from '../../lib/config.js';

/**
 * API keys of the query API: `Authorization: Bearer <key>`. Keys in API_KEYS may read and erase;
 * keys in API_READ_KEYS may only read. No key configured at all: the API is open, which only the
 * embedded mode on a loopback address allows (`checkApiAccess`, called by each process's main).
 *
 *   401  no key, or a key that is not configured
 *   403  a read-only key on an endpoint that changes data (DELETE)
 */
export type Scope = 'read' | 'erase';

export interface ApiKeys {
  full: readonly string[];
  read: readonly string[];
}

export const NO_KEYS: ApiKeys = { full: [], read: [] };

/**
 * The dashboard's live feed uses EventSource, which cannot send headers; it sends the key in this
 * cookie instead (SameSite=Strict, scoped to the stream's path), and only the stream accepts it.
 */
export const STREAM_KEY_COOKIE = 'clickfold_key';

export function apiKeysFromEnv(env: Pick<Env, 'API_KEYS' | 'API_READ_KEYS'>): ApiKeys {
  return { full: env.API_KEYS, read: env.API_READ_KEYS };
}

export const isOpen = (keys: ApiKeys) => keys.full.length === 0 && keys.read.length === 0;

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

/**
 * Refuses to run the query API without keys where that would expose the histories: on the real
 * stack (Kafka + Redis), or on an address other than loopback. Returns whether it runs open.
 */
export function checkApiAccess(env: Pick<Env, 'API_KEYS' | 'API_READ_KEYS' | 'HOST'>, mode: 'real' | 'embedded'): { open: boolean } {
  const keys = apiKeysFromEnv(env);
  if (!isOpen(keys)) return { open: false };
  if (mode === 'real') {
    throw new Error('API_KEYS is not set: the query API on the real stack needs at least one key (comma-separated, 16 characters or more)');
  }
  if (!LOOPBACK.test(env.HOST)) {
    throw new Error(`API_KEYS is not set and HOST=${env.HOST} is not a loopback address: set API_KEYS, or listen on 127.0.0.1`);
  }
  return { open: true };
}

const digest = (key: string) => createHash('sha256').update(key).digest('base64');

/**
 * The middleware factory: keys are hashed once here, and a presented key is hashed before the
 * lookup, so the lookup's timing says nothing about the keys.
 */
export function requireKey(keys: ApiKeys, scope: Scope, opts: { allowCookie?: boolean } = {}): MiddlewareHandler {
  const scopes = new Map<string, Scope>();
  for (const k of keys.read) scopes.set(digest(k), 'read');
  for (const k of keys.full) scopes.set(digest(k), 'erase');
  const open = scopes.size === 0;
  return async (c, next) => {
    if (open) return next();
    const header = c.req.header('authorization');
    let key: string | undefined;
    if (header !== undefined) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (!m)
        throw httpError(401, 'unauthorized', 'the Authorization header must be "Bearer <API key>"', {
          headers: { 'www-authenticate': 'Bearer realm="clickfold"' },
        });
      key = m[1];
    } else if (opts.allowCookie) {
      key = getCookie(c, STREAM_KEY_COOKIE);
    }
    if (!key)
      throw httpError(401, 'unauthorized', 'an API key is required: send "Authorization: Bearer <API key>"', {
        headers: { 'www-authenticate': 'Bearer realm="clickfold"' },
      });
    const granted = scopes.get(digest(key));
    if (!granted)
      throw httpError(401, 'invalid_key', 'this API key is not valid', { headers: { 'www-authenticate': 'Bearer realm="clickfold", error="invalid_token"' } });
    if (scope === 'erase' && granted !== 'erase')
      throw httpError(403, 'forbidden', 'this API key may only read; this request changes data (an erase, an audience) and needs a key from API_KEYS');
    return next();
  };
}
