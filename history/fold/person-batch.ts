import { TRAIT_LIMITS, type TraitValue } from '../../contract/raw-event.js';
import type { HistoryEvent } from '../../contract/transition.js';
import type { Automation } from './automation.js';
import {
  DIALOGUE_PREFIX,
  erasedAt,
  F,
  outboxField,
  decodeList,
  AUDIENCE_PREFIX,
  decodeMemberships,
  decodeOffsets,
  decodeState,
  encodeDialogue,
  encodeMembership,
  encodeOffsets,
  encodeRfm,
  encodeSeen,
  encodeTrait,
  TRAIT_PREFIX,
  type Fields,
} from './codec.js';
import { DEFAULT_MAX_LINKS, fold, mergeInto, openSignalWeight, type FoldEvent, type FoldOptions, type PersonState } from './fold.js';

/**
 * Turns one person's slice of a consumed batch into the write a store must apply atomically.
 * Shared by the Redis and the in-memory store: they differ only in how they read and write fields.
 */
export interface BatchRecord {
  /** Kafka offset (or the embedded log's) of the record. */
  offset: number;
  person: string;
  /** The classified event, or null for a record that only links identities. */
  event: FoldEvent | null;
  /** identify: the anonymous visitor id whose history joins this person's. */
  link?: string | undefined;
  /** When the link happened and through which channel (for the transitions it causes). */
  at?: number;
  channel?: string;
  /**
   * When ingest received the record (`rt`), epoch ms: an erasure covers the records of an id
   * received at or before it. Absent (tests, old records): the event's own time.
   */
  rt?: number | undefined;
  /** A tick (history/automation/tick.ts): no event, only "re-evaluate stalls and audiences at `rt`". */
  tick?: boolean | undefined;
  /** identify: the traits the site allow-listed (bounded by the record's contract); they overwrite the person's. */
  traits?: Readonly<Record<string, TraitValue>> | undefined;
}

/**
 * The person's traits with a record's applied: later values overwrite, and a name new to a person
 * who has TRAIT_LIMITS.count already is ignored (the hash stays bounded; the traits kept stay as
 * they were rather than one of them going at random). `under`: the visitor's, merged on identify,
 * where the person's own (newer: they are who identified) win.
 */
function applyTraits(into: Map<string, TraitValue>, from: Iterable<[string, TraitValue]>, under = false): void {
  for (const [name, value] of from) {
    if (into.has(name) ? under : into.size >= TRAIT_LIMITS.count) continue;
    into.set(name, value);
  }
}

/** The time an erasure is compared with: ingest's receive time, else the event's. */
export const receivedAt = (r: BatchRecord): number => r.rt ?? r.at ?? r.event?.ts ?? 0;

export interface IndexEntry {
  person: string;
  topic: string;
  /** Current stage index, or -1 to remove the person from every stage index of the topic. */
  stage: number;
  /** Last activity. */
  last: number;
  /** Interactions per stage: with `last`, the needs ranking the stage index is ordered by (history/store/rank-key.ts). */
  counts?: readonly number[];
  /** What the dialogue's open signals add to the weighted interactions (the topic map's weights): ranks it up or down. */
  boost?: number;
  /**
   * The person's tombstone the write was planned against (0: never erased). An erase that came
   * after it leaves a marker the index update sees: the entry is then removed, not added.
   */
  erased?: number;
  /** Stall rules fired for the dialogue's current quiet spell, with when it stalled: in the topic's stalled sets. */
  stalled?: { rule: string; at: number }[];
  /** Rules fired for the spell before, which new activity re-armed: out of the stalled sets. */
  unstalled?: string[];
}

/**
 * What the automation changes outside the person's hash, applied idempotently after the write with
 * the index: audience member sets, and the sweeper's queue.
 */
export interface AutomationWrite {
  person: string;
  /** The person's tombstone the write saw (0: none): an erase since then keeps them out of the sets. */
  erased: number;
  join: { audience: string; at: number }[];
  leave: string[];
  /** When the person's stalls or audiences may next change with no event (null: nothing pending). */
  due: number | null;
  /**
   * A tick's write sets the queue to `due` (the sweeper took the entry it came from); any other
   * write only brings an entry forward, so that writes landing out of order never delay a change.
   */
  exact: boolean;
}

