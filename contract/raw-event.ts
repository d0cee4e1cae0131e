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

/**
 * Identify traits a site allow-listed (ingest/scrub.ts), bounded by what the person's hash keeps
 * without growing (history/fold/codec.ts): one hash field per trait, and Redis keeps a hash compact
 * (a listpack) only while every field name and value fits in 64 bytes; one longer entry turns the
 * whole history into a hashtable several times its size, for good. So a name is at most 62
 * characters (the field is `t:` and the name) and a string value at most 63 UTF-8 bytes (a type
 * tag comes before it). Names are flattened keys (`plan`, `company.size`): the allow-list's shape.
 */
export const TRAIT_LIMITS = { count: 32, nameLength: 62, valueBytes: 63 } as const;
export const TRAIT_NAME = /^[\w-]+(?:\.[\w-]+)*$/;
/** Names that would poison a plain object if a consumer ever merged traits into one. */
const RESERVED_TRAITS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);
export type TraitValue = string | number | boolean;
export type TraitRefusal = 'bad_name' | 'not_scalar' | 'value_too_long';

/** Bytes of `s` in UTF-8, without encoding it: the bound is the store's, which counts bytes. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** Why one trait cannot be kept, or null. */
export function traitProblem(name: string, value: unknown): { reason: TraitRefusal; message: string } | null {
  if (name.length === 0 || name.length > TRAIT_LIMITS.nameLength || !TRAIT_NAME.test(name) || RESERVED_TRAITS.has(name)) {
    return {
      reason: 'bad_name',
      message: `trait name "${name.slice(0, 64)}": 1 to ${TRAIT_LIMITS.nameLength} letters, digits, _ and -, segments joined by dots; not __proto__, constructor, prototype`,
    };
  }
  if (typeof value === 'string') {
    return utf8Length(value) > TRAIT_LIMITS.valueBytes
      ? { reason: 'value_too_long', message: `trait "${name}": a value of at most ${TRAIT_LIMITS.valueBytes} bytes (UTF-8)` }
      : null;
  }
  if ((typeof value === 'number' && Number.isFinite(value)) || typeof value === 'boolean') return null;
  return { reason: 'not_scalar', message: `trait "${name}": a string, a finite number or a boolean` };
}

/**
 * Why a record's `traits` is out of bounds, or null. By hand and without copying: the worker runs
 * it on every record that has traits (history/worker/read-record.ts).
 */
export function traitsProblem(v: unknown): string | null {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'traits: an object of name: value';
  const names = Object.keys(v);
  if (names.length > TRAIT_LIMITS.count) return `traits: at most ${TRAIT_LIMITS.count}`;
  for (const name of names) {
    const p = traitProblem(name, (v as Record<string, unknown>)[name]);
    if (p) return p.message;
  }
  return null;
}

/** Zod would drop a `__proto__` key silently; this refuses it, like every other bound, by name. */
const Traits = z.custom<Record<string, TraitValue>>().superRefine((v, ctx) => {
  const problem = traitsProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

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
  /** identify only: the traits the site allow-listed, as the person keeps them (see TRAIT_LIMITS). */
  traits: Traits.optional(),
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
