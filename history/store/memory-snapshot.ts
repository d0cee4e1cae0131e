import type { Transition } from '../../contract/transition.js';
import type { Granularity } from '../crm/trends.js';
import type { Fields } from '../fold/codec.js';
import type { MemoryHistoryStore } from './memory.js';
import type { CrmModel } from '../crm/model.js';
import { SortedIndex } from './sorted-index.js';

/**
 * The in-memory store as lines of JSON, for the snapshots of `npm start` with a data directory
 * (lib/log-durable.ts writes them with the consumer groups' offsets of the same instant): every
 * id's fields (histories, links, RFM inputs, fingerprints, offsets, outboxes), the stage indexes,
 * the topics, the sites' admitted topics, the tombstones of erased ids, and what stalls and audiences
 * keep (stalled sets, audience members, the sweeper's queue), the trend counters, the latest
 * transitions and the cross-selling counters, the purchasers and the CRM model (lines a snapshot before them lacks: it restores with none). Saved rankings are not
 * kept: they expire within minutes. One line per id keeps a line small and a snapshot streamable.
 */
const FORMAT = 2;
/** Format 1 kept the last activity in the index lines: the index is built again from the histories. */
const REBUILD_INDEX_FROM = 1;
/** Index members per line (person, index score: rank-key.ts). */
const MEMBERS_PER_LINE = 10_000;

type Line =
  | ['store', number]
  | ['p', string, Fields]
  | ['i', string, number, (string | number)[]]
  | ['t', string[]]
  | ['s', string, string[]]
  | ['e', string, number]
  | ['sl', string, string, (string | number)[]]
  | ['am', string, (string | number)[]]
  | ['due', (string | number)[]]
  /** A topic's trend counters at one granularity: the oldest bucket kept, then bucket, counts, bucket, counts... */
  | ['tr', string, Granularity, number, (number | number[])[]]
  | ['rt', Transition[]]
  /** A topic's cross-selling counters: its purchases, then follower, count, error, follower, count, error... */
  | ['xs', string, number, (string | number)[]]
  /** Purchasers (person, last purchase, ...), and the CRM model (history/crm/model.ts). */
  | ['pu', (string | number)[]]
  | ['crm', CrmModel];

/** Read synchronously, all at once: the snapshot must not see a write half done. */
export function* storeLines(store: MemoryHistoryStore): Generator<string> {
  const s = store.state();
  const line = (l: Line) => JSON.stringify(l);
  yield line(['store', FORMAT]);
  for (const [id, fields] of s.people) yield line(['p', id, fields]);
  for (const [topic, stages] of s.index) {
    for (const [stage, members] of stages) {
      let flat: (string | number)[] = [];
      for (const [person, score] of members.entries()) {
        flat.push(person, score);
        if (flat.length >= 2 * MEMBERS_PER_LINE) {
          yield line(['i', topic, stage, flat]);
          flat = [];
        }
      }
      if (flat.length > 0) yield line(['i', topic, stage, flat]);
    }
  }
  yield line(['t', [...s.topics]]);
  for (const [site, topics] of s.siteTopics) yield line(['s', site, [...topics]]);
  for (const [id, at] of s.tombstones) yield line(['e', id, at]);
  for (const [topic, rules] of s.stalled) for (const [rule, set] of rules) for (const flat of chunks(set)) yield line(['sl', topic, rule, flat]);
  for (const [name, set] of s.audiences) for (const flat of chunks(set)) yield line(['am', name, flat]);
  for (const flat of chunks(s.due)) yield line(['due', flat]);
  for (const [topic, byGranularity] of s.trends) {
    for (const [g, c] of byGranularity) yield line(['tr', topic, g, c.kept, [...c.buckets].flat()]);
  }
  const recent = s.recent.get();
  if (recent.length > 0) yield line(['rt', recent]);
  for (const [topic, c] of s.crossSell) yield line(['xs', topic, c.buyers, [...c.followers].flatMap(([y, x]) => [y, x.count, x.error])]);
  for (const flat of chunks(s.purchasers)) yield line(['pu', flat]);
  const model = s.crmModel.get();
  if (model) yield line(['crm', model]);
}

