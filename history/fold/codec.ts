import type { TraitValue } from '../../contract/raw-event.js';
import { FINGERPRINT_WIDTH, type Dialogue, type PersonState, type Rfm, type SignalCount } from './fold.js';

/**
 * How a person's history is laid out as the fields of one small hash (Redis keeps it as a listpack
 * while every value stays under 64 bytes). The in-memory store keeps exactly the same fields, so
 * both backends share this encoding and its byte counts.
 */
export type Fields = Record<string, string>;

/**
 * The field names of a person hash: the one place they are written. The stores, the views and the
 * Redis scripts (history/store/redis-scripts.ts) are all built from this table.
 */
export const F = {
  /** Recent event fingerprints, fixed width, concatenated. Redis keeps them in a key of their own that expires: they only guard against client retries, which come soon. */
  seen: 's',
  /** RFM inputs: last purchase|purchases|total value. */
  rfm: 'm',
  /** Last applied Kafka offset per partition: p=offset;... */
  offsets: 'o',
  /** Version, bumped by every write (optimistic concurrency between workers). */
  version: 'v',
  /** On a merged visitor: the person it now points at. */
  alias: 'u',
  /** Visitor ids merged into the person, comma-separated (Redis: a key of its own). */
  linked: 'l',
  /**
   * Read only, never written by a fold: when the id was last erased, epoch ms (its tombstone; Redis: a
   * key of its own that outlives the person's other keys). Records received at or before it are
   * skipped, and every write compares it as it compares the version.
   */
  erased: 'e',
} as const;

/** An id's tombstone from its fields: when it was last erased, or 0. */
export const erasedAt = (f: Fields | null | undefined): number => Number(f?.[F.erased] ?? 0) || 0;

/**
 * `d:<topic>`: a dialogue, stage|start|last-start|first-start per stage|counts per stage|channels,
 * and |since-start:rule,rule while stall rules have fired for its current quiet spell; then, only when
 * the dialogue has signals, |name!count,name:count (`!` open, `:` closed; the 7th part empty when
 * nothing fired), so a dialogue without signals is as short as before.
 */
export const DIALOGUE_PREFIX = 'd:';

/**
 * `t:<name>`: an identify trait the site allow-listed (contract/raw-event.ts TRAIT_LIMITS), one
 * field each rather than one field for all: a field stays within the listpack's 64 bytes by the
 * record's own bounds, where all of a person's traits together would not (32 of up to 63 bytes).
 * The value carries its type in its first character: `s` string, `n` number, `t` true, `f` false.
 */
export const TRAIT_PREFIX = 't:';

export function encodeTrait(v: TraitValue): string {
  return typeof v === 'string' ? `s${v}` : typeof v === 'number' ? `n${v}` : v ? 't' : 'f';
}

/** Undefined for a value no fold wrote (the trait is then shown as absent, not guessed at). */
export function decodeTrait(s: string): TraitValue | undefined {
  switch (s[0]) {
    case 's':
      return s.slice(1);
    case 'n': {
      const n = Number(s.slice(1));
      return s.length > 1 && Number.isFinite(n) ? n : undefined;
    }
    case 't':
      return s.length === 1 ? true : undefined;
    case 'f':
      return s.length === 1 ? false : undefined;
    default:
      return undefined;
  }
}

/** A person's traits from their fields, by name (a Map: a trait named like an Object member is just a trait). */
export function decodeTraits(f: Fields): Map<string, TraitValue> {
  const m = new Map<string, TraitValue>();
  for (const [k, v] of Object.entries(f)) {
    if (!k.startsWith(TRAIT_PREFIX)) continue;
    const value = decodeTrait(v);
    if (value !== undefined) m.set(k.slice(TRAIT_PREFIX.length), value);
  }
  return m;
}

/** `x:<partition>`: transitions written but not yet published by that partition's worker (Redis: a hash of its own). */
export const OUTBOX_PREFIX = 'x:';

/**
 * The outbox field of one partition. Each partition has one owner at a time, which writes, then
 * publishes, then clears its own outbox before committing; whatever it finds there on reading was
 * left by a predecessor that died before publishing, and is published again.
 */
export const outboxField = (partition: string) => `${OUTBOX_PREFIX}${partition}`;

const b36 = (n: number) => Math.round(n).toString(36);
const un36 = (s: string) => (s === '' ? 0 : parseInt(s, 36));

