import type { TraitValue } from '../../contract/raw-event.js';
import type { Transition } from '../../contract/transition.js';

/**
 * The communication-history fold: (state, events) -> (state, transitions).
 * Pure: no clock, no I/O. Both stores (Redis and in-memory) call it, so they cannot disagree.
 */

export interface Dialogue {
  /** Highest stage reached, as an index into the ladder. Only ever goes up within a dialogue. */
  stage: number;
  /** When this dialogue began (its first interaction), epoch ms. */
  start: number;
  /** Last interaction, epoch ms. */
  last: number;
  /** When each stage was first reached; 0 where it never was. */
  first: number[];
  /** Interactions per stage. */
  counts: number[];
  channels: string[];
  /**
   * Stall rules fired for the quiet spell that began at `since` (history/automation/evaluate.ts).
   * Valid only while `since` is still the last activity: new activity re-arms every rule, with no
   * write of its own.
   */
  fired?: { since: number; rules: string[] } | undefined;
  /**
   * Signals the topic map marked events of this dialogue with (a call-centre complaint, an
   * inquiry), by name in name order: how often each was raised, and whether it is still open (raised
   * since it was last closed). Absent when none, so most dialogues encode as before.
   */
  signals?: SignalCount[] | undefined;
}

export interface SignalCount {
  name: string;
  count: number;
  open: boolean;
}

/** Distinct signals kept per dialogue (the topic map declares at most as many): one hash field holds them. */
export const MAX_DIALOGUE_SIGNALS = 16;

export interface Rfm {
  /** First purchase, epoch ms: the customer's age for lifetime value (history/crm/ltv.ts). */
  first: number;
  last: number;
  count: number;
  total: number;
}

export interface PersonState {
  /** By topic. A Map, so that a topic named `__proto__` is just a topic. */
  dialogues: Map<string, Dialogue>;
  /** Fingerprints of the most recent event ids, oldest first: a client retry of an event counts once. */
  seen: string[];
  rfm: Rfm | null;
  /**
   * Identify traits the site allow-listed, by name (history/fold/codec.ts decodes them; planPerson
   * keeps them: the fold of events neither reads nor carries them).
   */
  traits?: Map<string, TraitValue> | undefined;
}

export interface FoldEvent {
  id: string;
  ts: number;
  channel: string;
  topic: string;
  stage: number;
  /** Set on purchases that carry an amount; feeds the RFM inputs. */
  value?: number | undefined;
  /** The topic map marked the event as a signal on its dialogue: raised, or settled with `close`. */
  signal?: { name: string; close?: boolean | undefined } | undefined;
}

export interface FoldOptions {
  ladder: readonly string[];
  quietMs: number;
  /** How many event fingerprints to remember per person. */
  seenSize: number;
  /** Dialogues kept per person; past it the one quiet the longest goes (default DEFAULT_MAX_DIALOGUES). */
  maxDialogues?: number | undefined;
  /** Visitor ids that may be linked to one person (default DEFAULT_MAX_LINKS). */
  maxLinks?: number | undefined;
  /** The topic map's signals: name -> what an open one adds to the needs ranking's weighted interactions. */
  signals?: ReadonlyMap<string, number> | undefined;
  /**
   * The CRM's post-write steps (trends and the latest transitions, cross-selling, the purchasers the
   * CRM model samples); default on. Off (WORKER_CRM_STEPS=false) saves their Redis writes; the bench
   * measures the fold both ways.
   */
  crmSteps?: boolean | undefined;
}

export const DEFAULT_MAX_DIALOGUES = 200;
export const DEFAULT_MAX_LINKS = 100;

export interface FoldResult {
  state: PersonState;
  transitions: Transition[];
  /** Topics whose dialogue changed. */
  changed: Set<string>;
  /** Topics whose dialogue was dropped to keep the person within `maxDialogues`. */
  dropped: Set<string>;
  /** Events that counted (not repeats). */
  applied: number;
}

export const emptyState = (): PersonState => ({ dialogues: new Map(), seen: [], rfm: null });

const FP_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** Fingerprints have a fixed width, so a ring of them is stored without separators. */
export const FINGERPRINT_WIDTH = 6;

/**
 * FNV-1a, 32 bits, as 6 base-64 characters: short enough to keep dozens per person, wide enough
 * that a false "already seen" (about ring size / 2^32 per event) does not happen in practice.
 */
export function fingerprint(id: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h >>>= 0;
  let s = '';
  for (let i = 0; i < FINGERPRINT_WIDTH; i++) {
    s += FP_ALPHABET[h & 63];
    h = Math.floor(h / 64);
  }
  return s;
}