function* chunks(set: SortedIndex): Generator<(string | number)[]> {
  let flat: (string | number)[] = [];
  for (const [person, score] of set.entries()) {
    flat.push(person, score);
    if (flat.length >= 2 * MEMBERS_PER_LINE) {
      yield flat;
      flat = [];
    }
  }
  if (flat.length > 0) yield flat;
}

function fill(set: SortedIndex, flat: (string | number)[]): void {
  for (let i = 0; i < flat.length; i += 2) set.set(flat[i] as string, flat[i + 1] as number);
}

/** Replaces the store's content with a snapshot's (before anything folds into it). */
export function restoreStore(store: MemoryHistoryStore, lines: readonly string[]): { people: number } {
  const s = store.state();
  s.people.clear();
  s.index.clear();
  s.topics.clear();
  s.siteTopics.clear();
  s.tombstones.clear();
  s.stalled.clear();
  s.audiences.clear();
  for (const [p] of [...s.due.entries()]) s.due.delete(p);
  s.trends.clear();
  s.crossSell.clear();
  s.recent.set([]);
  for (const [p] of [...s.purchasers.entries()]) s.purchasers.delete(p);
  s.crmModel.set(null);
  let rebuild = false;
  lines.forEach((text, n) => {
    const l = JSON.parse(text) as Line;
    switch (l[0]) {
      case 'store':
        if (l[1] === REBUILD_INDEX_FROM) rebuild = true;
        else if (l[1] !== FORMAT) throw new Error(`the snapshot's store format ${l[1]} is not ${FORMAT} (written by another version of clickfold)`);
        break;
      case 'p':
        s.people.set(l[1], l[2]);
        break;
      case 'i': {
        if (rebuild) break;
        let stages = s.index.get(l[1]);
        if (!stages) s.index.set(l[1], (stages = new Map()));
        let members = stages.get(l[2]);
        if (!members) stages.set(l[2], (members = new SortedIndex()));
        const flat = l[3];
        for (let i = 0; i < flat.length; i += 2) members.set(flat[i] as string, flat[i + 1] as number);
        break;
      }
      case 't':
        for (const t of l[1]) s.topics.add(t);
        break;
      case 's':
        s.siteTopics.set(l[1], new Set(l[2]));
        break;
      case 'e':
        s.tombstones.set(l[1], l[2]);
        break;
      case 'sl': {
        let rules = s.stalled.get(l[1]);
        if (!rules) s.stalled.set(l[1], (rules = new Map()));
        let set = rules.get(l[2]);
        if (!set) rules.set(l[2], (set = new SortedIndex()));
        fill(set, l[3]);
        break;
      }
      case 'am': {
        let set = s.audiences.get(l[1]);
        if (!set) s.audiences.set(l[1], (set = new SortedIndex()));
        fill(set, l[2]);
        break;
      }
      case 'due':
        fill(s.due, l[1]);
        break;
      case 'tr': {
        let byGranularity = s.trends.get(l[1]);
        if (!byGranularity) s.trends.set(l[1], (byGranularity = new Map()));
        const buckets = new Map<number, number[]>();
        const flat = l[4];
        for (let i = 0; i + 1 < flat.length; i += 2) buckets.set(flat[i] as number, flat[i + 1] as number[]);
        byGranularity.set(l[2], { kept: l[3], buckets });
        break;
      }
      case 'rt':
        s.recent.set(l[1]);
        break;
      case 'xs': {
        const followers = new Map<string, { count: number; error: number }>();
        const flat = l[3];
        for (let i = 0; i + 2 < flat.length; i += 3) followers.set(flat[i] as string, { count: flat[i + 1] as number, error: flat[i + 2] as number });
        s.crossSell.set(l[1], { buyers: l[2], followers });
        break;
      }
      case 'pu':
        fill(s.purchasers, l[1]);
        break;
      case 'crm':
        s.crmModel.set(l[1]);
        break;
      default:
        throw new Error(`snapshot line ${n + 1}: unknown kind ${JSON.stringify((l as unknown[])[0])}`);
    }
  });
  if (rebuild) store.rebuildIndex();
  else store.recountHours();
  return { people: s.people.size };
}
