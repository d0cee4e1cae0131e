import { z } from 'zod';

/**
 * A dialogue reached a higher stage: the "instant need detection" signal, on Kafka topic
 * `history.transitions` and on the live feed. `from` is null when a dialogue starts.
 * `id` is deterministic (person, topic, dialogue start, stage), so consumers can drop repeats.
 * A stage transition has no `kind` (it was the topic's only record before stalls and audiences).
 */
export const Transition = z.object({
  id: z.string(),
  person: z.string(),
  topic: z.string(),
  from: z.string().nullable(),
  to: z.string(),
  at: z.number(),
  channel: z.string(),
});
export type Transition = z.infer<typeof Transition>;

/**
 * A dialogue went quiet: it has stood at `stage` with no activity since `since` for as long as the
 * topic map's stall rule `rule` waits; `at` = since + that wait (epoch ms). Once per dialogue, rule
 * and quiet spell: `id` is (person, topic, since, rule), and new activity starts another spell.
 */
export const StallEvent = z.object({
  kind: z.literal('stalled'),
  id: z.string(),
  person: z.string(),
  topic: z.string(),
  stage: z.string(),
  rule: z.string(),
  since: z.number(),
  at: z.number(),
});
export type StallEvent = z.infer<typeof StallEvent>;

/** A person entered or left an audience at `at` (epoch ms); `id` is (person, audience, at, kind). */
export const AudienceEvent = z.object({
  kind: z.enum(['entered', 'exited']),
  id: z.string(),
  audience: z.string(),
  person: z.string(),
  at: z.number(),
});
export type AudienceEvent = z.infer<typeof AudienceEvent>;

/**
 * Every record of `history.transitions`, keyed by person: stage transitions (no `kind`), stalls,
 * audience entries and exits. Readers that know only transitions skip records with a `kind`.
 */
export const HistoryEvent = z.union([Transition.strict(), StallEvent, AudienceEvent]);
export type HistoryEvent = Transition | StallEvent | AudienceEvent;

/** The kinds a listener can ask for: `stage` is a transition. */
export const EVENT_KINDS = ['stage', 'stalled', 'entered', 'exited'] as const;
export type EventKind = (typeof EVENT_KINDS)[number];

export const kindOf = (e: HistoryEvent): EventKind => ('kind' in e ? e.kind : 'stage');
export const isTransition = (e: HistoryEvent): e is Transition => !('kind' in e);
