import { z } from 'zod';

/**
 * The Segment Tracking API (https://segment.com/docs/connections/spec/) as ingest accepts it on
 * `POST /v1/batch`, `/v1/track`, `/v1/page`, `/v1/screen`, `/v1/identify`, `/v1/alias` and
 * analytics.js's short paths (`/v1/b`, `/v1/t`, `/v1/p`, `/v1/s`, `/v1/i`, `/v1/a`), so Segment's
 * libraries (`@segment/analytics-node`, analytics.js) and RudderStack's Node SDK send to clickfold
 * unchanged; and the settings document analytics.js reads (`SegmentSettings`).
 *
 * Segment's own bounds: 32 KB per single call, 500 KB and 2,500 events per batch. Properties,
 * traits and context nest freely in the spec; we bound their depth, their size and their keys here,
 * and ingest flattens properties into the raw record's flat `props`.
 */
export const SEGMENT_LIMITS = {
  callBytes: 32 * 1024,
  batchBytes: 512 * 1024,
  eventsPerBatch: 2500,
  idLength: 128,
  nameLength: 128,
  /** Objects inside properties / traits / context, counting the top one. */
  depth: 5,
  /** Values (objects, arrays and scalars) inside one properties / traits / context object. */
  values: 500,
  stringLength: 8192,
  /** `context.clickfold.sig`: 64 hex digits when right; longer is refused by the contract. */
  sigLength: 128,
  /** A write key in a body, or in the settings path; the sites file allows no longer one. */
  writeKeyLength: 256,
} as const;

/** Keys that would poison a plain object if a consumer ever merged the data into one. */
export const RESERVED_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * Why a JSON value is out of bounds, or null. Iterative: a hostile body may nest thousands of
 * levels deep, and this runs before anything recursive (zod, JSON.stringify) looks at it.
 */
