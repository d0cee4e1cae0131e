import type { Transition } from '../contract/transition.js';
import type { Fields } from './codec.js';
import type { FoldOptions } from './fold.js';
import { byPerson, planPerson, type BatchRecord } from './person-batch.js';
import type { HistoryStore } from './store.js';
import { personView, type PersonView } from './views.js';

/**
 * The embedded store for `npm start`: the same fields and the same fold as Redis, held in Maps.
 * Single-threaded JavaScript makes each person's write atomic without further ceremony.
 */
export class MemoryHistoryStore implements HistoryStore {
  private readonly people = new Map<string, Fields>();
  /** topic -> stage index -> person -> last activity */
  private readonly index = new Map<string, Map<number, Map<string, number>>>();

  constructor(readonly options: FoldOptions) {}

  async foldBatch(partition: string, records: readonly BatchRecord[]): Promise<Transition[]> {
    const transitions: Transition[] = [];
    for (const [person, list] of byPerson(records)) {
      const plan = planPerson(person, this.people.get(person) ?? null, list, partition, this.options);
      if (Object.keys(plan.set).length > 0) this.people.set(person, { ...this.people.get(person), ...plan.set });
      for (const e of plan.index) {
        let stages = this.index.get(e.topic);
        if (!stages) this.index.set(e.topic, (stages = new Map()));
        for (const [stage, members] of stages) if (stage !== e.stage) members.delete(person);
        let members = stages.get(e.stage);
        if (!members) stages.set(e.stage, (members = new Map()));
        members.set(person, e.last);
      }
      transitions.push(...plan.transitions);
    }
    return transitions;
  }

  async getPerson(person: string): Promise<PersonView | null> {
    const f = this.people.get(person);
    return f ? personView(person, f, this.options.ladder) : null;
  }

  async atStage(topic: string, stage: string, limit: number): Promise<string[]> {
    const members = this.index.get(topic)?.get(this.options.ladder.indexOf(stage));
    if (!members) return [];
    return [...members].sort((a, b) => b[1] - a[1]).slice(0, limit).map(([p]) => p);
  }

  async close(): Promise<void> {}
}
