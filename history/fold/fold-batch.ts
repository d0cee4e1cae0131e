import { isTransition, type HistoryEvent, type Transition } from '../../contract/transition.js';
import { pairsOfBatch } from '../crm/cross-sell.js';
import { DEFAULT_TREND_RETENTION, oldestKept, trendIncrements, type TrendIncrement } from '../crm/trends.js';
import type { Automation } from './automation.js';
import type { Fields } from './codec.js';
import type { FoldOptions } from './fold.js';
import { decodeRfm, erasedAt, F, outboxField } from './codec.js';
import { byPerson, linksOf, planPerson, receivedAt, type AutomationWrite, type BatchRecord, type IndexEntry, type PersonPlan } from './person-batch.js';

/** A record the fold did not take: refused by a cap, or its person's history could not be folded. */
export interface FoldRefusal {
  offset: number;
  reason: 'link_cap' | 'fold_error';
  detail: string;
}

/**
 * The few field-level operations a store must offer; `foldBatchWith` composes them into the batch
 * fold, so the Redis and the in-memory store share one algorithm and differ only in I/O.
 */
export interface FieldBackend {
  /** Each person's fields (with the outbox of `partition`), or null when there is none. */
  read(persons: string[], partition: string): Promise<(Fields | null)[]>;
  /** Compare-and-set writes: each lands only if the person's version is still `expectVersion`. */
  write(plans: PersonPlan[], partition: string): Promise<boolean[]>;
  /**
   * Points each visitor at the person its history merges into, if the visitor's version and
   * tombstone are still the ones the merge read (compare-and-set, bumping the version). From then on
   * every write of the visitor is re-routed to the person, and a writer that read the visitor before
   * fails its own CAS.
   */
  mark(items: { person: string; visitor: string; expectVersion: number; expectErased: number }[]): Promise<boolean[]>;
  /**
   * After the person's write: removes a marked visitor's own history, keeping the pointer; unless the
   * visitor was erased since it was read (its tombstone changed): an erased id gets no pointer back.
   */
  seal(pairs: { person: string; visitor: string; expectErased: number }[]): Promise<void>;
  /** Idempotent stage-index upserts and removals (with the topics' stalled sets). */
  index(entries: IndexEntry[]): Promise<void>;
  /** Audience member sets and the sweeper's queue, after the index (person-batch.ts AutomationWrite). */
  automate(writes: AutomationWrite[]): Promise<void>;
  /**
   * After the automation: adds a batch's transitions to the topics' trend counters, prunes buckets
   * past the retention, and keeps the latest transitions. Not idempotent, so it runs once per batch,
   * for new transitions only (see TrendStep).
   */
  trend(step: TrendStep): Promise<void>;
  /**
   * After the trends: the batch's purchases added to the cross-selling counters of each topic they
   * follow (history/crm/cross-sell.ts). Not idempotent either, so, like the trends, once per batch
   * and for new transitions only (see CrossSellStep).
   */
  crossSell(step: CrossSellStep): Promise<void>;
  /**
   * Last: the people whose RFM inputs this batch changed, into the purchasers set the CRM model
   * samples (history/worker/crm-model.ts), scored by their last purchase. Idempotent (a set).
   */
  purchasers?(people: { person: string; last: number }[]): Promise<void>;
  /** Deletes the partition's outbox if it still holds exactly `value` (a later write keeps its own). */
  clearOutbox(items: { person: string; value: string }[], partition: string): Promise<void>;
}

/**
 * What one batch adds to the trends. Counted from the transitions the batch made, never from an
 * outbox a crash left (those were counted by the batch that made them, unless the crash came
 * between that batch's write and this step: then they are not counted at all). So the trends are
 * counts that may miss a crashed batch's few transitions, not a ledger; a redelivery never counts
 * twice, and a replay counts everything again from the log.
 */
export interface TrendStep {
  /** One per topic, granularity, bucket and stage, none older than the retention at `now`. */
  increments: TrendIncrement[];
  /** The batch's new stage transitions, each with the tombstone its person's write saw (0: none). */
  recent: { event: Transition; erased: number }[];
  /** The fold's clock: buckets that fall out of the retention at this instant are pruned. */
  now: number;
}

