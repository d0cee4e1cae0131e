import { z } from 'zod';
import { Transition } from './transition.js';

/**
 * What the query API answers (history/query/), defined once: the routes validate and document their
 * answers with these schemas (OpenAPI components at /v1/openapi.json), the stores build their views
 * to these types, and the dashboard reads the API through them.
 *
 * Plain zod with zod's own `.meta()`: `id` names an OpenAPI component, the other keys (description,
 * example, format) go into the document as they are. No OpenAPI library is imported here, so that
 * code which only needs the types (the dashboard's browser bundle: `import type`) pulls in nothing.
 *
 * Times that marketers read are ISO 8601 strings; `Transition.at` (the live feed) is epoch ms.
 */

/** The largest `limit` a needs request may name (a page holds at most 1,000; a list of any length streams as CSV or NDJSON). */
export const MAX_NEEDS = 100_000;

const dateTime = () => z.string().meta({ format: 'date-time' });

export const ErrorBody = z
  .object({
    error: z.object({
      code: z.string().meta({ example: 'invalid_parameter' }),
      message: z.string().meta({ example: 'since: "yesterday" is not an ISO 8601 date or date-time …' }),
      issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
    }),
  })
  .meta({ id: 'Error' });
export type ErrorBody = z.infer<typeof ErrorBody>;

// --- people ------------------------------------------------------------------------------------

export const Dialogue = z
  .object({
    topic: z.string().meta({ example: 'product:sku-1' }),
    stage: z.string().meta({ description: 'Highest stage reached in this dialogue.', example: 'detail' }),
    started: dateTime(),
    lastActivity: dateTime(),
    firstReached: z.record(z.string(), z.string()).meta({ description: 'When each stage was first reached (stages never reached are absent).' }),
    counts: z.record(z.string(), z.number().int()).meta({ description: 'Interactions per stage.' }),
    channels: z.array(z.string()).meta({ example: ['web', 'email'] }),
    signals: z.record(z.string(), z.object({ count: z.number().int(), open: z.boolean() })).meta({
      description: 'Signals the topic map marked events of this dialogue with (an inquiry, a complaint): times raised, and whether still open; {} when none.',
      example: { inquiry: { count: 2, open: true } },
    }),
  })
  .meta({ id: 'Dialogue' });
export type Dialogue = z.infer<typeof Dialogue>;

export const PastTransition = z
  .object({
    id: z.string(),
    topic: z.string(),
    from: z.string().nullable(),
    to: z.string(),
    at: dateTime(),
  })
  .meta({ id: 'PastTransition' });
export type PastTransition = z.infer<typeof PastTransition>;

export const RfmInputs = z
  .object({ firstPurchase: dateTime(), lastPurchase: dateTime(), purchases: z.number().int(), totalValue: z.number() })
  .nullable()
  .meta({ description: 'RFM inputs, from purchase events that carry a value; null before the first.' });
export type RfmInputs = z.infer<typeof RfmInputs>;

const score = () => z.number().int().min(1).max(5);
export const RfmScores = z.object({ recency: score(), frequency: score(), monetary: score(), code: z.string().meta({ example: '543' }) });
/** Each 1 (weakest) to 5 (strongest); `code` is the three digits, R then F then M: "545". */
export type RfmScores = z.infer<typeof RfmScores>;

/** A person's history as the stores read it: what the API shows before it adds what it derives. */
export const PersonHistory = z.object({
  person: z.string().meta({ description: 'The person id (a visitor id merged into a known user answers with the user).' }),
  linkedIds: z.array(z.string()).meta({ description: 'Anonymous visitor ids merged into this person by identify.' }),
  traits: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).meta({
    description: 'Identify traits the site allow-lists (privacy.traits), as last sent or imported; {} when none. At most 32, a string value at most 63 bytes.',
    example: { plan: 'pro', seats: 12 },
  }),
  dialogues: z.array(Dialogue).meta({ description: 'Most recently active first.' }),
  rfm: RfmInputs,
});
export type PersonHistory = z.infer<typeof PersonHistory>;

