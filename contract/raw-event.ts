import { z } from 'zod';
import { ElementContext, Props } from './collect.js';

/** Channels feed the same dialogues; `web` is the snippet's, the others come from server-side APIs. */
export const Channel = z.string().min(1).max(32).regex(/^[a-z][a-z0-9_-]*$/);

/**
 * One record on Kafka topic `clicks.raw`: a validated, enriched event, keyed by `person`.
 * Short field names on purpose: every byte here is multiplied by the clickstream volume.
 * Version 1; a consumer that meets another `v` dead-letters the record instead of guessing.
 */
export const RawEvent = z.object({
  v: z.literal(1),
  id: z.string(),
  site: z.string(),
  /** The partition key: the user id when known, else the visitor id. */
  person: z.string(),
  visitor: z.string().optional(),
  user: z.string().optional(),
  session: z.string().optional(),
  channel: Channel,
  type: z.enum(['page', 'click', 'track', 'identify']),
  name: z.string().optional(),
  /** Event time (client time, clamped by ingest to a bounded skew from `rt`), epoch ms. */
  ts: z.number(),
  /** Ingest receive time, epoch ms. */
  rt: z.number(),
  url: z.string().optional(),
  ref: z.string().optional(),
  title: z.string().optional(),
  topic: z.string().optional(),
  stage: z.string().optional(),
  el: ElementContext.optional(),
  props: Props.optional(),
  value: z.number().optional(),
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
} as const;