export interface PersonPlan {
  person: string;
  /** The version the write expects to find; a mismatch means another writer got there first. */
  expectVersion: number;
  /** The tombstone it expects to find (0: none): an erase since the read fails the write like a version change. */
  expectErased: number;
  /** Fields to set (empty when every record was a repeat). */
  set: Fields;
  /** Fields to remove: dialogues dropped to keep the person within the cap. */
  del: string[];
  /** New transitions, stalls and audience changes plus any left unpublished by a crash (the outbox), to publish after the write. */
  transitions: HistoryEvent[];
  /** This batch's new events alone (not the outbox's): what the trend counters count. */
  fresh: HistoryEvent[];
  /** Topics whose dialogue stands at the top stage after the batch, with when it got there: the cross-selling step pairs the batch's purchases with them. */
  bought: { topic: string; at: number }[];
  /** Index entries for every topic the batch touched, applied idempotently after the write. */
  index: IndexEntry[];
  /** Visitors merged into this person: each is left pointing at the person, its history removed. */
  seal: { visitor: string; topics: string[]; version: number; erased: number }[];
  /** Audience sets and the sweeper's queue (absent without automation). */
  automation: AutomationWrite[];
  applied: number;
  /** Records refused by a cap: not folded; the worker dead-letters them with the reason. */
  refused: Refusal[];
  /** Offsets of records skipped for good: they link a visitor erased after they were received. */
  erased: number[];
}

export interface Refusal {
  offset: number;
  reason: 'link_cap';
  detail: string;
}

// The field table lives in codec.ts; re-exported for the modules that plan and apply writes.
export { F, outboxField } from './codec.js';