/** Lifetime value: spent so far and projected over the horizon (README "Lifetime value and RFM by quantiles"). */
export const Ltv = z
  .object({
    toDate: z.number().meta({ description: 'Total value of the purchases so far.' }),
    projected: z.number().nullable().meta({
      description:
        'Expected value of the purchases in the next `horizonDays` (BG/NBD × Gamma-Gamma, undiscounted); null without a fitted model, or for a history the fit leaves out (over 1000 purchases, a mean value 1000× the median, a non-positive value).',
    }),
    horizonDays: z.number().int(),
    model: z.enum(['bg-nbd+gamma-gamma']).nullable().meta({ description: 'null: too few purchasers yet for a fit (GET /v1/crm/model says how many).' }),
  })
  .meta({ id: 'Ltv' });
export type Ltv = z.infer<typeof Ltv>;

export const RfmScaleName = z.enum(['quantiles', 'fixed']).meta({
  description:
    '`quantiles`: the quintiles of the deployment’s purchasers (GET /v1/crm/model); `fixed`: the fixed thresholds, while there are too few purchasers.',
});

export const Person = PersonHistory.extend({
  rfmScale: RfmScaleName,
  ltv: Ltv,
  rfmScores: RfmScores.nullable().meta({
    description:
      'Each 1 (weakest) to 5 (strongest): by the quintiles of GET /v1/crm/model when `rfmScale` is `quantiles`, else from fixed thresholds. Recency, days since the last purchase: ≤7 → 5, ≤30 → 4, ≤90 → 3, ≤180 → 2, older → 1. ' +
      'Frequency, purchases: ≥10 → 5, ≥5 → 4, ≥3 → 3, 2 → 2, 1 → 1. Monetary, total value: ≥1000 → 5, ≥500 → 4, ≥200 → 3, ≥50 → 2, less → 1.',
  }),
  recentTransitions: z.array(PastTransition).meta({
    description: 'Up to 20 most recent stage advances across the current dialogues, newest first (read back from the first-reached times).',
  }),
}).meta({ id: 'Person' });
export type Person = z.infer<typeof Person>;

export const Erased = z
  .object({
    person: z.string().meta({ description: 'The person the id named (a visitor merged into a known user names the user).' }),
    erasedIds: z.array(z.string()).meta({ description: 'The person, every visitor id linked to them, and the id asked for.' }),
    held: z.boolean().meta({
      description:
        'Whether the store held anything of them. The erasure is recorded either way: records of these ids received until `erasedAt` are never folded, also not by a replay.',
    }),
    erasedAt: dateTime().meta({ description: 'Records of these ids that ingest received until then are gone for good; later ones fold as a new history.' }),
  })
  .meta({ id: 'Erased' });
export type Erased = z.infer<typeof Erased>;

export const PersonExport = Person.extend({
  exportedAt: dateTime(),
  consent: z.null().meta({
    description:
      'clickfold keeps no consent record: the snippet keeps the visitor’s choice in their own browser, and the site’s consent banner is the record of it.',
  }),
}).meta({
  id: 'PersonExport',
  description:
    'Everything clickfold holds about the person in its store. Not in it: the raw events on Kafka (kept for the retention the README states, then deleted), and two technical fields (the log offsets folded, and fingerprints of the last 32 event ids, kept a day to count a retry once).',
});
export type PersonExport = z.infer<typeof PersonExport>;

// --- topics and funnels ------------------------------------------------------------------------

export const TopicSummary = z
  .object({
    topic: z.string(),
    people: z.number().int().meta({ description: 'People with a dialogue about this topic.' }),
    stages: z
      .record(z.string(), z.number().int())
      .meta({ description: 'People standing at each stage (their highest).', example: { intro: 40, detail: 12, purchase: 3 } }),
  })
  .meta({ id: 'TopicSummary' });
