import type { AudienceEvent, StallEvent } from '../../contract/transition.js';
import type { PersonState } from './fold.js';

/**
 * The port through which the fold applies stall rules and audiences (history/automation/ implements
 * it): after a person's records are folded, what the rules and audiences make of the new state at
 * `now`. Pure, like the fold; the stores write what it answers in the person's atomic write (markers
 * and membership, the events in the outbox) and in the index step after it (the sets and the queue).
 */
export interface Automation {
  /** The stall rules in force, as the topic map names them. */
  readonly stallRules: readonly StallRuleSummary[];
  /** The audiences in force, by name. */
  readonly audiences: readonly string[];
  evaluate(input: AutomationInput): AutomationOutcome;
}

export interface StallRuleSummary {
  name: string;
  /** Ladder position. */
  stage: number;
  afterMs: number;
  /** Exact, `prefix*` or `*`. */
  topics: string;
}

export interface AutomationInput {
  person: string;
  /** After the fold; dialogues carry the stall markers of their current quiet spell. */
  state: PersonState;
  /** Audience memberships as stored: name -> when entered (epoch ms). */
  memberships: ReadonlyMap<string, number>;
  now: number;
}

export interface AutomationOutcome {
  /** The state with the markers of the stalls fired now added. */
  state: PersonState;
  /** Topics whose dialogue gained a marker. */
  marked: Set<string>;
  events: (StallEvent | AudienceEvent)[];
  /** Memberships now: name -> when entered. */
  memberships: Map<string, number>;
  /** The next moment a stall or a membership may change with no event, or null. */
  due: number | null;
}
