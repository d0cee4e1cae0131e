import type { Context } from 'hono';
import { SEGMENT_LIMITS, type SegmentSettings } from '../contract/segment.js';
import { httpError } from '../lib/http-errors.js';
import { enforceLimits, type RouteDeps } from './context.js';

export const SETTINGS_ROUTE = '/v1/projects/:writeKey/settings';

/** `host` or `host:port`, a DNS name, IPv4 or bracketed IPv6 address: what may go into `apiHost`. */
const HOST = /^([a-z0-9-]{1,63}(\.[a-z0-9-]{1,63}){0,20}|\[[0-9a-f:.]{2,45}\])(:\d{1,5})?$/i;

/**
 * `GET /v1/projects/:writeKey/settings`: the settings document analytics.js (analytics-next) reads
 * from its `cdnURL` before it sends anything. It names only what the page already knows (the write
 * key it asked with, and the host it asked) and turns everything off but the one destination that
 * sends to ingest: `Segment.io`, with `apiHost` set to the host the request came to (`/v1/t`,
 * `/v1/p`... are ingest's), and Segment's own telemetry off. No site id, no origins, no other key.
 *
 * Unknown write key: 404. A page on an origin the site does not allow: 403. Behind proxies that
 * rewrite the Host header (TRUST_PROXY > 0), `X-Forwarded-Host` / `X-Forwarded-Proto` say what the
 * browser used: the entry the outermost trusted proxy wrote, counted from the right as
 * X-Forwarded-For is (what a client sent ahead of it is not believed); with TRUST_PROXY 0 they are
 * ignored. The answer is `private` so no shared cache can keep one sender's version for another.
 */
export function settingsHandler(deps: RouteDeps) {
  return (c: Context) => {
    const key = c.req.param('writeKey') ?? '';
    const site = key.length <= SEGMENT_LIMITS.writeKeyLength ? deps.sites.byWriteKey(key) : undefined;
    if (!site) throw httpError(404, 'unknown_write_key', 'no site has this write key');
    const origin = c.req.header('origin');
    if (origin !== undefined && !site.allowsOrigin(origin)) {
      throw httpError(403, 'origin_not_allowed', `origin ${origin.slice(0, 256)} may not send events with this write key`);
    }
    enforceLimits(deps, c, site, SETTINGS_ROUTE);
    const forwarded = (name: string) => (deps.trustProxy > 0 ? trustedEntry(c.req.header(name), deps.trustProxy) : undefined);
    const host = forwarded('x-forwarded-host') ?? c.req.header('host') ?? new URL(c.req.url).host;
    if (!HOST.test(host)) throw httpError(400, 'invalid_host', 'the Host header is not a host name');
    const proto = forwarded('x-forwarded-proto')?.toLowerCase();
    const protocol = proto === 'https' || proto === 'http' ? proto : new URL(c.req.url).protocol === 'https:' ? 'https' : 'http';
    return c.json(settingsOf(key, `${host.toLowerCase()}/v1`, protocol), 200, { 'cache-control': 'private, max-age=300' });
  };
}

/** The document itself: nothing of the site but that the key is known. */
export function settingsOf(writeKey: string, apiHost: string, protocol: 'http' | 'https'): SegmentSettings {
  return {
    integrations: {
      'Segment.io': { apiKey: writeKey, apiHost, protocol, unbundledIntegrations: [], addBundledMetadata: false, maybeBundledConfigIds: {} },
    },
    remotePlugins: [],
    enabledMiddleware: {},
    legacyVideoPluginsEnabled: false,
    // Segment's own telemetry (`/m`) would go to api.segment.io: off.
    metrics: { sampleRate: 0 },
  };
}

/**
 * The entry `hops` from the right of a forwarded header's list: what the outermost of `hops` trusted
 * proxies wrote (each appends what it saw). Fewer entries than hops: the leftmost, which a trusted
 * proxy then wrote.
 */
function trustedEntry(header: string | undefined, hops: number): string | undefined {
  if (header === undefined) return undefined;
  const entries = header.split(',');
  return entries[Math.max(0, entries.length - hops)]?.trim() || undefined;
}