export type TopicSummary = z.infer<typeof TopicSummary>;

export const Topics = z
  .object({ ladder: z.array(z.string()), topics: z.array(TopicSummary).meta({ description: 'Most people first.' }) })
  .meta({ id: 'Topics' });
export type Topics = z.infer<typeof Topics>;

export const FunnelStage = z.object({
  stage: z.string(),
  atStage: z.number().int().meta({ description: 'People whose highest stage is this one.' }),
  reached: z.number().int().meta({ description: 'People who reached at least this stage.' }),
  conversionToNext: z
    .number()
    .nullable()
    .meta({ description: 'reached(next) / reached(this), 0 to 1; null for the last stage or when nobody reached this one.' }),
});
export type FunnelStage = z.infer<typeof FunnelStage>;

export const Funnel = z
  .object({
    topic: z.string(),
    window: z.object({ since: z.string().nullable(), until: z.string().nullable() }),
    definition: z.string(),
    people: z.number().int(),
    overallConversion: z.number().nullable(),
    stages: z.array(FunnelStage),
  })
  .meta({ id: 'Funnel' });
export type Funnel = z.infer<typeof Funnel>;
/** The figures of a funnel, without what it is about (history/query/funnel.ts computes them). */
export type FunnelFigures = Pick<Funnel, 'people' | 'stages' | 'overallConversion'>;

// --- needs -------------------------------------------------------------------------------------

export const Need = z
  .object({
    person: z.string(),
    stage: z.string(),
    lastActivity: dateTime(),
    stageReachedAt: z.string().nullable().meta({ format: 'date-time' }),
    interactions: z.number().int(),
    channels: z.array(z.string()),
    score: z.number().meta({ description: 'recency × intensity at `asOf`; higher is more worth contacting first.' }),
    ltv: z
      .object({
        toDate: z.number().meta({ description: 'Spent so far (the person’s total purchase value; 0 without purchases).' }),
        projected: z.number().nullable().meta({
          description:
            'Expected spending over the CRM horizon (GET /v1/crm/model `horizonDays`) at `asOf`; null without a fitted model, or for a history the fit leaves out.',
        }),
      })
      .meta({ description: 'Lifetime value, as in the person view’s `ltv`. Not part of the ranking.' }),
  })
  .meta({ id: 'Need' });
export type Need = z.infer<typeof Need>;

export const Needs = z
  .object({
    topic: z.string(),
    stage: z.string(),
    notReached: z.string(),
    activeWithin: z.string(),
    asOf: z.string().meta({ format: 'date-time', description: 'The time scores are computed for (the first page’s).' }),
    total: z.number().int().meta({ description: 'People in the whole list, all pages, as it stood at the first page.' }),
    truncated: z.boolean().meta({ description: 'Always false: the whole list is ranked, however long (kept for the clients that read it).' }),
    nextCursor: z.string().nullable().meta({ description: 'Pass as `cursor` for the next page; null on the last page.' }),
    needs: z.array(Need),
  })
  .meta({ id: 'Needs' });
export type Needs = z.infer<typeof Needs>;

// --- live transitions --------------------------------------------------------------------------

/** One `transition` event of the live stream: the contract's Transition, documented. */
export const StreamTransition = Transition.extend({ at: z.number().meta({ description: 'epoch ms' }) }).meta({ id: 'Transition' });
export type StreamTransition = z.infer<typeof StreamTransition>;

// --- stalls and audiences ----------------------------------------------------------------------

/** A stall rule of the topic map, as `GET /v1/stalls` lists it. */
export const StallRuleInfo = z
  .object({
    name: z.string(),
    stage: z.string(),
    after: z.string().meta({ description: 'How long a dialogue stands at `stage` with no activity before it counts as stalled (30s, 15m, 12h, 3d).' }),
    afterMs: z.number().int(),
    topics: z.string().meta({ description: 'Which topics the rule watches: exact, `prefix*`, or `*`.' }),
  })
  .meta({ id: 'StallRule' });
