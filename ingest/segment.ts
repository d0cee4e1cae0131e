import { randomUUID } from 'node:crypto';
import { Hono, type Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { Channel } from '../contract/raw-event.js';
import { SEGMENT_LIMITS, SegmentBatch, SegmentEvent, type SegmentContext } from '../contract/segment.js';
import type { LogMessage } from '../lib/log.js';
import { limitBody, readJsonBody } from './body.js';
import { enforceLimits, requestRef, type IngestEnv, type RouteDeps } from './context.js';
import { anonymizeIp } from './enrich.js';
import { httpError, type Issue } from '../lib/http-errors.js';
import type { UserVerifier } from './identity.js';
import { instrument, type IngestMetrics } from './metrics.js';
import { flattenProps, moneyOf } from './props.js';
import { applyBotPolicy, toRawMessage, type Enrichment, type EventInput } from './raw.js';
import type { Rejection } from './sink.js';
import type { Site } from './sites.js';
import { toIssues } from './validate.js';

export interface SegmentOptions {
  /** Largest `/v1/batch` body, bytes (Segment's own limit is 500 KB). Single calls: 32 KB. */
  batchMaxBodyBytes: number;
  metrics: IngestMetrics;
}

type Single = 'track' | 'page' | 'identify';

/**
 * The Segment-compatible API: `POST /v1/batch`, `/v1/track`, `/v1/page`, `/v1/identify`, so
 * server-side systems (CRM, call centre, mailer) send with Segment's libraries unchanged.
 * The write key is the basic-auth user name (or `writeKey` in the body) and names the site.
 * Events become the same `clicks.raw` records as the snippet's; `context.channel` (or
 * `properties.channel`) says which channel they came through, `server` when neither does.
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
    let site: Site | undefined;
    if (headerKey !== undefined) {
      site = deps.sites.byWriteKey(headerKey);
      if (!site) throw unauthorized(c, route, rt, 'the write key is not known');
      enforceLimits(deps, c, site, route);
    }

    const read = await readJsonBody(c, { maxBytes, gzip: true });
    if (!read.ok) throw sink.reject(requestRef(c, route, rt, site?.id), read.status, read.reason, read.message, { payload: read.text });
    const body = read.body;

    if (!site) {
      const bodyKey = isObject(body) && typeof body.writeKey === 'string' ? body.writeKey : undefined;
      site = bodyKey === undefined ? undefined : deps.sites.byWriteKey(bodyKey);
      if (!site) throw unauthorized(c, route, rt, bodyKey === undefined ? 'send the write key as the basic-auth user name' : 'the write key is not known');
      enforceLimits(deps, c, site, route);
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
    const verify = c.req.header('origin') === undefined ? null : site.verifyUser;
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
      const mapped = toInput(user.event, site, batchContext, sentAt ?? timeOf(parsed.data.sentAt), rt, deps);
      if ('issues' in mapped) rejected.push({ reason: 'invalid_event', issues: mapped.issues.map((i) => ({ ...i, path: at(i.path) })), index, payload: item });
      else accepted.push({ ...mapped, unsigned: user.unsigned });
    });

    const { kept, dropped } = applyBotPolicy(site, accepted);
    sink.skipped(route, 'bot', dropped);
    const unsigned = kept.filter((a) => a.unsigned).length;
    if (unsigned > 0) opts.metrics.unsignedUsers.inc({ route }, unsigned);
    const messages: LogMessage[] = kept.map((a) => toRawMessage(a.input, a.x));
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

  const routes: [string, Single | null, number][] = [
    ['/v1/batch', null, opts.batchMaxBodyBytes],
    ['/v1/track', 'track', SEGMENT_LIMITS.callBytes],
    ['/v1/page', 'page', SEGMENT_LIMITS.callBytes],
    ['/v1/identify', 'identify', SEGMENT_LIMITS.callBytes],
  ];
  for (const [route, single, max] of routes) {
    app.post(route, instrument(opts.metrics, route), limitBody(max, tooLarge(route, max), unreadable(route)), handle(route, single, max));
  }
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

function timeOf(v: unknown): number | undefined {
  const t = typeof v === 'number' ? v : typeof v === 'string' ? Date.parse(v) : NaN;
  return Number.isFinite(t) ? t : undefined;
}

/**
 * A browser call (`verify` set) on a site that signs user ids: a `userId` must come with
 * `context.clickfold.sig` (the event's context, else the batch's). Unsigned, an identify or alias
 * is refused; any other event stays the anonymous id's when it has one, and is refused otherwise.
 */
function checkUser(
  e: SegmentEvent,
  batchContext: SegmentContext | undefined,
  verify: UserVerifier | null,
): { event: SegmentEvent; unsigned: boolean } | { issues: Issue[] } {
  if (!verify || e.userId == null) return { event: e, unsigned: false };
  const sig = { ...batchContext, ...e.context }.clickfold?.sig;
  if (verify(e.userId, sig)) return { event: e, unsigned: false };
  if (e.type !== 'identify' && e.type !== 'alias' && e.anonymousId != null) return { event: { ...e, userId: null }, unsigned: true };
  const message =
    sig === undefined
      ? 'this site signs user ids: a browser call with userId needs context.clickfold.sig'
      : 'context.clickfold.sig is not the signature of userId';
  return { issues: [{ path: 'context.clickfold.sig', message }] };
}

const TYPE = { track: 'track', page: 'page', screen: 'page', identify: 'identify', alias: 'identify' } as const;

/** One Segment event as our raw input, or the issues that keep it out. */
function toInput(
  e: SegmentEvent,
  site: Site,
  batchContext: SegmentContext | undefined,
  sentAt: number | undefined,
  rt: number,
  deps: RouteDeps,
): { input: EventInput; x: Enrichment } | { issues: Issue[] } {
  const context: SegmentContext = { ...batchContext, ...e.context };
  const properties = e.type === 'identify' ? e.traits : e.type === 'alias' ? undefined : e.properties;
  const issues: Issue[] = [];

  const channelIn = context.channel ?? (typeof properties?.channel === 'string' ? properties.channel : undefined);
  const channel = channelIn === undefined ? (e.type === 'screen' ? 'app' : 'server') : channelIn.trim().toLowerCase();
  if (!Channel.safeParse(channel).success) {
    issues.push({
      path: context.channel !== undefined ? 'context.channel' : 'properties.channel',
      message: 'a channel is a lower-case word: email, call, chat, app...',
    });
  }
  const url = str(properties?.url) ?? context.page?.url;
  if (url !== undefined && url.length > 2048) issues.push({ path: 'properties.url', message: 'at most 2048 characters' });
  if (issues.length > 0) return { issues };

  // alias(userId, previousId) links like identify: the previous id joins the user.
  const user = e.userId ?? undefined;
  const visitor = e.type === 'alias' ? e.previousId : (e.anonymousId ?? undefined);
  // Segment's clock-skew correction: the event happened (sentAt - timestamp) before we received it.
  const clientTs = timeOf(e.timestamp ?? e.originalTimestamp);
  const ts = clientTs === undefined ? rt : sentAt === undefined ? clientTs : rt - (sentAt - clientTs);
  const ref = str(properties?.referrer) ?? context.page?.referrer;
  const title = str(properties?.title) ?? context.page?.title;
  const { ua, bot } = deps.parseUa(context.userAgent);

  return {
    input: {
      id: e.messageId ?? `seg-${randomUUID()}`,
      site: site.id,
      person: (user ?? visitor)!,
      visitor,
      user,
      channel,
      type: TYPE[e.type],
      name: e.type === 'track' ? e.event : e.type === 'page' || e.type === 'screen' ? (e.name ?? undefined) : undefined,
      ts: Math.round(ts),
      url,
      ref: ref !== undefined && ref.length <= 2048 ? ref : undefined,
      title: title?.slice(0, 256),
      props: flattenProps(properties),
      value: moneyOf(properties),
    },
    x: { rt, ua, bot, ip: anonymizeIp(context.ip) },
  };
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
