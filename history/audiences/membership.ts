import type { AudienceDefinition, Condition, DialogueCondition } from '../../contract/audience.js';
import type { RfmScores } from '../../contract/query.js';
import type { TraitValue } from '../../contract/raw-event.js';
import type { Dialogue } from '../fold/fold.js';
import { topicPattern, type TopicPattern } from '../fold/topic-pattern.js';

/**
 * Audience membership, pure: whether a person belongs to an audience at a moment, and the next
 * moment at which that could change with no new event (a dialogue leaving `activeWithin` or ending
 * quiet). Between events and those moments membership is constant, which is what lets a fold
 * re-evaluate only the people it changed and a sweeper handle the passing of time.
 */

/** What a person's membership depends on. */
export interface PersonFacts {
  dialogues: ReadonlyMap<string, Pick<Dialogue, 'stage' | 'last' | 'signals'>>;
  rfm: RfmScores | null;
  /** Projected lifetime value (history/crm/model.ts ltvOf), or null without one. */
  ltv?: number | null | undefined;
  /** Whether the dialogue about `topic` is stalled by `rule` now (fired, no activity since). */
  stalled(topic: string, rule: string): boolean;
  /** The identify traits the person holds, by name. */
  traits: ReadonlyMap<string, TraitValue>;
}

type Compiled =
  | { k: 'all' | 'any'; of: Compiled[] }
  | { k: 'not'; of: Compiled }
  | {
      k: 'dialogue';
      topics: TopicPattern;
      min: number;
      max: number;
      withinMs: number | null;
      stalled: string | null;
      signal: { name: string; open: boolean | null } | null;
    }
  | { k: 'rfm'; ranges: [keyof Omit<RfmScores, 'code'>, number, number][] }
  | { k: 'ltv'; min: number; max: number }
  | { k: 'trait'; name: string; exists: boolean | null; values: readonly TraitValue[] };

export interface CompiledAudience {
  readonly root: Compiled;
  /** A dialogue quiet longer than this has ended (as the fold sees it): it no longer counts for any condition. */
  readonly quietMs: number;
  /** Whether any condition reads the RFM scores (so a purchase anywhere can change membership). */
  readonly readsRfm: boolean;
}

export interface AudienceContext {
  ladder: readonly string[];
  quietMs: number;
  /** The stall rules of the topic map, by name. */
  stallRules: ReadonlySet<string>;
  /** The topic map's signals, by name (absent: signal names are not checked). */
  signals?: ReadonlySet<string> | undefined;
}

export class AudienceError extends Error {}

/** Resolves stage and rule names against the topic map; throws AudienceError with the reason. */
export function compileAudience(def: AudienceDefinition, ctx: AudienceContext): CompiledAudience {
  let readsRfm = false;
  const stageOf = (name: string, key: string) => {
    const i = ctx.ladder.indexOf(name);
    if (i < 0) throw new AudienceError(`${key}: "${name}" is not on the ladder (${ctx.ladder.join(' < ')})`);
    return i;
  };
  const dialogue = (c: DialogueCondition): Compiled => {
    let min = 0;
    let max = ctx.ladder.length - 1;
    if (c.atLeast !== undefined) min = Math.max(min, stageOf(c.atLeast, 'atLeast'));
    if (c.exactly !== undefined) {
      const s = stageOf(c.exactly, 'exactly');
      min = Math.max(min, s);
      max = Math.min(max, s);
    }
    if (c.notReached !== undefined) max = Math.min(max, stageOf(c.notReached, 'notReached') - 1);
    if (min > max) throw new AudienceError(`${JSON.stringify(c)} can never hold: no stage is in it`);
    if (c.stalled !== undefined && !ctx.stallRules.has(c.stalled)) {
      throw new AudienceError(
        `stalled: "${c.stalled}" is not a stall rule of the topic map${ctx.stallRules.size ? ` (${[...ctx.stallRules].join(', ')})` : ''}`,
      );
    }
    if (c.signal !== undefined && ctx.signals && !ctx.signals.has(c.signal)) {
      throw new AudienceError(`signal: "${c.signal}" is not a signal of the topic map${ctx.signals.size ? ` (${[...ctx.signals].join(', ')})` : ''}`);
    }
    const signal = c.signal === undefined ? null : { name: c.signal, open: c.open ?? null };
    return { k: 'dialogue', topics: topicPattern(c.topic ?? '*'), min, max, withinMs: c.activeWithin ?? null, stalled: c.stalled ?? null, signal };
  };
  const walk = (c: Condition): Compiled => {
    if ('all' in c) return { k: 'all', of: c.all.map(walk) };
    if ('any' in c) return { k: 'any', of: c.any.map(walk) };
    if ('not' in c) return { k: 'not', of: walk(c.not) };
    if ('rfm' in c) {
      readsRfm = true;
      const ranges = (['recency', 'frequency', 'monetary'] as const).flatMap((key) => {
        const r = c.rfm[key];
        if (!r) return [];
        const lo = r.atLeast ?? 1;
        const hi = r.atMost ?? 5;
        if (lo > hi) throw new AudienceError(`rfm.${key}: atLeast ${lo} is above atMost ${hi}`);
        return [[key, lo, hi] as [typeof key, number, number]];
      });
      return { k: 'rfm', ranges };
    }
    if ('ltv' in c) {
      // The projection is derived from the RFM inputs: a purchase anywhere can change it.
      readsRfm = true;
      return { k: 'ltv', min: c.ltv.atLeast ?? 0, max: c.ltv.atMost ?? Number.POSITIVE_INFINITY };
    }
    if ('trait' in c) {
      const t = c.trait;
      const values = t.in ?? (t.equals === undefined ? [] : [t.equals]);
      return { k: 'trait', name: t.name, exists: t.exists ?? null, values };
    }
    return dialogue(c);
  };
  return { root: walk(def), quietMs: ctx.quietMs, readsRfm };
}