/**
 * What one batch adds to the cross-selling counters, per topic: purchases of it (its buyers) and
 * the topics bought after it (one entry per pair and purchase). Counted like the trends, from the
 * batch's own new transitions: a redelivery or a republished outbox counts nothing twice, and a
 * crash between the batch's write and this step loses its few increments. Counts, not a ledger:
 * they hold no person, so an erase leaves them as they are.
 */
export interface CrossSellStep {
  topics: { topic: string; buyers: number; followers: string[] }[];
}

export interface FoldOutcome {
  /** Transitions, stalls and audience changes to publish (new ones, and any a crash left in an outbox). */
  transitions: HistoryEvent[];
  /** Records not folded, for the worker to dead-letter; the others of the batch went on. */
  refused: FoldRefusal[];
  /** Records skipped for good because an id they belong to was erased after ingest received them. */
  erased: number;
  /** Call after the transitions are published: empties the outboxes they came from. */
  published(): Promise<void>;
}

const MAX_ATTEMPTS = 8;

/**
 * `publishedBelow`: the first offset of the consumed batch. Everything before it is committed on
 * the log, so transitions an outbox holds from those records were published already (see planPerson).
 */
export async function foldBatchWith(
  backend: FieldBackend,
  partition: string,
  records: readonly BatchRecord[],
  opts: FoldOptions,
  publishedBelow?: number,
  automation: Automation | null = null,
  clock: () => number = Date.now,
): Promise<FoldOutcome> {
  const transitions: HistoryEvent[] = [];
  const index: IndexEntry[] = [];
  const autoWrites: AutomationWrite[] = [];
  const seals: { person: string; visitor: string; expectErased: number }[] = [];
  const outboxes: { person: string; value: string }[] = [];
  const recent: TrendStep['recent'] = [];
  const crossSell = new Map<string, CrossSellStep['topics'][number]>();
  const counters = (topic: string) => {
    let c = crossSell.get(topic);
    if (!c) crossSell.set(topic, (c = { topic, buyers: 0, followers: [] }));
    return c;
  };
  const top = opts.ladder[opts.ladder.length - 1];
  const buyers: { person: string; last: number }[] = [];
  const refused: FoldRefusal[] = [];
  let erased = 0;
  // Visitors linked in this batch join their person only after the first read has judged their
  // records against their own tombstones.
  let pending = byPerson(records);
  let joined = false;

  for (let attempt = 0; pending.size > 0; attempt++) {
    if (attempt === MAX_ATTEMPTS) throw new Error(`write conflicts persisted for ${pending.size} people after ${MAX_ATTEMPTS} attempts`);
    let people = [...pending.keys()];
    let current = await backend.read(people, partition);

    // Records of an erased id received at or before its erasure are skipped for good: whatever the
    // partition, the redelivery or the replay, an erased person is not folded again. Judged under
    // every id a record passes through (its own, then the person a merge re-routes it to).
    const left = people.map((p, i) => {
      const at = erasedAt(current[i]);
      const list = pending.get(p)!;
      const keep = at === 0 ? list : list.filter((r) => receivedAt(r) > at);
      erased += list.length - keep.length;
      if (keep.length === 0) pending.delete(p);
      else pending.set(p, keep);
      return keep.length > 0;
    });
    if (left.includes(false)) {
      current = current.filter((_, i) => left[i]);
      people = people.filter((_, i) => left[i]);
    }
    if (!joined) {
      joined = true;
      const before = pending.size;
      pending = joinLinkedVisitors(pending);
      if (pending.size !== before) continue;
    }

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
    if (rerouted) {
      pending = joinLinkedVisitors(pending);
      continue;
    }

    const links = [...new Set(people.flatMap((p) => linksOf(pending.get(p)!)))];
    const linkFields = new Map<string, Fields>();
    if (links.length > 0) {
      const lf = await backend.read(links, partition);
      links.forEach((v, i) => {
        if (lf[i]) linkFields.set(v, lf[i]);
      });
    }

    const plans: PersonPlan[] = [];
    people.forEach((p, i) => {
      try {
        plans.push(planPerson(p, current[i] ?? null, pending.get(p)!, partition, opts, linkFields, publishedBelow, automation, clock()));
      } catch (err) {
        // Pure code failing on one person's stored history or records (a bug, or a history written
        // by something else): that person's records are refused, everyone else's batch goes on.
        const detail = `folding ${p} failed: ${(err as Error).message}`.slice(0, 500);
        for (const r of pending.get(p)!) refused.push({ offset: r.offset, reason: 'fold_error', detail });
      }
    });
    // Mark merged visitors first: the person's write below then holds everything they had, and
    // nothing can be added to them afterwards. A visitor that changed since we read it means a
    // retry of the whole person, with the visitor read again.
    const marks = plans.flatMap((p) => p.seal.map((s) => ({ person: p.person, visitor: s.visitor, expectVersion: s.version, expectErased: s.erased })));
    const marked = marks.length ? await backend.mark(marks) : [];
    const conflicted = new Set(marks.filter((_, i) => !marked[i]).map((m) => m.person));
    const writes = plans.filter((p) => (Object.keys(p.set).length > 0 || p.del.length > 0) && !conflicted.has(p.person));
    const ok = writes.length ? await backend.write(writes, partition) : [];
    writes.forEach((p, i) => {
      if (!ok[i]) conflicted.add(p.person);
    });

    const next = new Map<string, BatchRecord[]>();
    for (const plan of plans) {
      if (conflicted.has(plan.person)) {
        next.set(plan.person, pending.get(plan.person)!);
        continue;
      }
      transitions.push(...plan.transitions);
      for (const e of plan.fresh) if (isTransition(e)) recent.push({ event: e, erased: plan.expectErased });
      const purchases = plan.fresh.flatMap((e) => (isTransition(e) && e.to === top ? [{ topic: e.topic, at: e.at }] : []));
      if (purchases.length > 0) {
        for (const p of purchases) counters(p.topic).buyers++;
        for (const [x, y] of pairsOfBatch(plan.bought, purchases)) counters(x).followers.push(y);
      }
      const rfm = plan.set[F.rfm];
      if (rfm !== undefined) buyers.push({ person: plan.person, last: decodeRfm(rfm).last });
      index.push(...plan.index);
      autoWrites.push(...plan.automation);
      refused.push(...plan.refused);
      erased += plan.erased.length;
      for (const s of plan.seal) seals.push({ person: plan.person, visitor: s.visitor, expectErased: s.erased });
      if (plan.transitions.length > 0) {
        outboxes.push({ person: plan.person, value: plan.set[outboxField(partition)] ?? JSON.stringify(plan.transitions) });
      }
    }
    pending = next;
  }

  if (seals.length > 0) await backend.seal(seals);
  if (index.length > 0) await backend.index(index);
  if (autoWrites.length > 0) await backend.automate(autoWrites);
  const crm = opts.crmSteps !== false;
  if (crm && recent.length > 0) {
    const now = clock();
    const increments = trendIncrements(recent.map((r) => r.event)).filter((i) => i.bucket >= oldestKept(i.granularity, now, DEFAULT_TREND_RETENTION));
    await backend.trend({ increments, recent, now });
  }
  if (crm && crossSell.size > 0) await backend.crossSell({ topics: [...crossSell.values()] });
  if (crm && buyers.length > 0) await backend.purchasers?.(buyers);
  return {
    transitions,
    refused,
    erased,
    published: async () => {
      if (outboxes.length > 0) await backend.clearOutbox(outboxes, partition);
    },
  };
}

/**
 * A visitor linked by an identify in this same batch has its records of the batch folded with the
 * person's, in log order. Folded apart, the person's applied offset would pass them by: offsets
 * guard redelivery only while each person's records are applied in order.
 */
function joinLinkedVisitors(pending: Map<string, BatchRecord[]>): Map<string, BatchRecord[]> {
  for (const [person, list] of [...pending]) {
    for (const visitor of linksOf(list)) {
      const theirs = pending.get(visitor);
      if (!theirs || visitor === person || !pending.has(person)) continue;
      pending.delete(visitor);
      const joined = [...pending.get(person)!, ...theirs.map((r) => ({ ...r, person }))].sort((a, b) => a.offset - b.offset);
      pending.set(person, joined);
    }
  }
  return pending;
}
