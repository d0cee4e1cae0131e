import type { MiddlewareHandler } from 'hono';
import { httpError } from '../lib/http-errors.js';
import type { SiteRegistry } from './sites.js';

/** What a preflight allows: the snippet's `/v1/collect` by default. */
export interface CorsOptions {
  methods: string;
  /** Request headers a page may send (lower case, comma-separated). */
  headers: string;
}

const COLLECT: CorsOptions = { methods: 'POST, OPTIONS', headers: 'content-type' };

/**
 * CORS for `/v1/collect` and the Segment-compatible API, answered per site. A preflight carries
 * neither the body nor the write key, so it is allowed when the site named in `?site=` (or,
 * without it, any site) allows the origin. The request itself is then checked against its own
 * site's origins by the handler (403 `origin_not_allowed`), so a site only ever receives events
 * from its own pages. Every answer echoes the origin, so the snippet (or analytics.js) can read a
 * 4xx and stop retrying instead of seeing a network error.
 */
export function siteCors(sites: SiteRegistry, opts: CorsOptions = COLLECT): MiddlewareHandler {
  return async (c, next) => {
    const origin = c.req.header('origin');
    if (c.req.method === 'OPTIONS') {
      const named = c.req.query('site');
      const site = named === undefined ? undefined : sites.byId(named);
      const allowed = origin !== undefined && (named === undefined ? sites.anyAllowsOrigin(origin) : !!site?.allowsOrigin(origin));
      if (!allowed) {
        throw httpError(
          403,
          'origin_not_allowed',
          origin === undefined
            ? 'a CORS preflight needs an Origin'
            : `origin ${origin.slice(0, 256)} may not send events${named ? ` for site "${named.slice(0, 64)}"` : ''}`,
        );
      }
      return c.body(null, 204, {
        'access-control-allow-origin': origin,
        'access-control-allow-methods': opts.methods,
        'access-control-allow-headers': opts.headers,
        'access-control-max-age': '86400',
        vary: 'Origin',
      });
    }
    await next();
    if (origin !== undefined) {
      c.header('access-control-allow-origin', origin);
      // The snippet on another origin must read Retry-After to back off as told on 429 and 503.
      c.header('access-control-expose-headers', 'Retry-After');
      c.header('vary', 'Origin');
    }
  };
}