function newDialogue(e: FoldEvent, stages: number): Dialogue {
  const first = new Array<number>(stages).fill(0);
  first[e.stage] = e.ts;
  return { stage: e.stage, start: e.ts, last: e.ts, first, counts: new Array<number>(stages).fill(0), channels: [] };
}

export function transitionId(person: string, topic: string, start: number, to: string): string {
  return `${person}|${topic}|${start.toString(36)}|${to}`;
}

/**
 * Drops the dialogue quiet the longest (smallest last activity; on a tie the greatest topic, so
 * the choice does not depend on insertion order) other than `keep`. Returns its topic.
 */
function dropQuietest(dialogues: Map<string, Dialogue>, keep: string): string | undefined {
  let victim: string | undefined;
  let quiet = Infinity;
  for (const [topic, d] of dialogues) {
    if (topic === keep) continue;
    if (d.last < quiet || (d.last === quiet && victim !== undefined && topic > victim)) {
      victim = topic;
      quiet = d.last;
    }
  }
  if (victim !== undefined) dialogues.delete(victim);
  return victim;
}

export function fold(person: string, prev: PersonState, events: readonly FoldEvent[], opts: FoldOptions): FoldResult {
  const stages = opts.ladder.length;
  const maxDialogues = opts.maxDialogues ?? DEFAULT_MAX_DIALOGUES;
  const dropped = new Set<string>();
  const state: PersonState = {
    dialogues: new Map(prev.dialogues),
    seen: prev.seen.slice(),
    rfm: prev.rfm ? { ...prev.rfm } : null,
  };
  const seen = new Set(state.seen);
  const transitions: Transition[] = [];
  const changed = new Set<string>();
  let applied = 0;

  for (const e of events) {
    if (e.stage < 0 || e.stage >= stages) continue;
    const fp = fingerprint(e.id);
    if (seen.has(fp)) continue;
    seen.add(fp);
    state.seen.push(fp);
    applied++;

    const current = state.dialogues.get(e.topic);
    let d: Dialogue;
    if (!current || e.ts - current.last > opts.quietMs) {
      // A new topic for a person at the cap: make room, never at the expense of this one.
      while (!current && state.dialogues.size >= maxDialogues) {
        const gone = dropQuietest(state.dialogues, e.topic);
        if (gone === undefined) break;
        dropped.add(gone);
        changed.delete(gone);
      }
      dropped.delete(e.topic);
      d = newDialogue(e, stages);
      transitions.push(mkTransition(person, e, d.start, null, opts.ladder));
    } else {
      d = { ...current, first: current.first.slice(), counts: current.counts.slice(), channels: current.channels.slice() };
      if (e.stage > d.stage) {
        transitions.push(mkTransition(person, e, d.start, opts.ladder[d.stage] ?? null, opts.ladder));
        d.stage = e.stage;
      }
      // Late events (client clocks, retries) may carry earlier times: keep the earliest first-reached.
      const f = d.first[e.stage] ?? 0;
      if (f === 0 || e.ts < f) d.first[e.stage] = e.ts;
      if (e.ts > d.last) d.last = e.ts;
    }
    d.counts[e.stage] = (d.counts[e.stage] ?? 0) + 1;
    if (!d.channels.includes(e.channel)) d.channels.push(e.channel);
    if (e.signal) {
      const signals = markSignal(d.signals, e.signal.name, e.signal.close === true);
      if (signals) d.signals = signals;
    }
    state.dialogues.set(e.topic, d);
    changed.add(e.topic);

    if (e.value !== undefined) {
      const r = state.rfm;
      state.rfm = r
        ? { first: Math.min(r.first, e.ts), last: Math.max(r.last, e.ts), count: r.count + 1, total: r.total + e.value }
        : { first: e.ts, last: e.ts, count: 1, total: e.value };
    }
  }
  if (state.seen.length > opts.seenSize) state.seen.splice(0, state.seen.length - opts.seenSize);
  return { state, transitions, changed, dropped, applied };
}

/**
 * The dialogue's signals with one more mark: a raise counts and opens, a close settles (a close of a
 * signal never raised records nothing). Undefined when nothing changes. A new name past the cap is
 * dropped: the map allows no more, so only a changed map's leftovers could get there.
 */
