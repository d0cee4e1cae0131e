import { z } from 'zod';
import { Duration } from './duration.js';
import { TRAIT_LIMITS, traitProblem } from './raw-event.js';

/**
 * An audience: a named group of people, defined by conditions on their dialogues, kept live.
 *
 * The grammar (a definition is one condition):
 *
 *   condition  = { "all": [condition, ...] }      every one holds
 *              | { "any": [condition, ...] }      at least one holds
 *              | { "not": condition }             it does not hold
 *              | dialogue                         some dialogue of the person matches
 *              | { "rfm": { "recency"|"frequency"|"monetary": { "atLeast"?: 1-5, "atMost"?: 1-5 } } }
 *              | { "ltv": { "atLeast"?: number, "atMost"?: number } }   projected lifetime value
 *              | { "trait": { "name": "plan", and one of
 *                             "equals": value | "in": [value, ...] | "exists": true|false } }
 *
 *   dialogue   = { "topic"?: "product:sku-1" | "product:*" | "*",   default "*": any topic
 *                  "atLeast"?: stage, "exactly"?: stage, "notReached"?: stage,
 *                  "activeWithin"?: duration, "stalled"?: stall rule name,
 *                  "signal"?: signal name, "open"?: true|false }
 *
 * All the keys of a `dialogue` must hold for one and the same dialogue: `{"topic": "product:*",
 * "atLeast": "detail", "notReached": "purchase"}` is someone at detail of a product who has not
 * bought that product (not: detail of one, no purchase of another). `"stalled"` holds while the
 * dialogue is stalled by that rule (it fired and no activity came since). Durations are a whole
 * number and a unit: 30s, 15m, 12h, 7d, 2w.
 *
 * A `trait` reads the identify traits the site allow-lists (privacy.traits), as the person holds
 * them: a value is a string, a number or a boolean and compares with its type (5 is not "5": an
 * imported CSV column is text unless its header types it); `equals` and `in` never hold for a
 * person without the trait, `"exists": false` does. Traits change only with a record, never with
 * time.
 *
 * Sizes are capped (depth, conditions, lengths), so a definition sent to the API cannot make the
 * evaluation that runs for every folded person expensive.
 */
export const AUDIENCE_MAX_DEPTH = 6;
export const AUDIENCE_MAX_CONDITIONS = 64;
export const AUDIENCE_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const STAGE = /^[a-z][a-z0-9_-]{0,31}$/;
const RULE = /^[a-z0-9][a-z0-9_-]{0,63}$/;

const stage = z.string().regex(STAGE, 'a stage is a lower-case word');
const score = z.number().int().min(1).max(5);
const ScoreRange = z
  .object({ atLeast: score.optional(), atMost: score.optional() })
  .strict()
  .refine((r) => r.atLeast !== undefined || r.atMost !== undefined, { message: 'give atLeast, atMost or both' });

export const DialogueCondition = z
  .object({
    topic: z
      .string()
      .min(1)
      .max(128)
      .refine((t) => !t.slice(0, -1).includes('*'), { message: 'a topic is exact, or a prefix ending in * (product:*), or *' })
      .optional(),
    atLeast: stage.optional(),
    exactly: stage.optional(),
    notReached: stage.optional(),
    activeWithin: Duration.optional(),
    stalled: z.string().regex(RULE, 'a stall rule name: lower-case letters, digits, - and _').optional(),
    /** The dialogue carries this topic-map signal (`open`: still open, or closed). */
    signal: z.string().regex(STAGE, 'a signal name: a lower-case letter, then up to 31 letters, digits, _ and -').optional(),
    open: z.boolean().optional(),
  })
  .strict()
  .refine((c) => Object.keys(c).length > 0, { message: 'an empty condition: name a topic, a stage, activeWithin, stalled or signal' })
  .refine((c) => c.open === undefined || c.signal !== undefined, { message: 'open needs the signal it is about', path: ['open'] });
