import type { Context } from 'hono';
import type { Logger } from '../lib/logger.js';
import type { UaResult } from './enrich.js';
import { httpError } from '../lib/http-errors.js';
import type { RequestRef, Sink } from './sink.js';
import type { Site, SiteRegistry } from './sites.js';

/** What every ingest endpoint is built from; `createIngestApp` fills it once. */
export interface RouteDeps {
  sink: Sink;
  sites: SiteRegistry;
  logger: Logger;
  /** The client address (socket, or X-Forwarded-For behind a trusted proxy). */
  clientIp: (c: Context) => string | undefined;
  /** Proxies in front of ingest (TRUST_PROXY): 0 means no forwarded header is believed. */
  trustProxy: number;
  /** Cached user-agent parsing and bot detection. */
  parseUa: (ua: string | undefined) => UaResult;
  now: () => number;
}

/** The variables ingest's middleware sets on the context. */
export interface IngestEnv {
  Variables: { rid: string };
}

export function requestRef(c: Context<IngestEnv>, route: string, rt: number, site?: string): RequestRef {
  return { route, rt, rid: c.get('rid') ?? '', site };
}

/** Throws the 429 (with Retry-After) when the site's or this address's bucket is empty. */
export function enforceLimits(deps: RouteDeps, c: Context, site: Site, route: string): void {
  const wait = site.limit(deps.clientIp(c));
  if (wait > 0) {
    deps.sink.skipped(route, 'rate_limited', 1);
    throw rateLimited(wait);
  }
}

export function rateLimited(wait: number) {
  return httpError(429, 'rate_limited', `too many requests; retry in ${wait} s`, { headers: { 'retry-after': String(wait) } });
}