/** The dialogues `topics` selects that are still going at `now`. */
function* live(a: CompiledAudience, topics: TopicPattern, facts: PersonFacts, now: number): Generator<[string, Pick<Dialogue, 'stage' | 'last' | 'signals'>]> {
  if (topics.exact !== null) {
    const d = facts.dialogues.get(topics.exact);
    if (d && now - d.last <= a.quietMs) yield [topics.exact, d];
    return;
  }
  for (const [t, d] of facts.dialogues) if (topics.matches(t) && now - d.last <= a.quietMs) yield [t, d];
}

function holds(a: CompiledAudience, c: Compiled, facts: PersonFacts, now: number): boolean {
  switch (c.k) {
    case 'all':
      return c.of.every((x) => holds(a, x, facts, now));
    case 'any':
      return c.of.some((x) => holds(a, x, facts, now));
    case 'not':
      return !holds(a, c.of, facts, now);
    case 'rfm':
      return facts.rfm !== null && c.ranges.every(([key, lo, hi]) => facts.rfm![key] >= lo && facts.rfm![key] <= hi);
    case 'ltv':
      return facts.ltv !== undefined && facts.ltv !== null && facts.ltv >= c.min && facts.ltv <= c.max;
    case 'trait': {
      const v = facts.traits.get(c.name);
      // includes compares with SameValueZero: by type, so 5 is not "5".
      return c.exists !== null ? (v !== undefined) === c.exists : v !== undefined && c.values.includes(v);
    }
    case 'dialogue':
      for (const [t, d] of live(a, c.topics, facts, now)) {
        if (d.stage < c.min || d.stage > c.max) continue;
        if (c.withinMs !== null && now - d.last > c.withinMs) continue;
        if (c.stalled !== null && !facts.stalled(t, c.stalled)) continue;
        if (c.signal !== null) {
          const want = c.signal;
          const s = d.signals?.find((x) => x.name === want.name);
          if (!s || (want.open !== null && s.open !== want.open)) continue;
        }
        return true;
      }
      return false;
  }
}

export function isMember(a: CompiledAudience, facts: PersonFacts, now: number): boolean {
  return holds(a, a.root, facts, now);
}

/**
 * The earliest moment after `now` at which membership may change without a new event, or null.
 * Only the passing of time moves it: a dialogue leaves `activeWithin` the millisecond after
 * last + within, and ends the millisecond after it has been quiet for the quiet period (as the fold, which
 * starts a new dialogue then). Stalls are events of
 * their own (the sweeper re-evaluates when one fires), and an RFM recency score that ages is the
 * caller's to add (`rfmChangesAt`). The moment may be one at which nothing changes after all; it is
 * never later than a real change.
 */
export function nextChangeAt(a: CompiledAudience, facts: PersonFacts, now: number, rfmChangesAt: number | null = null): number | null {
  let next = rfmChangesAt !== null && a.readsRfm && rfmChangesAt > now ? rfmChangesAt : null;
  const consider = (t: number) => {
    if (t > now && (next === null || t < next)) next = t;
  };
  const walk = (c: Compiled) => {
    if (c.k === 'all' || c.k === 'any') c.of.forEach(walk);
    else if (c.k === 'not') walk(c.of);
    else if (c.k === 'dialogue') {
      for (const [, d] of live(a, c.topics, facts, now)) {
        consider(d.last + a.quietMs + 1);
        if (c.withinMs !== null) consider(d.last + c.withinMs + 1);
      }
    }
  };
  walk(a.root);
  return next;
}