export type StallRuleInfo = z.infer<typeof StallRuleInfo>;

export const StallRules = z.object({ rules: z.array(StallRuleInfo) }).meta({ id: 'StallRules' });
export type StallRules = z.infer<typeof StallRules>;

export const StalledEntry = z
  .object({
    person: z.string(),
    stage: z.string(),
    since: dateTime().meta({ description: 'The last activity: quiet since then.' }),
    at: dateTime().meta({ description: 'When it counted as stalled: since + the rule’s wait.' }),
  })
  .meta({ id: 'StalledEntry' });
export type StalledEntry = z.infer<typeof StalledEntry>;

export const Stalled = z
  .object({
    topic: z.string(),
    rule: z.string(),
    total: z.number().int().meta({ description: 'Dialogues of the topic stalled by the rule now (new activity takes a dialogue out).' }),
    nextCursor: z.string().nullable(),
    stalled: z.array(StalledEntry).meta({ description: 'Most recently stalled first.' }),
  })
  .meta({ id: 'Stalled' });
export type Stalled = z.infer<typeof Stalled>;

export const AudienceBackfill = z
  .object({
    state: z.enum(['running', 'done', 'failed']),
    total: z.number().int().meta({ description: 'People to evaluate (everyone in the stage indexes of the topics the definition can match).' }),
    done: z.number().int(),
    startedAt: dateTime(),
    finishedAt: dateTime().nullable(),
  })
  .meta({ id: 'AudienceBackfill' });
export type AudienceBackfill = z.infer<typeof AudienceBackfill>;

export const Audience = z
  .object({
    name: z.string(),
    definition: z.unknown().meta({ description: 'The conditions (grammar: contract/audience.ts, README “Audiences”).' }),
    version: z.number().int().meta({ description: 'Bumped by every PUT of the definition.' }),
    source: z.enum(['file', 'api']),
    updatedAt: dateTime(),
    members: z.number().int().meta({ description: 'People in the audience now.' }),
    backfill: AudienceBackfill.nullable(),
  })
  .meta({ id: 'Audience' });
export type Audience = z.infer<typeof Audience>;

export const Audiences = z.object({ audiences: z.array(Audience) }).meta({ id: 'Audiences' });
export type Audiences = z.infer<typeof Audiences>;

export const AudienceMember = z.object({ person: z.string(), enteredAt: dateTime() }).meta({ id: 'AudienceMember' });
export type AudienceMember = z.infer<typeof AudienceMember>;

export const AudienceMembers = z
  .object({
    audience: z.string(),
    total: z.number().int(),
    nextCursor: z.string().nullable(),
    members: z.array(AudienceMember).meta({ description: 'Most recent entries first.' }),
  })
  .meta({ id: 'AudienceMembers' });
export type AudienceMembers = z.infer<typeof AudienceMembers>;

// --- trends ------------------------------------------------------------------------------------

export const TrendBucket = z
  .object({
    start: dateTime().meta({ description: 'The UTC hour or day the bucket counts.' }),
    counts: z.record(z.string(), z.number().int()).meta({ description: 'Transitions into each stage of the ladder in the bucket (0 where none).' }),
  })
  .meta({ id: 'TrendBucket' });
export type TrendBucket = z.infer<typeof TrendBucket>;

export const Trend = z
  .object({
    topic: z.string(),
    by: z.enum(['hour', 'day']),
    since: dateTime(),
    until: dateTime(),
    buckets: z
      .array(TrendBucket)
      .meta({ description: 'Oldest first, every bucket of the window (empty ones with zeros), within the retention: 14 days of hours, 400 days of days.' }),
  })
  .meta({ id: 'Trend' });
export type Trend = z.infer<typeof Trend>;

// --- cross-selling -----------------------------------------------------------------------------

