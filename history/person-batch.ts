import type { Transition } from '../contract/transition.js';
import { DIALOGUE_PREFIX, decodeOffsets, decodeState, encodeDialogue, encodeOffsets, encodeRfm, type Fields } from './codec.js';
import { fold, type FoldEvent, type FoldOptions } from './fold.js';

/**
 * Turns one person's slice of a consumed batch into the write a store must apply atomically.
 * Shared by the Redis and the in-memory store: they differ only in how they read and write fields.
 */
export interface BatchRecord {
  /** Kafka offset (or the embedded log's) of the record. */
  offset: number;
  person: string;
  event: FoldEvent;
}

export interface IndexEntry {
  topic: string;
  /** Current stage index; the person is removed from the topic's other stage indexes. */
  stage: number;
  /** Last activity, the score in the stage index. */
  last: number;
}

export interface PersonPlan {
  person: string;
  /** The version the write expects to find; a mismatch means another writer got there first. */
  expectVersion: number;
  /** Fields to set (empty when every record was a repeat). */
  set: Fields;
  transitions: Transition[];
  /** Index entries for every topic the batch touched, applied idempotently after the write. */
  index: IndexEntry[];
  applied: number;
}

export function planPerson(
  person: string,
  fields: Fields | null,
  records: readonly BatchRecord[],
  partition: string,
  opts: FoldOptions,
): PersonPlan {
  const current = fields ?? {};
  const version = current.v ? Number(current.v) : 0;
  const offsets = decodeOffsets(current.o);
  const appliedUpTo = offsets.get(partition) ?? -1;
  // Records at or below the applied offset were folded before a crash or a rebalance: skip them.
  const fresh = records.filter((r) => r.offset > appliedUpTo);
  const prev = decodeState(current);
  const { state, transitions, changed, applied } = fold(person, prev, fresh.map((r) => r.event), opts);

  const set: Fields = {};
  if (fresh.length > 0) {
    for (const topic of changed) set[DIALOGUE_PREFIX + topic] = encodeDialogue(state.dialogues.get(topic)!);
    if (applied > 0) set.s = state.seen.join(',');
    if (state.rfm && (!prev.rfm || state.rfm.count !== prev.rfm.count)) set.m = encodeRfm(state.rfm);
    offsets.set(partition, fresh[fresh.length - 1]!.offset);
    set.o = encodeOffsets(offsets);
    set.v = String(version + 1);
  }

  const index: IndexEntry[] = [];
  for (const topic of new Set(records.map((r) => r.event.topic))) {
    const d = state.dialogues.get(topic);
    if (d) index.push({ topic, stage: d.stage, last: d.last });
  }
  return { person, expectVersion: version, set, transitions, index, applied };
}

/** Groups a batch by person, keeping each person's records in log order. */
export function byPerson(records: readonly BatchRecord[]): Map<string, BatchRecord[]> {
  const m = new Map<string, BatchRecord[]>();
  for (const r of records) {
    const list = m.get(r.person);
    if (list) list.push(r);
    else m.set(r.person, [r]);
  }
  return m;
}
