import type { MiddlewareHandler } from 'hono';
import { httpError } from '../lib/http-errors.js';
import type { SiteRegistry } from './sites.js';

/**
 * CORS for `/v1/collect`, answered per site. A preflight does not carry the body, so it is allowed
 * when the site named in `?site=` (or, without it, any site) allows the origin. The POST itself is
 * then checked against its own site's origins by the handler (403 `origin_not_allowed`), so a site
 * only ever receives events from its own pages. Every answer to a POST echoes the origin, so the
 * snippet can read a 4xx and stop retrying instead of seeing a network error.
 */
export function siteCors(sites: SiteRegistry): MiddlewareHandler {
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
        'access-control-allow-methods': 'POST, OPTIONS',
        'access-control-allow-headers': 'content-type',
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
