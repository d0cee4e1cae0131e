import { z } from 'zod';
import { ElementContext, Props } from './collect.js';

/** Channels feed the same dialogues; `web` is the snippet's, the others come from server-side APIs. */
export const Channel = z
  .string()
  .min(1)
  .max(32)
  .regex(/^[a-z][a-z0-9_-]*$/);

/**
 * Bounds of a raw record's fields. The worker checks every record against them (a record on the
 * topic may come from a buggy or compromised producer, not only from ingest): ids go into Redis
 * keys and transition ids, so their alphabet has no whitespace, quotes, slashes or braces.
 */
export const RAW_LIMITS = {
  /** The widest id any ingest path writes (Segment's). */
  idLength: 128,
  siteLength: 64,
  textLength: 8192,
  nameLength: 256,
} as const;
export const PERSON_ID = /^[\w.:@+\-|=~!$*]{1,128}$/;
export const SITE_ID = /^[\w.:@+-]{1,64}$/;

const PersonId = z.string().regex(PERSON_ID, 'an id of 1 to 128 letters, digits and . _ : @ + - | = ~ ! $ *');
const text = (max: number) => z.string().max(max);

/**
 * One record on Kafka topic `clicks.raw`: a validated, enriched event, keyed by `person`.
 * Short field names on purpose: every byte here is multiplied by the clickstream volume.
 * Version 1; a consumer that meets another `v` dead-letters the record instead of guessing.
 */
export const RawEvent = z.object({
  v: z.literal(1),
  id: z.string().min(1).max(RAW_LIMITS.idLength),
  site: z.string().regex(SITE_ID, 'a site id of 1 to 64 letters, digits and . _ : @ + -'),
  /** The partition key: the user id when known, else the visitor id. */
  person: PersonId,
  visitor: PersonId.optional(),
  user: PersonId.optional(),
  session: text(RAW_LIMITS.idLength).optional(),
  channel: Channel,
  /**
   * `tick`: written by the history worker's sweeper (and an audience backfill), never by ingest:
   * re-evaluate this person's stalls and audiences at `rt` (history/automation/tick.ts).
   */
  type: z.enum(['page', 'click', 'track', 'identify', 'tick']),
  name: text(RAW_LIMITS.nameLength).optional(),
  /** Event time (client time, clamped by ingest to a bounded skew from `rt`), epoch ms. */
  ts: z.number().finite(),
  /** Ingest receive time, epoch ms. */
  rt: z.number().finite(),
  url: text(RAW_LIMITS.textLength).optional(),
  ref: text(RAW_LIMITS.textLength).optional(),
  title: text(RAW_LIMITS.textLength).optional(),
  topic: text(RAW_LIMITS.nameLength).optional(),
  stage: text(64).optional(),
  el: ElementContext.optional(),
  props: Props.optional(),
  value: z.number().finite().optional(),
  /** Parsed user agent: browser, os, device type. */
  ua: z.object({ b: z.string().optional(), o: z.string().optional(), d: z.string().optional() }).optional(),
  /** Client address with the last IPv4 octet / last 80 IPv6 bits zeroed. */
  ip: z.string().optional(),
  bot: z.boolean().optional(),
});
export type RawEvent = z.infer<typeof RawEvent>;

export const TOPICS = {
  raw: 'clicks.raw',
  invalid: 'clicks.invalid',
  transitions: 'history.transitions',
  /** Webhook requests a receiver refused for good (a 4xx other than 408/429), as DeadLetter records keyed by URL. */
  webhooksParked: 'history.webhooks.parked',
  /**
   * Erasures (contract/erasure.ts), one record per erased id keyed by the id, compacted: every reader of
   * `clicks.raw` skips an erased id's records received before its erasure, so no replay brings it back.
   */
  erasures: 'history.erasures',
} as const;
