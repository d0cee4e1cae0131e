import { randomUUID } from 'node:crypto';
import { Channel } from '../contract/raw-event.js';
import type { SegmentContext, SegmentEvent } from '../contract/segment.js';
import type { Issue } from '../lib/http-errors.js';
import { anonymizeIp, type UaResult } from './enrich.js';
import type { UserVerifier } from './identity.js';
import { flattenProps, moneyOf } from './props.js';
import type { Enrichment, EventInput } from './raw.js';
import type { Site } from './sites.js';

/** What the request says about every event it carries. */
export interface SegmentRequest {
  site: Site;
  /** The batch's `context`, under each event's own. */
  batchContext: SegmentContext | undefined;
  /** The sender's clock when it sent (Segment's `sentAt`), for the clock-skew correction. */
  sentAt: number | undefined;
  rt: number;
  /**
   * From a browser (an Origin header: analytics.js): the channel defaults to `web`, and the
   * address and user agent are the request's own. From a server: `server`, and the end user's
   * address and agent only when the server forwards them in `context.ip` / `context.userAgent`.
   */
  browser: { ip: string | undefined; userAgent: string | undefined } | null;
  parseUa: (ua: string | undefined) => UaResult;
}

export function timeOf(v: unknown): number | undefined {
  const t = typeof v === 'number' ? v : typeof v === 'string' ? Date.parse(v) : NaN;
  return Number.isFinite(t) ? t : undefined;
}

/**
 * A browser call (`verify` set) on a site that signs user ids: a `userId` must come with
 * `context.clickfold.sig` (the event's context, else the batch's). Unsigned, an identify or alias
 * is refused; any other event stays the anonymous id's when it has one, and is refused otherwise.
 */
export function checkUser(
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

/**
 * What analytics.js puts in a page call's properties besides the site's own: the raw record keeps
 * them in `url`, `ref` and `title` (as the snippet's page views do), not again in `props`.
 */
const PAGE_FIELDS: ReadonlySet<string> = new Set(['url', 'referrer', 'title', 'path', 'search']);

/** One Segment event as our raw input, or the issues that keep it out. */
export function segmentToInput(e: SegmentEvent, r: SegmentRequest): { input: EventInput; x: Enrichment } | { issues: Issue[] } {
  const context: SegmentContext = { ...r.batchContext, ...e.context };
  const properties = e.type === 'identify' ? e.traits : e.type === 'alias' ? undefined : e.properties;
  const issues: Issue[] = [];

  const channelIn = context.channel ?? (typeof properties?.channel === 'string' ? properties.channel : undefined);
  const channel = channelIn === undefined ? (e.type === 'screen' ? 'app' : r.browser ? 'web' : 'server') : channelIn.trim().toLowerCase();
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
  const sentAt = r.sentAt ?? timeOf(e.sentAt);
  const clientTs = timeOf(e.timestamp ?? e.originalTimestamp);
  const ts = clientTs === undefined ? r.rt : sentAt === undefined ? clientTs : r.rt - (sentAt - clientTs);
  // analytics.js sends an empty referrer and title when there is none; the snippet sends none.
  const ref = str(properties?.referrer) ?? context.page?.referrer;
  const title = str(properties?.title) ?? context.page?.title;
  const page = e.type === 'page' || e.type === 'screen';
  const props = page && properties ? Object.fromEntries(Object.entries(properties).filter(([k]) => !PAGE_FIELDS.has(k))) : properties;
  const { ua, bot } = r.parseUa(r.browser ? (r.browser.userAgent ?? context.userAgent) : context.userAgent);

  return {
    input: {
      id: e.messageId ?? `seg-${randomUUID()}`,
      site: r.site.id,
      person: (user ?? visitor)!,
      visitor,
      user,
      channel,
      type: TYPE[e.type],
      name: e.type === 'track' ? e.event : page ? (e.name ?? undefined) : undefined,
      ts: Math.round(ts),
      url,
      ref: ref && ref.length <= 2048 ? ref : undefined,
      title: title ? title.slice(0, 256) : undefined,
      props: flattenProps(props),
      value: moneyOf(properties),
    },
    x: { rt: r.rt, ua, bot, ip: anonymizeIp(r.browser ? r.browser.ip : context.ip) },
  };
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