export type DialogueCondition = z.infer<typeof DialogueCondition>;

export const RfmCondition = z
  .object({
    rfm: z
      .object({ recency: ScoreRange.optional(), frequency: ScoreRange.optional(), monetary: ScoreRange.optional() })
      .strict()
      .refine((r) => Object.keys(r).length > 0, { message: 'name recency, frequency or monetary' }),
  })
  .strict();
export type RfmCondition = z.infer<typeof RfmCondition>;

/**
 * Projected lifetime value over the deployment's horizon (README "Lifetime value and RFM by
 * quantiles"): never holds for a person without a projection (no fitted model yet, no purchase, a
 * history the fit leaves out).
 */
export const LtvCondition = z
  .object({
    ltv: z
      .object({ atLeast: z.number().finite().min(0).optional(), atMost: z.number().finite().min(0).optional() })
      .strict()
      .refine((r) => r.atLeast !== undefined || r.atMost !== undefined, { message: 'give atLeast, atMost or both' })
      .refine((r) => r.atLeast === undefined || r.atMost === undefined || r.atLeast <= r.atMost, { message: 'atLeast is above atMost' }),
  })
  .strict();
export type LtvCondition = z.infer<typeof LtvCondition>;

const TraitValue = z.union([z.string().max(256), z.number().finite(), z.boolean()]);
export const TraitCondition = z
  .object({
    trait: z
      .object({
        name: z
          .string()
          .refine((n) => traitProblem(n, true) === null, `a trait name: 1 to ${TRAIT_LIMITS.nameLength} letters, digits, _ and -, segments joined by dots`),
        equals: TraitValue.optional(),
        in: z.array(TraitValue).min(1).max(AUDIENCE_MAX_CONDITIONS).optional(),
        exists: z.boolean().optional(),
      })
      .strict()
      .refine((t) => [t.equals, t.in, t.exists].filter((x) => x !== undefined).length === 1, {
        message: 'give one of equals, in or exists',
      }),
  })
  .strict();
export type TraitCondition = z.infer<typeof TraitCondition>;

export type Condition = { all: Condition[] } | { any: Condition[] } | { not: Condition } | DialogueCondition | RfmCondition | LtvCondition | TraitCondition;

export const Condition: z.ZodType<Condition> = z.lazy(() =>
  z.union([
    z.object({ all: z.array(Condition).min(1).max(AUDIENCE_MAX_CONDITIONS) }).strict(),
    z.object({ any: z.array(Condition).min(1).max(AUDIENCE_MAX_CONDITIONS) }).strict(),
    z.object({ not: Condition }).strict(),
    RfmCondition,
    LtvCondition,
    TraitCondition,
    DialogueCondition,
  ]),
) as z.ZodType<Condition>;

/**
 * Depth and size first, without recursion: zod walks a definition recursively, so a thousand nested
 * `not`s must be refused before it does.
 */
export function audienceShapeProblem(value: unknown): string | null {
  const stack: { v: unknown; depth: number }[] = [{ v: value, depth: 1 }];
  let conditions = 0;
  while (stack.length > 0) {
    const { v, depth } = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (Array.isArray(v)) {
      for (const x of v) stack.push({ v: x, depth });
      continue;
    }
    const o = v as Record<string, unknown>;
    if (!('rfm' in o)) conditions++;
    if (conditions > AUDIENCE_MAX_CONDITIONS) return `a definition holds at most ${AUDIENCE_MAX_CONDITIONS} conditions`;
    if (depth > AUDIENCE_MAX_DEPTH) return `conditions nest at most ${AUDIENCE_MAX_DEPTH} deep`;
    for (const k of ['all', 'any', 'not'] as const) if (k in o) stack.push({ v: o[k], depth: depth + 1 });
  }
  return null;
}

export const AudienceDefinition = z
  .unknown()
  .superRefine((v, ctx) => {
    const problem = audienceShapeProblem(v);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  })
  .pipe(Condition);
export type AudienceDefinition = Condition;
