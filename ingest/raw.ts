import type { RawEvent } from '../contract/raw-event.js';
import type { LogMessage } from '../lib/log.js';
import { boundedTime, type UaInfo } from './enrich.js';
import { DEFAULT_PRIVACY, scrubEvent, type PrivacyPolicy } from './scrub.js';
import type { Site } from './sites.js';

/**
 * The one place a `clicks.raw` record is built, whatever the channel (snippet, Segment API,
 * e-mail): each endpoint maps its own input to an `EventInput`, enrichment adds the request's
 * facts, and this turns both into the keyed record.
 */
export type EventInput = Omit<RawEvent, 'v' | 'rt' | 'ua' | 'ip' | 'bot'>;

/** What ingest learned about the request (or, for server-side senders, about the end user). */
export interface Enrichment {
  /** Receive time, epoch ms. */
  rt: number;
  ua: UaInfo | undefined;
  bot: boolean;
  /** Already anonymised. */
  ip: string | undefined;
}

const DAY = 86_400_000;
/** Events queued offline may be days old; none comes from the future. */
export const MAX_PAST_MS = 7 * DAY;
export const MAX_FUTURE_MS = 10 * 60_000;

/**
 * `privacy`: the site's (`site.privacy`); whatever the channel, the record keeps only what it allows
 * (ingest/scrub.ts), so nothing personal reaches Kafka by default.
 */
export function toRawMessage(e: EventInput, x: Enrichment, privacy: PrivacyPolicy = DEFAULT_PRIVACY): LogMessage {
  const s = scrubEvent(e, privacy);
  const raw: RawEvent = {
    v: 1,
    id: e.id,
    site: e.site,
    person: e.person,
    visitor: e.visitor,
    user: e.user,
    session: e.session,
    channel: e.channel,
    type: e.type,
    name: s.name,
    ts: boundedTime(e.ts, x.rt, MAX_PAST_MS, MAX_FUTURE_MS),
    rt: x.rt,
    url: s.url,
    ref: s.ref,
    title: s.title,
    topic: s.topic,
    stage: e.stage,
    el: s.el,
    props: s.props,
    value: e.value,
    ua: x.ua,
    ip: x.ip,
    bot: x.bot || undefined,
  };
  // Keyed by person: a person's events stay in one partition and fold in order.
  return { key: e.person, value: JSON.stringify(raw) };
}

/**
 * The site's bot policy: `drop` keeps bot events out of Kafka (counted in the metrics, not
 * dead-lettered: they are not bad input), `flag` keeps them with `bot: true`.
 */
export function applyBotPolicy<T extends { x: Enrichment }>(site: Site, events: T[]): { kept: T[]; dropped: number } {
  if (site.bots === 'flag') return { kept: events, dropped: 0 };
  const kept = events.filter((e) => !e.x.bot);
  return { kept, dropped: events.length - kept.length };
}
