import { decodeList, type Fields } from './codec.js';
import { foldBatchWith, type FieldBackend, type FoldOutcome } from './fold-batch.js';
import type { FoldOptions } from './fold.js';
import { F, outboxField, sealedFields, type BatchRecord, type IndexEntry, type PersonPlan } from './person-batch.js';
import type { HistoryStore } from './store.js';
import { hasHistory, personView, type PersonView } from './views.js';

/**
 * The embedded store for `npm start`: the same fields and the same batch fold as Redis, held in
 * Maps. Single-threaded JavaScript makes each person's write atomic without further ceremony.
 */
export class MemoryHistoryStore implements HistoryStore {
  private readonly people = new Map<string, Fields>();
  /** topic -> stage index -> person -> last activity */
  private readonly index = new Map<string, Map<number, Map<string, number>>>();
  private readonly backend: FieldBackend;

  constructor(readonly options: FoldOptions) {
    this.backend = {
      read: async (persons) => persons.map((p) => this.people.get(p) ?? null),
      write: async (plans) => plans.map((plan) => this.write(plan)),
      mark: async (items) =>
        items.map(({ person, visitor, expectVersion }) => {
          const f = this.people.get(visitor);
          if (Number(f?.[F.version] ?? 0) !== expectVersion) return false;
          this.people.set(visitor, { ...f, [F.alias]: person, [F.version]: String(expectVersion + 1) });
          return true;
        }),
      seal: async (pairs) => {
        for (const { person, visitor } of pairs) this.people.set(visitor, sealedFields(this.people.get(visitor) ?? {}, person));
      },
      index: async (entries) => entries.forEach((e) => this.indexOne(e)),
      clearOutbox: async (items, partition) => {
        const field = outboxField(partition);
        for (const { person, value } of items) {
          const f = this.people.get(person);
          if (f && f[field] === value) delete f[field];
        }
      },
    };
  }

  private write(plan: PersonPlan): boolean {
    const f = this.people.get(plan.person);
    if (Number(f?.[F.version] ?? 0) !== plan.expectVersion) return false;
    this.people.set(plan.person, { ...f, ...plan.set });
    return true;
  }

  private indexOne(e: IndexEntry): void {
    let stages = this.index.get(e.topic);
    if (!stages) this.index.set(e.topic, (stages = new Map()));
    for (const [stage, members] of stages) if (stage !== e.stage) members.delete(e.person);
    if (e.stage < 0) return;
    let members = stages.get(e.stage);
    if (!members) stages.set(e.stage, (members = new Map()));
    members.set(e.person, e.last);
  }

  foldBatch(partition: string, records: readonly BatchRecord[]): Promise<FoldOutcome> {
    return foldBatchWith(this.backend, partition, records, this.options);
  }

  private resolve(person: string): string {
    return this.people.get(person)?.[F.alias] ?? person;
  }

  async getPerson(person: string): Promise<PersonView | null> {
    const id = this.resolve(person);
    const f = this.people.get(id);
    return hasHistory(f) ? personView(id, f, this.options.ladder) : null;
  }

  async atStage(topic: string, stage: string, limit: number): Promise<string[]> {
    const members = this.index.get(topic)?.get(this.options.ladder.indexOf(stage));
    if (!members) return [];
    return [...members].sort((a, b) => b[1] - a[1]).slice(0, limit).map(([p]) => p);
  }

  async erase(person: string): Promise<boolean> {
    const id = this.resolve(person);
    const f = this.people.get(id);
    if (!f) return false;
    const ids = [id, ...decodeList(f[F.linked])];
    for (const p of ids) {
      this.people.delete(p);
      for (const stages of this.index.values()) for (const members of stages.values()) members.delete(p);
    }
    return true;
  }

  /** Every key the store holds for tests that check erase leaves nothing behind. */
  dump(): { people: string[]; indexed: string[] } {
    const indexed = new Set<string>();
    for (const stages of this.index.values()) for (const members of stages.values()) for (const p of members.keys()) indexed.add(p);
    return { people: [...this.people.keys()], indexed: [...indexed] };
  }

  async close(): Promise<void> {}
}