export function encodeDialogue(d: Dialogue): string {
  const firsts = d.first.map((f) => (f === 0 ? '' : b36(f - d.start))).join(',');
  const base = `${d.stage}|${b36(d.start)}|${b36(d.last - d.start)}|${firsts}|${d.counts.join(',')}|${d.channels.join(',')}`;
  // A marker of an earlier spell means nothing any more: it is not written.
  const fired = d.fired && d.fired.since === d.last && d.fired.rules.length > 0 ? `|${b36(d.fired.since - d.start)}:${d.fired.rules.join(',')}` : '';
  if (!d.signals?.length) return base + fired;
  return `${base}${fired || '|'}|${d.signals.map((x) => `${x.name}${x.open ? '!' : ':'}${x.count}`).join(',')}`;
}

function decodeSignals(s: string): SignalCount[] {
  const out: SignalCount[] = [];
  for (const part of s.split(',')) {
    const at = part.search(/[!:]/);
    if (at <= 0) continue;
    out.push({ name: part.slice(0, at), open: part[at] === '!', count: Number(part.slice(at + 1)) || 0 });
  }
  return out;
}

export function decodeDialogue(s: string): Dialogue {
  const [stage = '0', start36 = '', last36 = '', firsts = '', counts = '', channels = '', fired, signals] = s.split('|');
  const start = un36(start36);
  const d: Dialogue = {
    stage: Number(stage),
    start,
    last: start + un36(last36),
    first: firsts.split(',').map((f) => (f === '' ? 0 : start + un36(f))),
    counts: counts.split(',').map(Number),
    channels: channels === '' ? [] : channels.split(','),
  };
  if (fired) {
    const colon = fired.indexOf(':');
    d.fired = { since: start + un36(fired.slice(0, colon)), rules: fired.slice(colon + 1).split(',') };
  }
  if (signals) d.signals = decodeSignals(signals);
  return d;
}

/**
 * `a:<audience>`: the person is in that audience since the value (epoch ms, base 36;
 * history/automation/evaluate.ts). One field each, like traits: all of a person's memberships in
 * one value would pass the listpack's 64 bytes with three or four audiences.
 */
export const AUDIENCE_PREFIX = 'a:';

/** Audience memberships from a person's fields: name -> when entered. */
export function decodeMemberships(f: Fields | null | undefined): Map<string, number> {
  const m = new Map<string, number>();
  if (!f) return m;
  for (const [k, v] of Object.entries(f)) if (k.startsWith(AUDIENCE_PREFIX)) m.set(k.slice(AUDIENCE_PREFIX.length), un36(v));
  return m;
}

export const encodeMembership = (at: number): string => b36(at);

/** The first purchase comes last: a value written before it was kept still decodes (first = last). */
export function encodeRfm(r: Rfm): string {
  return `${b36(r.last)}|${r.count}|${r.total}|${b36(r.first)}`;
}

export function decodeRfm(s: string): Rfm {
  const [last = '', count = '0', total = '0', first] = s.split('|');
  const l = un36(last);
  return { first: first === undefined ? l : un36(first), last: l, count: Number(count), total: Number(total) };
}

export function decodeOffsets(s: string | undefined): Map<string, number> {
  const m = new Map<string, number>();
  if (!s) return m;
  for (const part of s.split(';')) {
    const eq = part.lastIndexOf('=');
    if (eq > 0) m.set(part.slice(0, eq), Number(part.slice(eq + 1)));
  }
  return m;
}

export function encodeOffsets(m: Map<string, number>): string {
  return [...m].map(([p, o]) => `${p}=${o}`).join(';');
}

export function decodeState(f: Fields): PersonState {
  const dialogues = new Map<string, Dialogue>();
  const traits = new Map<string, TraitValue>();
  for (const [k, v] of Object.entries(f)) {
    if (k.startsWith(DIALOGUE_PREFIX)) dialogues.set(k.slice(DIALOGUE_PREFIX.length), decodeDialogue(v));
    else if (k.startsWith(TRAIT_PREFIX)) {
      const value = decodeTrait(v);
      if (value !== undefined) traits.set(k.slice(TRAIT_PREFIX.length), value);
    }
  }
  const rfm = f[F.rfm];
  return { dialogues, seen: decodeSeen(f[F.seen]), rfm: rfm ? decodeRfm(rfm) : null, traits };
}

/** Comma-separated id lists (linked visitors). */
export function decodeList(s: string | undefined): string[] {
  return s ? s.split(',') : [];
}

export function encodeSeen(seen: readonly string[]): string {
  return seen.join('');
}

export function decodeSeen(s: string | undefined): string[] {
  const out: string[] = [];
  if (!s) return out;
  for (let i = 0; i + FINGERPRINT_WIDTH <= s.length; i += FINGERPRINT_WIDTH) out.push(s.slice(i, i + FINGERPRINT_WIDTH));
  return out;
}
