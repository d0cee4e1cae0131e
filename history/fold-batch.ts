import type { Transition } from '../contract/transition.js';
import type { Fields } from './codec.js';
import type { FoldOptions } from './fold.js';
import { byPerson, F, linksOf, outboxField, planPerson, type BatchRecord, type IndexEntry, type PersonPlan } from './person-batch.js';

/**
 * The few field-level operations a store must offer; `foldBatchWith` composes them into the batch
 * fold, so the Redis and the in-memory store share one algorithm and differ only in I/O.
 */
export interface FieldBackend {
  /** Each person's fields (with the outbox of `partition`), or null when there is none. */
  read(persons: string[], partition: string): Promise<(Fields | null)[]>;
  /** Compare-and-set writes: each lands only if the person's version is still `expectVersion`. */
  write(plans: PersonPlan[], partition: string): Promise<boolean[]>;
  /** Points each visitor at the person it was merged into and removes the visitor's own history. */
  seal(pairs: { person: string; visitor: string }[]): Promise<void>;
  /** Idempotent stage-index upserts and removals. */
  index(entries: IndexEntry[]): Promise<void>;
  /** Deletes the partition's outbox if it still holds exactly `value` (a later write keeps its own). */
  clearOutbox(items: { person: string; value: string }[], partition: string): Promise<void>;
}

export interface FoldOutcome {
  /** Transitions to publish (new ones, and any a crash left in an outbox). */
  transitions: Transition[];
  /** Call after the transitions are published: empties the outboxes they came from. */
  published(): Promise<void>;
}

const MAX_ATTEMPTS = 8;

export async function foldBatchWith(backend: FieldBackend, partition: string, records: readonly BatchRecord[], opts: FoldOptions): Promise<FoldOutcome> {
  const transitions: Transition[] = [];
  const index: IndexEntry[] = [];
  const seals: { person: string; visitor: string }[] = [];
  const outboxes: { person: string; value: string }[] = [];
  let pending = byPerson(records);

  for (let attempt = 0; pending.size > 0; attempt++) {
    if (attempt === MAX_ATTEMPTS) throw new Error(`write conflicts persisted for ${pending.size} people after ${MAX_ATTEMPTS} attempts`);
    const people = [...pending.keys()];
    const current = await backend.read(people, partition);

    // A visitor merged into a known person: its records now belong to that person.
    let rerouted = false;
    people.forEach((p, i) => {
      const target = current[i]?.[F.alias];
      if (!target || target === p) return;
      const moved = pending.get(p)!.map((r) => ({ ...r, person: target }));
      const list = [...(pending.get(target) ?? []), ...moved].sort((a, b) => a.offset - b.offset);
      pending.delete(p);
      pending.set(target, list);
      rerouted = true;
    });
    if (rerouted) continue;

    const links = [...new Set(people.flatMap((p) => linksOf(pending.get(p)!)))];
    const linkFields = new Map<string, Fields>();
    if (links.length > 0) {
      const lf = await backend.read(links, partition);
      links.forEach((v, i) => lf[i] && linkFields.set(v, lf[i]));
    }

    const plans = people.map((p, i) => planPerson(p, current[i] ?? null, pending.get(p)!, partition, opts, linkFields));
    const writes = plans.filter((p) => Object.keys(p.set).length > 0);
    const ok = writes.length ? await backend.write(writes, partition) : [];
    const conflicted = new Set(writes.filter((_, i) => !ok[i]).map((p) => p.person));

    const next = new Map<string, BatchRecord[]>();
    for (const plan of plans) {
      if (conflicted.has(plan.person)) {
        next.set(plan.person, pending.get(plan.person)!);
        continue;
      }
      transitions.push(...plan.transitions);
      index.push(...plan.index);
      for (const s of plan.seal) seals.push({ person: plan.person, visitor: s.visitor });
      if (plan.transitions.length > 0) {
        outboxes.push({ person: plan.person, value: plan.set[outboxField(partition)] ?? JSON.stringify(plan.transitions) });
      }
    }
    pending = next;
  }

  if (seals.length > 0) await backend.seal(seals);
  if (index.length > 0) await backend.index(index);
  return {
    transitions,
    published: async () => {
      if (outboxes.length > 0) await backend.clearOutbox(outboxes, partition);
    },
  };
}
