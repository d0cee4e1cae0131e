import type { Dialogue, PastTransition } from '../../contract/query.js';
import { transitionId } from '../fold/fold.js';

/**
 * A person's recent transitions, read back from their dialogues instead of stored a second time:
 * a dialogue keeps when each stage was first reached, and a transition is exactly the moment a
 * dialogue first reached a stage higher than any before. Walking the first-reached times in order
 * gives every transition of the current dialogues with the same id the worker published
 * (`transitionId`); what it cannot give back is the channel of each step (the dialogue keeps the
 * set of channels), nor the transitions of dialogues that expired and started again.
 * Stage transitions alone: the stalls and audience changes that share `history.transitions` leave
 * no first-reached time in a dialogue, so none can be mistaken for a step here.
 */
export type { PastTransition };

export function dialogueTransitions(person: string, d: Dialogue, ladder: readonly string[]): PastTransition[] {
  const start = Date.parse(d.started);
  const reached = ladder
    .map((stage, i) => ({ i, stage, at: d.firstReached[stage] ? Date.parse(d.firstReached[stage]) : NaN }))
    .filter((r) => Number.isFinite(r.at))
    .sort((a, b) => a.at - b.at || a.i - b.i);
  const out: PastTransition[] = [];
  let top = -1;
  for (const r of reached) {
    if (r.i <= top) continue;
    out.push({
      id: transitionId(person, d.topic, start, r.stage),
      topic: d.topic,
      from: top < 0 ? null : ladder[top]!,
      to: r.stage,
      at: new Date(r.at).toISOString(),
    });
    top = r.i;
  }
  return out;
}

/** The most recent `limit` transitions across a person's dialogues, newest first. */
export function recentTransitions(person: string, dialogues: readonly Dialogue[], ladder: readonly string[], limit = 20): PastTransition[] {
  return dialogues
    .flatMap((d) => dialogueTransitions(person, d, ladder))
    .sort((a, b) => (a.at !== b.at ? (a.at < b.at ? 1 : -1) : a.id < b.id ? -1 : 1))
    .slice(0, limit);
}
