import type { AudienceEvent, StallEvent } from '../../contract/transition.js';
import { type CompiledAudience, isMember, nextChangeAt, type PersonFacts } from '../audiences/membership.js';
import type { Automation, AutomationInput, AutomationOutcome, StallRuleSummary } from '../fold/automation.js';
import type { Dialogue } from '../fold/fold.js';
import { DEFAULT_RFM_SCALE, rfmScores, type RfmScale } from '../query/rfm.js';
import { type CrmModel, ltvOf, scoresOf } from '../crm/model.js';
import { type CompiledStallRule, dueStalls, nextStallAt, stallId } from '../stalls/rules.js';

/**
 * Stall rules and audiences applied to one person at a moment (the fold's Automation port): which
 * stalls fire, which audiences the person enters or leaves, and when that could next change with no
 * new event (the sweeper's queue). Pure: the same state and moment give the same events and ids.
 */

export interface AutomationConfig {
  ladder: readonly string[];
  quietMs: number;
  stallRules: readonly CompiledStallRule[];
  audiences: readonly { name: string; compiled: CompiledAudience }[];
  rfmScale?: RfmScale;
  /**
   * The CRM model in force and the LTV horizon, read at each evaluation (a getter: a model the worker's
   * job computes or reads applies with no recompiling). With quintiles, RFM conditions use them; `ltv`
   * conditions read the projection.
   */
  crm?: (() => { model: CrmModel | null; horizonDays: number }) | undefined;
}

const DAY = 86_400_000;
const NO_TRAITS: ReadonlyMap<string, never> = new Map<string, never>();

/** The next moment after `now` at which the recency score of a last purchase at `last` drops, or null. */
function rfmChangesAt(last: number, now: number, scale: RfmScale): number | null {
  for (const days of scale.recencyDays) {
    const t = last + days * DAY + 1;
    if (t > now) return t;
  }
  return null;
}

export function audienceEventId(person: string, audience: string, at: number, kind: 'entered' | 'exited'): string {
  return `${person}|audience:${audience}|${at.toString(36)}|${kind}`;
}

/** The rules whose marker holds for the dialogue's current quiet spell. */
export const firedRules = (d: Pick<Dialogue, 'last' | 'fired'>): readonly string[] => (d.fired && d.fired.since === d.last ? d.fired.rules : []);

export function createAutomation(config: AutomationConfig): Automation {
  const { ladder, stallRules, audiences } = config;
  const scale = config.rfmScale ?? DEFAULT_RFM_SCALE;
  const summaries: StallRuleSummary[] = stallRules.map((r) => ({ name: r.name, stage: r.stage, afterMs: r.afterMs, topics: r.topics.source }));
  const names = audiences.map((a) => a.name);

  return {
    stallRules: summaries,
    audiences: names,
    evaluate({ person, state, memberships, now }: AutomationInput): AutomationOutcome {
      const events: (StallEvent | AudienceEvent)[] = [];
      const marked = new Set<string>();
      let dialogues = state.dialogues;
      let due: number | null = null;
      const consider = (t: number | null) => {
        if (t !== null && t > now && (due === null || t < due)) due = t;
      };

      if (stallRules.length > 0) {
        for (const [topic, d] of state.dialogues) {
          // A dialogue quiet for the quiet period has ended: its next interaction starts another.
          if (now - d.last > config.quietMs) continue;
          const fired = firedRules(d);
          const firedSince = (rule: string) => (fired.includes(rule) ? d.last : undefined);
          const stalls = dueStalls(stallRules, topic, d, now, firedSince);
          if (stalls.length > 0) {
            if (dialogues === state.dialogues) dialogues = new Map(state.dialogues);
            dialogues.set(topic, { ...d, fired: { since: d.last, rules: [...fired, ...stalls.map((s) => s.rule)] } });
            marked.add(topic);
            for (const s of stalls) {
              events.push({
                kind: 'stalled',
                id: stallId(person, topic, s.rule, s.since),
                person,
                topic,
                stage: ladder[d.stage]!,
                rule: s.rule,
                since: s.since,
                at: s.at,
              });
            }
          }
          consider(nextStallAt(stallRules, topic, d, now, (rule) => (fired.includes(rule) || stalls.some((s) => s.rule === rule) ? d.last : undefined)));
        }
      }

      const next = new Map<string, number>();
      if (audiences.length > 0) {
        const crm = config.crm?.();
        const quantiles = crm?.model?.thresholds ? crm.model : null;
        // Quintiles score the time of the last purchase, not its age: they do not change with time.
        const scores = state.rfm ? (quantiles ? scoresOf(quantiles, state.rfm, now).scores : rfmScores(state.rfm, now, scale)) : null;
        const facts: PersonFacts = {
          dialogues,
          rfm: scores,
          ltv: crm ? ltvOf(crm.model, state.rfm, now, crm.horizonDays).projected : null,
          stalled: (topic, rule) => {
            const d = dialogues.get(topic);
            return !!d && firedRules(d).includes(rule);
          },
          traits: state.traits ?? NO_TRAITS,
        };
        const rfmAt = state.rfm && !quantiles ? rfmChangesAt(state.rfm.last, now, scale) : null;
        for (const a of audiences) {
          const was = memberships.get(a.name);
          if (isMember(a.compiled, facts, now)) {
            next.set(a.name, was ?? now);
            if (was === undefined) events.push({ kind: 'entered', id: audienceEventId(person, a.name, now, 'entered'), audience: a.name, person, at: now });
          } else if (was !== undefined) {
            events.push({ kind: 'exited', id: audienceEventId(person, a.name, now, 'exited'), audience: a.name, person, at: now });
          }
          consider(nextChangeAt(a.compiled, facts, now, rfmAt));
        }
      }
      // Memberships of audiences that no longer exist end silently: a deleted audience has no one to tell.
      return { state: dialogues === state.dialogues ? state : { ...state, dialogues }, marked, events, memberships: next, due };
    },
  };
}