export function planPerson(
  person: string,
  fields: Fields | null,
  records: readonly BatchRecord[],
  partition: string,
  opts: FoldOptions,
  linkedFields: ReadonlyMap<string, Fields> = new Map(),
  publishedBelow?: number,
  automation: Automation | null = null,
  clock: number = Number.POSITIVE_INFINITY,
): PersonPlan {
  const current = fields ?? {};
  const version = current[F.version] ? Number(current[F.version]) : 0;
  const offsets = decodeOffsets(current[F.offsets]);
  const appliedUpTo = offsets.get(partition) ?? -1;
  const linked = new Set(decodeList(current[F.linked]));
  const outboxText = current[outboxField(partition)];
  // Every record below `publishedBelow` is committed, and a commit carries (or follows) the
  // publication of its transitions: an outbox left by them was published, the crash came between
  // the commit and the clearing. Publishing it again would be a duplicate.
  const staleOutbox = !!outboxText && publishedBelow !== undefined && appliedUpTo < publishedBelow;
  const outbox: HistoryEvent[] = outboxText && !staleOutbox ? (JSON.parse(outboxText) as HistoryEvent[]) : [];

  // Records at or below the applied offset were folded before a crash or a rebalance: skip them.
  const fresh = records.filter((r) => r.offset > appliedUpTo);
  const prev = decodeState(current);
  let state: PersonState = prev;
  const transitions: HistoryEvent[] = [];
  const changed = new Set<string>();
  const dropped = new Set<string>();
  const refused: Refusal[] = [];
  const erased: number[] = [];
  const maxLinks = opts.maxLinks ?? DEFAULT_MAX_LINKS;
  let applied = 0;
  let newlyLinked = false;
  let pending: FoldEvent[] = [];
  // Kept apart from `state`: the event fold builds fresh states, and traits are not its business.
  const traits = new Map(prev.traits);

  const take = (r: { transitions: HistoryEvent[]; changed: Set<string>; dropped: Set<string> }) => {
    transitions.push(...r.transitions);
    r.changed.forEach((t) => {
      changed.add(t);
      dropped.delete(t);
    });
    r.dropped.forEach((t) => {
      dropped.add(t);
      changed.delete(t);
    });
  };
  const flush = () => {
    if (pending.length === 0) return;
    const r = fold(person, state, pending, opts);
    state = r.state;
    take(r);
    applied += r.applied;
    pending = [];
  };
  for (const r of fresh) {
    // Linking a visitor erased after this record was received would bring the erased id back.
    if (r.link && r.link !== person && receivedAt(r) <= erasedAt(linkedFields.get(r.link))) {
      erased.push(r.offset);
      continue;
    }
    if (r.link && r.link !== person && !linked.has(r.link) && linked.size >= maxLinks) {
      // Linking is what an identify storm grows: past the cap the record is refused whole.
      refused.push({ offset: r.offset, reason: 'link_cap', detail: `${person} has ${linked.size} linked ids already, the most allowed` });
      continue;
    }
    if (r.event) pending.push(r.event);
    if (r.traits) applyTraits(traits, Object.entries(r.traits));
    if (r.link && r.link !== person && !linked.has(r.link)) {
      flush();
      const source = linkedFields.get(r.link);
      linked.add(r.link);
      newlyLinked = true;
      // A visitor that already points at someone else was merged there; only the link is recorded.
      if (source && (!source[F.alias] || source[F.alias] === person)) {
        const theirs = decodeState(source);
        const m = mergeInto(person, state, theirs, r.at ?? r.event?.ts ?? 0, r.channel ?? 'web', opts);
        state = m.state;
        take(m);
        if (theirs.traits) applyTraits(traits, theirs.traits, true);
      }
    }
  }
  flush();
  state = { ...state, traits };

  // Stalls and audiences, at the latest receive time of the records (never later than the clock: a
  // record from the log cannot fire a stall before its time).
  const autoWrites: AutomationWrite[] = [];
  const stalledNow = new Map<string, { rule: string; at: number }[]>();
  const memberships = decodeMemberships(current);
  let membershipsNow = memberships;
  if (automation && records.length > 0) {
    const now = Math.min(clock, Math.max(...records.map(receivedAt)));
    const out = automation.evaluate({ person, state, memberships, now });
    const join: AutomationWrite['join'] = [];
    const leave: string[] = [];
    if (fresh.length > 0) {
      state = out.state;
      for (const t of out.marked) changed.add(t);
      transitions.push(...out.events);
      membershipsNow = out.memberships;
      for (const [name, at] of membershipsNow) if (!memberships.has(name)) join.push({ audience: name, at });
      for (const name of memberships.keys()) if (!membershipsNow.has(name)) leave.push(name);
    } else {
      // A redelivery: the write landed before, what came after it may not have; put the sets right again.
      for (const [name, at] of memberships) join.push({ audience: name, at });
      for (const name of automation.audiences) if (!memberships.has(name)) leave.push(name);
    }
    autoWrites.push({ person, erased: erasedAt(fields), join, leave, due: out.due, exact: records.some((r) => r.tick) });
    const afterMs = new Map(automation.stallRules.map((r) => [r.name, r.afterMs]));
    for (const [topic, d] of state.dialogues) {
      if (d.fired && d.fired.since === d.last && d.fired.rules.length > 0) {
        stalledNow.set(
          topic,
          d.fired.rules.flatMap((rule) => (afterMs.has(rule) ? [{ rule, at: d.last + afterMs.get(rule)! }] : [])),
        );
      }
    }
    // A visitor merged here leaves its audiences: its id is a pointer now, the person holds the history.
    for (const r of fresh) {
      if (!r.link || r.link === person || !linked.has(r.link)) continue;
      const vm = decodeMemberships(linkedFields.get(r.link));
      if (vm.size === 0) continue;
      for (const name of vm.keys()) {
        transitions.push({ kind: 'exited', id: `${r.link}|audience:${name}|${now.toString(36)}|exited`, audience: name, person: r.link, at: now });
      }
      autoWrites.push({ person: r.link, erased: 0, join: [], leave: [...vm.keys()], due: null, exact: false });
    }
  }

  const set: Fields = {};
  // Only dialogues the person had before need removing; one made and dropped in this batch never was written.
  const del = [...dropped].filter((t) => prev.dialogues.has(t)).map((t) => DIALOGUE_PREFIX + t);
  // A tick that changed nothing writes nothing: ticks need no guard against redelivery (what they
  // fire is marked), and an id with no history (erased, or never seen) must not get a hash for it.
  const joined = [...membershipsNow].filter(([name, at]) => memberships.get(name) !== at);
  const left = [...memberships.keys()].filter((name) => !membershipsNow.has(name));
  const membershipsChanged = joined.length > 0 || left.length > 0;
  const idle = fresh.every((r) => r.tick) && changed.size === 0 && dropped.size === 0 && transitions.length === 0 && !membershipsChanged;
  if (fresh.length > 0 && !idle) {
    for (const topic of changed) set[DIALOGUE_PREFIX + topic] = encodeDialogue(state.dialogues.get(topic)!);
    if (state.seen.length !== prev.seen.length || state.seen.at(-1) !== prev.seen.at(-1)) set[F.seen] = encodeSeen(state.seen);
    if (state.rfm && (!prev.rfm || state.rfm.count !== prev.rfm.count)) set[F.rfm] = encodeRfm(state.rfm);
    if (newlyLinked) set[F.linked] = [...linked].join(',');
    for (const [name, at] of joined) set[AUDIENCE_PREFIX + name] = encodeMembership(at);
    for (const name of left) del.push(AUDIENCE_PREFIX + name);
    for (const [name, value] of traits) {
      const field = TRAIT_PREFIX + name;
      const text = encodeTrait(value);
      if (current[field] !== text) set[field] = text;
    }
    // Refused records count as handled: a redelivery skips them like the folded ones.
    offsets.set(partition, fresh[fresh.length - 1]!.offset);
    set[F.offsets] = encodeOffsets(offsets);
    set[F.version] = String(version + 1);
  }
  const toPublish = [...outbox, ...transitions];
  // The outbox is written with the state, so a crash before publishing loses no transition.
  if (transitions.length > 0) set[outboxField(partition)] = JSON.stringify(toPublish);
  // A stale one goes with this write (empty means removed): a later redelivery must not take it for new.
  else if (staleOutbox && fresh.length > 0 && !idle) set[outboxField(partition)] = '';

  const touched = new Set<string>(records.flatMap((r) => (r.event ? [r.event.topic] : [])));
  for (const t of changed) touched.add(t);
  const index: IndexEntry[] = [];
  const tomb = erasedAt(fields);
  for (const topic of touched) {
    const d = state.dialogues.get(topic);
    if (!d) continue;
    const entry: IndexEntry = { person, topic, stage: d.stage, last: d.last, counts: d.counts, erased: tomb };
    const boost = openSignalWeight(d, opts.signals);
    if (boost !== 0) entry.boost = boost;
    if (automation) {
      const now = stalledNow.get(topic) ?? [];
      const before = prev.dialogues.get(topic);
      const gone = before?.fired && before.fired.since === before.last ? before.fired.rules.filter((r) => !now.some((x) => x.rule === r)) : [];
      if (now.length > 0) entry.stalled = now;
      if (gone.length > 0) entry.unstalled = gone;
    }
    index.push(entry);
  }
  for (const topic of dropped) index.push({ person, topic, stage: -1, last: 0 });

  // Sealing is idempotent, so it is repeated for every link in the batch, also after a redelivery.
  const seal = [...new Set(records.flatMap((r) => (r.link && r.link !== person && linked.has(r.link) ? [r.link] : [])))].map((visitor) => {
    const vf = linkedFields.get(visitor) ?? {};
    const topics = Object.keys(vf)
      .filter((k) => k.startsWith(DIALOGUE_PREFIX))
      .map((k) => k.slice(DIALOGUE_PREFIX.length));
    return { visitor, topics, version: Number(vf[F.version] ?? 0), erased: erasedAt(vf) };
  });
  for (const s of seal) for (const topic of s.topics) index.push({ person: s.visitor, topic, stage: -1, last: 0 });

  return {
    person,
    expectVersion: version,
    expectErased: tomb,
    set,
    del,
    transitions: toPublish,
    fresh: transitions,
    bought: [...state.dialogues].flatMap(([topic, d]) => (d.stage === opts.ladder.length - 1 ? [{ topic, at: d.first[d.stage] ?? 0 }] : [])),
    index,
    seal,
    automation: autoWrites,
    applied,
    refused,
    erased,
  };
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

/** Visitors to read alongside a person: those its records link. */
export function linksOf(records: readonly BatchRecord[]): string[] {
  return [...new Set(records.flatMap((r) => (r.link && r.link !== r.person ? [r.link] : [])))];
}

/** What remains of a visitor merged into `person`: the pointer, its offsets and version. */
export function sealedFields(fields: Fields, person: string): Fields {
  const out: Fields = { [F.alias]: person, [F.version]: fields[F.version] ?? '1' };
  const offsets = fields[F.offsets];
  if (offsets) out[F.offsets] = offsets;
  return out;
}
