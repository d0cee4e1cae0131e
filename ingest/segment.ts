import { Hono, type Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { SEGMENT_LIMITS, SegmentBatch, SegmentEvent, type SegmentContext } from '../contract/segment.js';
import type { LogMessage } from '../lib/log.js';
import { httpError } from '../lib/http-errors.js';
import { limitBody, readJsonBody } from './body.js';
import { enforceLimits, requestRef, type IngestEnv, type RouteDeps } from './context.js';
import { instrument, type IngestMetrics } from './metrics.js';
import { applyBotPolicy, toRawMessage, type Enrichment, type EventInput } from './raw.js';
import { checkUser, segmentToInput, timeOf, type SegmentRequest } from './segment-event.js';
import { SETTINGS_ROUTE, settingsHandler } from './segment-settings.js';
import type { Rejection } from './sink.js';
import { siteCors, type CorsOptions } from './site-cors.js';
import type { Site } from './sites.js';
import { toIssues } from './validate.js';

export interface SegmentOptions {
  /** Largest `/v1/batch` body, bytes (Segment's own limit is 500 KB). Single calls: 32 KB. */
  batchMaxBodyBytes: number;
  metrics: IngestMetrics;
}

/** The type a single-call path gives its body; `group` only to refuse it with the reason. */
type Single = 'track' | 'page' | 'screen' | 'identify' | 'alias' | 'group';

/**
 * Segment's paths and analytics.js's short ones (`<apiHost>/<first letter of the type>`, and
 * `/b` for its batching delivery). `group` has no place in a dialogue: 400 with the reason.
 */
const ROUTES: [path: string, single: Single | null][] = [
  ['/v1/batch', null],
  ['/v1/b', null],
  ...(['track', 'page', 'screen', 'identify', 'alias', 'group'] as const).flatMap((t): [string, Single][] => [
    [`/v1/${t}`, t],
    [`/v1/${t[0]}`, t],
  ]),
];

/**
 * analytics.js 2.0 posts `text/plain`, which alone needs no preflight; analytics-next 1.84 adds
 * the write key in `Authorization` (a preflight), and `X-Retry-Count` on retries. The settings
 * document is a plain GET.
 */
const SEGMENT_CORS: CorsOptions = { methods: 'GET, POST, OPTIONS', headers: 'authorization, content-type, x-retry-count' };

/**
 * The Segment-compatible API, so Segment's and RudderStack's libraries send unchanged: the
 * server libraries to `POST /v1/batch` (JSON, gzipped or not; RudderStack labels it
 * `application/x-www-form-urlencoded`), analytics.js in the browser to `/v1/t`, `/v1/p`... with
 * `text/plain` JSON, after reading its settings from `GET /v1/projects/:writeKey/settings`.
 * The write key is the basic-auth user name (or `writeKey` in the body) and names the site; a
 * browser's Origin must be one of the site's. Events become the same `clicks.raw` records as the
 * snippet's; `context.channel` (or `properties.channel`) says which channel they came through,
 * else `web` from a browser and `server` from a server.
 * Answers 200 `{"success": true, ...}` like Segment; 400 names the bad events by index.
 */
export function segmentRoutes(deps: RouteDeps, opts: SegmentOptions): Hono<IngestEnv> {
  const app = new Hono<IngestEnv>();
  const { sink } = deps;

  const siteOfHeader = (c: Context) => {
    const key = basicUser(c.req.header('authorization'));
    return key ? deps.sites.byWriteKey(key)?.id : undefined;
  };
  const tooLarge = (route: string, max: number) => async (c: Context<IngestEnv>) => {
    throw sink.reject(requestRef(c, route, deps.now(), siteOfHeader(c)), 413, 'body_too_large', `the body is larger than ${max} bytes`);
  };
  const unreadable = (route: string) => async (c: Context<IngestEnv>, r: { status: ContentfulStatusCode; reason: string; message: string }) => {
    throw sink.reject(requestRef(c, route, deps.now(), siteOfHeader(c)), r.status, r.reason, r.message);
  };

  const handle = (route: string, single: Single | null, maxBytes: number) => async (c: Context<IngestEnv>) => {
    const rt = deps.now();
    // The header names the site before the body is read, so limits apply before any parsing.
    const headerKey = basicUser(c.req.header('authorization'));
    const origin = c.req.header('origin');
    /** A browser may send only for a site that lists its origin, like the snippet. */
    const admit = (s: Site, payload?: string) => {
      if (origin !== undefined && !s.allowsOrigin(origin)) {
        throw sink.reject(requestRef(c, route, rt, s.id), 403, 'origin_not_allowed', `origin ${origin.slice(0, 256)} may not send events for this write key`, {
          payload,
        });
      }
      enforceLimits(deps, c, s, route);
    };
    let site: Site | undefined;
    if (headerKey !== undefined) {
      site = deps.sites.byWriteKey(headerKey);
      if (!site) throw unauthorized(c, route, rt, 'the write key is not known');
      admit(site);
    }

    const read = await readJsonBody(c, { maxBytes, gzip: true, formJson: true });
    if (!read.ok) throw sink.reject(requestRef(c, route, rt, site?.id), read.status, read.reason, read.message, { payload: read.text });
    const body = read.body;

    if (!site) {
      const bodyKey = isObject(body) && typeof body.writeKey === 'string' ? body.writeKey : undefined;
      site = bodyKey === undefined ? undefined : deps.sites.byWriteKey(bodyKey);
      if (!site) throw unauthorized(c, route, rt, bodyKey === undefined ? 'send the write key as the basic-auth user name' : 'the write key is not known');
      admit(site, read.text);
    }
    const ref = requestRef(c, route, rt, site.id);

    let items: unknown[];
    let batchContext: SegmentContext | undefined;
    let sentAt: number | undefined;
    if (single) {
      if (!isObject(body)) throw sink.reject(ref, 400, 'invalid_event', 'the body must be a JSON object', { payload: read.text });
      items = [{ ...body, type: single }];
      sentAt = timeOf(body.sentAt);
    } else {
      const envelope = SegmentBatch.safeParse(body);
      if (!envelope.success) {
        throw sink.reject(ref, 400, 'invalid_batch', 'the batch envelope is invalid', { issues: toIssues(envelope.error), payload: read.text });
      }
      items = envelope.data.batch;
      batchContext = envelope.data.context;
      sentAt = timeOf(envelope.data.sentAt);
    }

    // Server calls (no Origin) are trusted with any userId; browser calls on a site that signs user ids are not.
    const verify = origin === undefined ? null : site.verifyUser;
    const request: SegmentRequest = {
      site,
      batchContext,
      sentAt,
      rt,
      browser: origin === undefined ? null : { ip: deps.clientIp(c), userAgent: c.req.header('user-agent') },
      parseUa: deps.parseUa,
    };
    const accepted: { input: EventInput; x: Enrichment; unsigned: boolean }[] = [];
    const rejected: Rejection[] = [];
    const refused: Rejection[] = [];
    items.forEach((item, index) => {
      const prefix = single ? [] : ['batch', index];
      const at = (path: string) => [...prefix, path].join('.');
      const parsed = SegmentEvent.safeParse(item);
      if (!parsed.success) {
        rejected.push({ reason: 'invalid_event', issues: toIssues(parsed.error, prefix), index, payload: item });
        return;
      }
      const user = checkUser(parsed.data, batchContext, verify);
      if ('issues' in user) {
        refused.push({ reason: 'unsigned_identify', issues: user.issues.map((i) => ({ ...i, path: at(i.path) })), index, payload: item });
        return;
      }
      const mapped = segmentToInput(user.event, request);
      if ('issues' in mapped) rejected.push({ reason: 'invalid_event', issues: mapped.issues.map((i) => ({ ...i, path: at(i.path) })), index, payload: item });
      else accepted.push({ ...mapped, unsigned: user.unsigned });
    });

    const { kept, dropped } = applyBotPolicy(site, accepted);
    sink.skipped(route, 'bot', dropped);
    const unsigned = kept.filter((a) => a.unsigned).length;
    if (unsigned > 0) opts.metrics.unsignedUsers.inc({ route }, unsigned);
    const privacy = site.privacy;
    const messages: LogMessage[] = kept.map((a) => toRawMessage(a.input, a.x, privacy));
    sink.deadLetter(ref, [...rejected, ...refused]);
    await sink.produce(ref, messages);

    const notes = { ...(dropped > 0 ? { dropped } : {}), ...(refused.length > 0 ? { refused: refused.length } : {}), ...(unsigned > 0 ? { unsigned } : {}) };
    if (rejected.length > 0) {
      const issues = rejected.flatMap((r) => r.issues).slice(0, 50);
      if (single) throw httpError(400, 'invalid_event', 'the event is invalid; nothing was accepted', { issues });
      throw httpError(400, 'invalid_event', `${rejected.length} of ${items.length} events are invalid; the other ${messages.length} were accepted`, {
        issues,
        body: { success: false, accepted: messages.length, rejected: rejected.map((r) => r.index!), ...notes },
      });
    }
    return c.json({ success: true, accepted: messages.length, ...notes }, 200);
  };

  const unauthorized = (c: Context<IngestEnv>, route: string, rt: number, message: string) =>
    sink.reject(requestRef(c, route, rt), 401, 'unknown_write_key', message, { headers: { 'www-authenticate': 'Basic realm="clickfold"' } });

  const cors = siteCors(deps.sites, SEGMENT_CORS);
  for (const [route, single] of ROUTES) {
    const max = single ? SEGMENT_LIMITS.callBytes : opts.batchMaxBodyBytes;
    app.use(route, instrument(opts.metrics, route), cors);
    app.post(route, limitBody(max, tooLarge(route, max), unreadable(route)), handle(route, single, max));
  }
  app.use(SETTINGS_ROUTE, instrument(opts.metrics, SETTINGS_ROUTE), cors);
  app.get(SETTINGS_ROUTE, settingsHandler(deps));
  return app;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The user name of `Authorization: Basic base64(user:password)`; undefined without such a header. */
export function basicUser(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Basic\s+([A-Za-z0-9+/=_-]{1,1024})\s*$/i.exec(header);
  if (!m) return '';
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon === -1 ? decoded : decoded.slice(0, colon);
}