function markSignal(prev: readonly SignalCount[] | undefined, name: string, close: boolean): SignalCount[] | undefined {
  const list = prev ? prev.map((x) => ({ ...x })) : [];
  const at = list.findIndex((x) => x.name === name);
  if (at >= 0) {
    const x = list[at]!;
    if (close) x.open = false;
    else {
      x.count++;
      x.open = true;
    }
    return list;
  }
  if (close || list.length >= MAX_DIALOGUE_SIGNALS) return undefined;
  list.push({ name, count: 1, open: true });
  return list.sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** Merged signals: counts summed, open if open on either side. */
function mergeSignals(a: readonly SignalCount[] | undefined, b: readonly SignalCount[] | undefined): SignalCount[] | undefined {
  if (!a?.length && !b?.length) return undefined;
  const byName = new Map<string, SignalCount>();
  for (const x of [...(a ?? []), ...(b ?? [])]) {
    const y = byName.get(x.name);
    byName.set(x.name, y ? { name: x.name, count: y.count + x.count, open: y.open || x.open } : { ...x });
  }
  return [...byName.values()].sort((x, y) => (x.name < y.name ? -1 : 1)).slice(0, MAX_DIALOGUE_SIGNALS);
}

/**
 * What the dialogue's open signals add to the needs ranking's weighted interactions, as the map
 * weighs them (a signal the map no longer declares weighs nothing).
 */
export function openSignalWeight(d: Pick<Dialogue, 'signals'>, weights: ReadonlyMap<string, number> | undefined): number {
  if (!d.signals || !weights) return 0;
  let w = 0;
  for (const s of d.signals) if (s.open) w += weights.get(s.name) ?? 0;
  return w;
}

function mkTransition(person: string, e: FoldEvent, start: number, from: string | null, ladder: readonly string[]): Transition {
  const to = ladder[e.stage] ?? String(e.stage);
  return { id: transitionId(person, e.topic, start, to), person, topic: e.topic, from, to, at: e.ts, channel: e.channel };
}

/**
 * Merges an anonymous visitor's history into the known person's: highest stage, earliest
 * first-reached times, summed counts, channels united. Returns the transitions the known person
 * gains (a topic new to them, or a stage higher than theirs), dated `at`.
 */
export function mergeInto(person: string, target: PersonState, source: PersonState, at: number, channel: string, opts: FoldOptions): FoldResult {
  const state: PersonState = { dialogues: new Map(target.dialogues), seen: target.seen.slice(), rfm: target.rfm ? { ...target.rfm } : null };
  const transitions: Transition[] = [];
  const changed = new Set<string>();
  for (const [topic, s] of [...source.dialogues].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const t = state.dialogues.get(topic);
    if (!t) {
      state.dialogues.set(topic, {
        ...s,
        first: s.first.slice(),
        counts: s.counts.slice(),
        channels: s.channels.slice(),
        ...(s.signals ? { signals: s.signals.map((x) => ({ ...x })) } : {}),
      });
      transitions.push({ id: transitionId(person, topic, s.start, opts.ladder[s.stage]!), person, topic, from: null, to: opts.ladder[s.stage]!, at, channel });
    } else {
      const merged: Dialogue = {
        stage: Math.max(t.stage, s.stage),
        start: t.start,
        last: Math.max(t.last, s.last),
        first: t.first.map((f, i) => {
          const g = s.first[i] ?? 0;
          return f === 0 ? g : g === 0 ? f : Math.min(f, g);
        }),
        counts: t.counts.map((c, i) => c + (s.counts[i] ?? 0)),
        channels: [...new Set([...t.channels, ...s.channels])],
      };
      // What fired for the merged dialogue's quiet spell (either side's) stays fired: not again.
      const fired = [t, s].flatMap((x) => (x.fired && x.fired.since === merged.last ? x.fired.rules : []));
      if (fired.length > 0) merged.fired = { since: merged.last, rules: [...new Set(fired)] };
      const signals = mergeSignals(t.signals, s.signals);
      if (signals) merged.signals = signals;
      if (merged.stage > t.stage) {
        transitions.push({
          id: transitionId(person, topic, t.start, opts.ladder[merged.stage]!),
          person,
          topic,
          from: opts.ladder[t.stage]!,
          to: opts.ladder[merged.stage]!,
          at,
          channel,
        });
      }
      state.dialogues.set(topic, merged);
    }
    changed.add(topic);
  }
  const seen = [...new Set([...state.seen, ...source.seen])];
  state.seen = seen.slice(Math.max(0, seen.length - opts.seenSize));
  if (source.rfm) {
    const r = state.rfm;
    const s = source.rfm;
    state.rfm = r ? { first: Math.min(r.first, s.first), last: Math.max(r.last, s.last), count: r.count + s.count, total: r.total + s.total } : { ...s };
  }
  // Two histories at the cap make one over it: keep the most recent dialogues of both.
  const dropped = new Set<string>();
  const maxDialogues = opts.maxDialogues ?? DEFAULT_MAX_DIALOGUES;
  while (state.dialogues.size > maxDialogues) {
    const gone = dropQuietest(state.dialogues, '');
    if (gone === undefined) break;
    dropped.add(gone);
    changed.delete(gone);
  }
  const kept = dropped.size === 0 ? transitions : transitions.filter((t) => !dropped.has(t.topic));
  return { state, transitions: kept, changed, dropped, applied: 0 };
}