export const Suggestion = z
  .object({
    topic: z.string(),
    score: z.number().meta({
      description: 'How likely next: over the person’s purchases X, the sum of (buyers of X who went on to buy it) / (buyers of X), each at most 1.',
    }),
    support: z
      .array(
        z.object({
          from: z.string().meta({ description: 'A topic the person bought.' }),
          count: z.number().int().meta({ description: 'Purchases of this topic after one of `from`.' }),
          buyers: z.number().int().meta({ description: 'Purchases of `from` counted.' }),
          error: z.number().int().meta({ description: 'How much `count` may overstate (0: exact), from the bounded counters.' }),
        }),
      )
      .meta({ description: 'What the score rests on, one entry per purchase of the person that led others here.' }),
  })
  .meta({ id: 'Suggestion' });
export type Suggestion = z.infer<typeof Suggestion>;

export const Suggestions = z
  .object({
    person: z.string(),
    suggestions: z.array(Suggestion).meta({ description: 'Most likely first; never a topic the person bought already.' }),
  })
  .meta({ id: 'Suggestions' });
export type Suggestions = z.infer<typeof Suggestions>;

export const RelatedTopic = z
  .object({
    topic: z.string(),
    count: z.number().int().meta({ description: 'Purchases of this topic by people who had bought the asked one.' }),
    error: z.number().int().meta({ description: 'How much `count` may overstate (0: exact), from the bounded counters.' }),
  })
  .meta({ id: 'RelatedTopic' });
export type RelatedTopic = z.infer<typeof RelatedTopic>;

export const Related = z
  .object({
    topic: z.string(),
    buyers: z.number().int().meta({ description: 'Purchases of the topic counted.' }),
    related: z.array(RelatedTopic).meta({ description: 'Most bought after the topic first.' }),
  })
  .meta({ id: 'Related' });
export type Related = z.infer<typeof Related>;

const thresholdList = (what: string) =>
  z
    .array(z.number().nullable())
    .length(4)
    .meta({ description: `The smallest ${what} scoring 2, 3, 4 and 5 (null: no purchaser of the sample scores that high).` });

/** GET /v1/crm/model: the CRM model in force (history/crm/model.ts). */
export const CrmModelView = z
  .object({
    rfmScale: RfmScaleName,
    thresholds: z
      .object({
        lastPurchase: z.array(dateTime().nullable()).length(4).meta({ description: 'Recency: the earliest last purchase scoring 2, 3, 4 and 5.' }),
        purchases: thresholdList('number of purchases'),
        totalValue: thresholdList('total value'),
      })
      .nullable()
      .meta({ description: 'The quintile thresholds in use; null while the fixed scale applies (fewer than `minSample` purchasers).' }),
    ltv: z
      .object({
        model: z.literal('bg-nbd+gamma-gamma'),
        bgNbd: z.object({ r: z.number(), alpha: z.number(), a: z.number(), b: z.number() }).meta({ description: 'BG/NBD, times in days.' }),
        gammaGamma: z.object({ p: z.number(), q: z.number(), gamma: z.number() }),
        n: z.number().int().meta({ description: 'Purchasers fitted on.' }),
        converged: z.boolean(),
      })
      .nullable()
      .meta({ description: 'The lifetime-value fit; null without enough purchasers (`minFit`): people show value to date only.' }),
    horizonDays: z.number().int(),
    n: z.number().int().meta({ description: 'Purchasers sampled.' }),
    purchasers: z.number().int().meta({ description: 'Purchasers known when it was computed.' }),
    minSample: z.number().int(),
    minFit: z.number().int(),
    excluded: z.record(z.string(), z.number().int()).meta({ description: 'Purchasers left out of the fit (not of the quintiles), by reason.' }),
    computedAt: dateTime().nullable().meta({ description: 'null: not computed yet.' }),
    tookMs: z.number().int().nullable(),
    everySeconds: z.number().int().nullable().meta({ description: 'How often it is recomputed (CRM_MODEL_INTERVAL_S), when this process knows.' }),
  })
  .meta({ id: 'CrmModel' });
export type CrmModelView = z.infer<typeof CrmModelView>;
