import { MAX_STALL_RULES, type ParsedStallRule } from '../../contract/stall-rule.js';
import type { Dialogue } from '../fold/fold.js';
import { topicPattern, type TopicPattern } from '../fold/topic-pattern.js';

/**
 * Stall rules: a dialogue that has stood at a stage with no activity for a while has gone quiet (the
 * abandoned cart). Pure: which rules a dialogue is due for at a moment, and when it next will be.
 *
 * A rule fires once per dialogue and quiet spell. What marks it fired is the dialogue's last
 * activity at the time (`since`): new activity moves `last`, which re-arms every rule without any
 * write, and the stall event is a function of (person, topic, rule, since) alone, so a sweep run
 * twice (a crash, a rebalance) produces the same event with the same id.
 */
export { MAX_STALL_RULES, STALL_RULE_NAME, StallRule, type ParsedStallRule } from '../../contract/stall-rule.js';

export interface CompiledStallRule {
  name: string;
  stage: number;
  afterMs: number;
  topics: TopicPattern;
}

/** Checks rules against the ladder and the quiet period; returns them compiled or the problems. */
export function compileStallRules(
  rules: readonly ParsedStallRule[],
  ladder: readonly string[],
  quietMs: number,
): { rules: CompiledStallRule[]; problems: string[] } {
  const problems: string[] = [];
  const names = new Set<string>();
  if (rules.length > MAX_STALL_RULES) problems.push(`at most ${MAX_STALL_RULES} stall rules`);
  const compiled = rules.slice(0, MAX_STALL_RULES).flatMap((r) => {
    if (names.has(r.name)) problems.push(`stall rule "${r.name}" is named twice`);
    names.add(r.name);
    const stage = ladder.indexOf(r.stage);
    if (stage < 0) problems.push(`stall rule "${r.name}": "${r.stage}" is not on the ladder (${ladder.join(' < ')})`);
    // A dialogue quiet for the quiet period has ended: a rule that waits as long would never fire.
    if (r.after >= quietMs) problems.push(`stall rule "${r.name}": after must be shorter than the quiet period that ends a dialogue`);
    return stage < 0 ? [] : [{ name: r.name, stage, afterMs: r.after, topics: topicPattern(r.topics ?? '*') }];
  });
  return { rules: compiled, problems };
}

/** When `d` stalls under `rule` (its last activity plus the wait), or null if the rule does not apply to it. */
export function stallAt(rule: CompiledStallRule, topic: string, d: Pick<Dialogue, 'stage' | 'last'>): number | null {
  return d.stage === rule.stage && rule.topics.matches(topic) ? d.last + rule.afterMs : null;
}

export interface Stall {
  rule: string;
  /** The dialogue's last activity: quiet since then. */
  since: number;
  /** When it counted as stalled: since + the rule's wait. */
  at: number;
}

/**
 * The rules `d` is stalled under at `now` and that have not fired for this quiet spell.
 * `firedSince(rule)`: the `since` the rule last fired for this dialogue, if it did.
 */
export function dueStalls(
  rules: readonly CompiledStallRule[],
  topic: string,
  d: Pick<Dialogue, 'stage' | 'last'>,
  now: number,
  firedSince: (rule: string) => number | undefined,
): Stall[] {
  const out: Stall[] = [];
  for (const r of rules) {
    const at = stallAt(r, topic, d);
    if (at !== null && at <= now && firedSince(r.name) !== d.last) out.push({ rule: r.name, since: d.last, at });
  }
  return out;
}

/** The earliest moment after `now` at which `d` stalls under a rule not yet fired, or null. */
export function nextStallAt(
  rules: readonly CompiledStallRule[],
  topic: string,
  d: Pick<Dialogue, 'stage' | 'last'>,
  now: number,
  firedSince: (rule: string) => number | undefined,
): number | null {
  let next: number | null = null;
  for (const r of rules) {
    const at = stallAt(r, topic, d);
    if (at !== null && at > now && firedSince(r.name) !== d.last && (next === null || at < next)) next = at;
  }
  return next;
}

/** The stall event's id: the same for the same quiet spell, however often it is computed (like transitionId). */
export function stallId(person: string, topic: string, rule: string, since: number): string {
  return `${person}|${topic}|${since.toString(36)}|stalled:${rule}`;
}