export function jsonShapeProblem(value: unknown, maxDepth: number, maxValues: number, maxString: number): string | null {
  const stack: [unknown, number][] = [[value, 1]];
  let values = 0;
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (++values > maxValues) return `more than ${maxValues} values`;
    if (typeof v === 'string') {
      if (v.length > maxString) return `a string is longer than ${maxString} characters`;
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (depth > maxDepth) return `nested deeper than ${maxDepth} levels`;
    if (Array.isArray(v)) {
      for (const x of v) stack.push([x, depth + 1]);
      continue;
    }
    for (const k of Object.keys(v)) {
      if (RESERVED_KEYS.has(k)) return `reserved key "${k}" (__proto__, constructor, prototype are refused)`;
      stack.push([(v as Record<string, unknown>)[k], depth + 1]);
    }
  }
  return null;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A free-form JSON object (properties, traits), bounded; passed through as is, not copied. */
export const SegmentObject = z.custom<Record<string, unknown>>(isPlainObject, 'expected an object').superRefine((v, ctx) => {
  const problem = jsonShapeProblem(v, SEGMENT_LIMITS.depth, SEGMENT_LIMITS.values, SEGMENT_LIMITS.stringLength);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

/**
 * User ids, anonymous ids and message ids. Segment allows numbers; we keep them as strings. The
 * alphabet is wider than the snippet's (Auth0's `auth0|123`, e-mail addresses) but still excludes
 * whitespace, quotes, slashes and the braces of Redis hash tags.
 */
export const SegmentId = z
  .union([z.string(), z.number().int().nonnegative()])
  .transform(String)
  .pipe(
    z
      .string()
      .min(1)
      .max(SEGMENT_LIMITS.idLength)
      .regex(/^[\w.:@+\-|=~!$*]+$/, 'only letters, digits and . _ : @ + - | = ~ ! $ *'),
  );

/** ISO-8601 strings (what the libraries send) or epoch milliseconds. */
export const SegmentTime = z
  .union([z.string().max(64), z.number().finite()])
  .refine((v) => Number.isFinite(typeof v === 'number' ? v : Date.parse(v)), 'not a date (ISO-8601 or epoch milliseconds)');

const short = (max: number) => z.string().max(max);

/** The parts of `context` that ingest reads; everything else is accepted and ignored. */
export const SegmentContext = SegmentObject.pipe(
  z.looseObject({
    /** Ours: the channel the event came through (email, call, chat...). */
    channel: short(32).optional(),
    page: z.looseObject({ url: short(2048).optional(), referrer: short(2048).optional(), title: short(256).optional() }).optional(),
    /** The end user's browser, when a server forwards it; the library's own agent is not used. */
    userAgent: short(1024).optional(),
    /** The end user's address, when a server forwards it; anonymised like every address. */
    ip: short(64).optional(),
    /**
     * Ours: `sig`, the signature of the event's `userId` (hex HMAC-SHA256 with the site's
     * identitySecret). Needed only on calls from a browser (an Origin header) to a site with a
     * secret; analytics.js and analytics-node send it unchanged as `context: {clickfold: {sig}}`.
     */
    clickfold: z.looseObject({ sig: short(SEGMENT_LIMITS.sigLength).optional() }).optional(),
  }),
);
export type SegmentContext = z.infer<typeof SegmentContext>;

const common = {
  messageId: SegmentId.optional(),
  userId: SegmentId.nullish(),
  anonymousId: SegmentId.nullish(),
  timestamp: SegmentTime.optional(),
  originalTimestamp: SegmentTime.optional(),
  sentAt: SegmentTime.optional(),
  context: SegmentContext.optional(),
  /** Segment's per-destination switches: accepted, not used. */
  integrations: z.unknown().optional(),
  writeKey: short(SEGMENT_LIMITS.writeKeyLength).optional(),
};

export const SegmentTrack = z.object({
  type: z.literal('track'),
  ...common,
  event: z.string().min(1).max(SEGMENT_LIMITS.nameLength),
  properties: SegmentObject.optional(),
});

export const SegmentPage = z.object({
  type: z.literal('page'),
  ...common,
  name: short(SEGMENT_LIMITS.nameLength).nullish(),
  category: short(SEGMENT_LIMITS.nameLength).nullish(),
  properties: SegmentObject.optional(),
});

export const SegmentScreen = z.object({
  type: z.literal('screen'),
  ...common,
  name: short(SEGMENT_LIMITS.nameLength).nullish(),
  properties: SegmentObject.optional(),
});

export const SegmentIdentify = z.object({ type: z.literal('identify'), ...common, traits: SegmentObject.optional() });

/** `alias(userId, previousId)`: the previous (anonymous) id now belongs to the user. */
export const SegmentAlias = z.object({ type: z.literal('alias'), ...common, userId: SegmentId, previousId: SegmentId });

export const SEGMENT_TYPES = ['track', 'page', 'screen', 'identify', 'alias'] as const;

export const SegmentEvent = z
  .discriminatedUnion('type', [SegmentTrack, SegmentPage, SegmentScreen, SegmentIdentify, SegmentAlias], {
    error: `type must be one of ${SEGMENT_TYPES.join(', ')} (group is not supported)`,
  })
  .superRefine((e, ctx) => {
    if (e.userId == null && e.anonymousId == null) {
      ctx.addIssue({ code: 'custom', path: ['userId'], message: 'userId or anonymousId is required' });
    }
  });
export type SegmentEvent = z.infer<typeof SegmentEvent>;

/** `POST /v1/batch`: what the libraries send (`{batch, sentAt}`, analytics-node adds `writeKey`). */
export const SegmentBatch = z.looseObject({
  batch: z.array(z.unknown()).min(1).max(SEGMENT_LIMITS.eventsPerBatch),
  sentAt: SegmentTime.optional(),
  /** Applies to every event of the batch; an event's own context wins key by key. */
  context: SegmentContext.optional(),
  integrations: z.unknown().optional(),
  writeKey: short(SEGMENT_LIMITS.writeKeyLength).optional(),
});
export type SegmentBatch = z.infer<typeof SegmentBatch>;

/**
 * `GET /v1/projects/:writeKey/settings`: the settings document analytics.js reads from its
 * `cdnURL`, as ingest answers it. Strict: it carries the one destination that sends to ingest and
 * nothing else (no site id, no origins, no other write key).
 */
export const SegmentSettings = z
  .object({
    integrations: z
      .object({
        'Segment.io': z
          .object({
            /** The write key the page asked with. */
            apiKey: z.string(),
            /** `host[:port]/v1`: analytics.js posts to `<protocol>://<apiHost>/t`, `/p`, `/i`, `/a`, `/b`. */
            apiHost: z.string(),
            protocol: z.enum(['http', 'https']),
            unbundledIntegrations: z.array(z.string()).max(0),
            addBundledMetadata: z.literal(false),
            maybeBundledConfigIds: z.object({}).strict(),
          })
          .strict(),
      })
      .strict(),
    remotePlugins: z.array(z.never()),
    enabledMiddleware: z.object({}).strict(),
    legacyVideoPluginsEnabled: z.literal(false),
    /** Segment's own telemetry, which would go to api.segment.io: off. */
    metrics: z.object({ sampleRate: z.literal(0) }).strict(),
  })
  .strict();
export type SegmentSettings = z.infer<typeof SegmentSettings>;
