import { TRAIT_LIMITS, traitProblem, type RawEvent, type TraitRefusal, type TraitValue } from '../contract/raw-event.js';
import type { LogMessage } from '../lib/log.js';
import { boundedTime, type UaInfo } from './enrich.js';
import { DEFAULT_PRIVACY, scrubEvent, type PrivacyPolicy } from './scrub.js';
import type { Site } from './sites.js';

/**
 * The one place a `clicks.raw` record is built, whatever the channel (snippet, Segment API,
 * e-mail): each endpoint maps its own input to an `EventInput`, enrichment adds the request's
 * facts, and this turns both into the keyed record.
 */
export type EventInput = Omit<RawEvent, 'v' | 'rt' | 'ua' | 'ip' | 'bot' | 'traits'>;

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

export interface PickedTraits {
  traits: Record<string, TraitValue> | undefined;
  /** What was left out, and why (the import CLI reports it; ingest's senders learn it from the README). */
  dropped: { name: string; reason: TraitRefusal | 'too_many_traits' }[];
}

/**
 * The traits an identify record carries: its scrubbed properties (the allow-listed traits,
 * flattened) within the bounds the person keeps them in (contract/raw-event.ts TRAIT_LIMITS), the
 * first ones as sent when there are more. Past a bound a trait is dropped, not cut: a value cut
 * short would be a different value, and an audience would match it wrongly.
 */
export function pickTraits(props: RawEvent['props']): PickedTraits {
  const dropped: PickedTraits['dropped'] = [];
  if (!props) return { traits: undefined, dropped };
  const traits: Record<string, TraitValue> = {};
  let n = 0;
  for (const [name, value] of Object.entries(props)) {
    // flattenProps's count of properties past its limit, not a trait.
    if (name === '_dropped') continue;
    const problem = traitProblem(name, value);
    if (problem) dropped.push({ name, reason: problem.reason });
    else if (n >= TRAIT_LIMITS.count) dropped.push({ name, reason: 'too_many_traits' });
    else {
      traits[name] = value as TraitValue;
      n++;
    }
  }
  return { traits: n > 0 ? traits : undefined, dropped };
}

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
    // props keep the allow-listed traits as before (a topic-map rule may read them); `traits` is what the person keeps.
    traits: e.type === 'identify' ? pickTraits(s.props).traits : undefined,
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
