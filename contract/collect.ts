import { z } from 'zod';

/**
 * The batch the browser snippet posts to `POST /v1/collect` (as JSON or as the text/plain body
 * `navigator.sendBeacon` sends). Defined once; ingest validates with it, tests and the load
 * generator build batches against it.
 *
 * Bounds live here, not in ingest, so every producer of batches sees the same limits.
 */
export const LIMITS = {
  eventsPerBatch: 100,
  idLength: 64,
  urlLength: 2048,
  textLength: 256,
  nameLength: 128,
  propsCount: 32,
  propKeyLength: 64,
  propValueLength: 512,
  /** A signature is 64 hex digits; a little room, then the contract refuses it. */
  sigLength: 128,
} as const;

const id = z
  .string()
  .min(1)
  .max(LIMITS.idLength)
  .regex(/^[\w.:@+-]+$/, 'only letters, digits and . _ : @ + -');
const text = (max: number = LIMITS.textLength) => z.string().max(max);

/**
 * A user id's signature on a site with an `identitySecret`: hex HMAC-SHA256(secret, user id),
 * computed by the site's own server. Bounded here; anything but the 64 right hex digits simply
 * fails verification (ingest/identity.ts), so a garbled one costs the user, not the batch.
 */
export const UserSig = z.string().max(LIMITS.sigLength);

/** Keys that would poison a plain object if a consumer ever merged props into one. */
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
const propKey = z
  .string()
  .min(1)
  .max(LIMITS.propKeyLength)
  .refine((k) => !FORBIDDEN_KEYS.has(k), 'reserved key');

/**
 * Zod's record parsing silently drops a `__proto__` key; we refuse it instead, so a sender learns
 * that the property was not stored.
 */
const noReservedKeys = z.custom<unknown>(
  (v) => !(v && typeof v === 'object' && Object.keys(v).some((k) => FORBIDDEN_KEYS.has(k))),
  'reserved property name (__proto__, constructor, prototype)',
);

/** Flat properties: one level deep keeps the raw record small and the topic map simple. */
export const Props = noReservedKeys.pipe(
  z
    .record(propKey, z.union([z.string().max(LIMITS.propValueLength), z.number().finite(), z.boolean(), z.null()]))
    .refine((p) => Object.keys(p).length <= LIMITS.propsCount, `at most ${LIMITS.propsCount} properties`),
);

/** What the snippet reports about a clicked element. */
export const ElementContext = z.object({
  tag: text(32),
  id: text(128).optional(),
  cls: text(256).optional(),
  text: text().optional(),
  href: text(LIMITS.urlLength).optional(),
  sel: text(256).optional(),
  /** Other data-* attributes of the element or its nearest hinted ancestor. */
  data: Props.optional(),
});

/** Stage hints from `data-topic` / `data-stage`; they override what the URL would map to. */
const hints = {
  topic: text(LIMITS.nameLength).optional(),
  stage: text(64).optional(),
};

const base = {
  id,
  /** Client time, epoch milliseconds. Ingest keeps it next to its own receive time. */
  ts: z.number().int().nonnegative().max(8.64e15),
  url: text(LIMITS.urlLength).optional(),
  ...hints,
  props: Props.optional(),
  /** A money amount for purchase-like events; it feeds the RFM inputs. */
  value: z.number().finite().nonnegative().optional(),
};

export const PageEvent = z.object({
  type: z.literal('page'),
  ...base,
  url: text(LIMITS.urlLength),
  ref: text(LIMITS.urlLength).optional(),
  title: text().optional(),
});

export const ClickEvent = z.object({ type: z.literal('click'), ...base, el: ElementContext.optional() });

export const TrackEvent = z.object({ type: z.literal('track'), ...base, name: text(LIMITS.nameLength).min(1) });

export const IdentifyEvent = z.object({
  type: z.literal('identify'),
  ...base,
  user: id,
  /** The signature of `user`; required (else refused, `unsigned_identify`) on sites with an identitySecret. */
  sig: UserSig.optional(),
});

export const CollectEvent = z.discriminatedUnion('type', [PageEvent, ClickEvent, TrackEvent, IdentifyEvent]);
export type CollectEvent = z.infer<typeof CollectEvent>;

export const CollectBatch = z.object({
  site: id,
  visitor: id,
  session: id.optional(),
  /** Set once the page called identify(); the events then belong to the known person. */
  user: id.optional(),
  /**
   * The signature of `user`. On a site with an identitySecret, a batch whose `user` is not signed
   * is kept as the anonymous visitor's (person = visitor, no user).
   */
  sig: UserSig.optional(),
  events: z.array(z.unknown()).min(1).max(LIMITS.eventsPerBatch),
});
export type CollectBatch = z.infer<typeof CollectBatch>;
