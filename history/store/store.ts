import type { FoldOutcome } from '../fold/fold-batch.js';
import type { Dialogue, FoldOptions } from '../fold/fold.js';
import type { BatchRecord } from '../fold/person-batch.js';
import type { PersonView } from './views.js';

/**
 * Where folded histories live. Two implementations, one contract suite:
 * `RedisHistoryStore` (real stack) and `MemoryHistoryStore` (embedded `npm start`).
 */
export interface HistoryStore {
  readonly options: FoldOptions;
  /**
   * Folds one consumed batch from one partition. Atomic per person, idempotent per record offset
   * (a redelivered record is skipped) and per event id (a client retry counts once). Resolves only
   * once the result is durable in the store, with the transitions to publish; call `published()`
   * once they are. `publishedBelow`: the consumed batch's first offset (see foldBatchWith).
   */
  foldBatch(partition: string, records: readonly BatchRecord[], publishedBelow?: number): Promise<FoldOutcome>;
  /**
   * Admits `site` into the set of known sites (at most `caps.sites`) and each of `topics` into the
   * site's known topics (at most `caps.topicsPerSite`). Known members are always admitted; a new one
   * only while its set has room. What a sender can mint is bounded by these two caps.
   */
  admit(site: string, topics: readonly string[], caps: AdmitCaps): Promise<Admission>;
  /** A person's history; a visitor id merged into a known person answers with that person. */
  getPerson(person: string): Promise<PersonView | null>;
  /**
   * Erases, as of `at` (epoch ms), the person `person` names (a visitor merged into a known person
   * names that person) and every id linked to them: their history, links, fingerprints, outbox,
   * stage-index entries and places in saved rankings. Each id keeps only a tombstone (`erased at`):
   * the fold skips its records received at or before `at` for good, and every write compares the
   * tombstone, so a fold that read the person before the erase cannot write them back. Records
   * received later fold as a new history. Tombstones are written also for an id the store holds
   * nothing of (its records may still be on their way). The order of the steps, and why it leaves
   * no window in which an index or a write brings an erased id back: history/store/redis.ts `erase`.
   */
  erase(person: string, at: number): Promise<ErasedPerson>;
  /**
   * Applies an erasure already on record (`history.erasures`: a replay into a fresh namespace, a
   * worker that follows the topic): each of `ids` whose tombstone is older than `at` is erased as
   * above, without following links (the record lists them all); an id erased at or after `at` is
   * left alone, so a history begun after the erasure stays.
   */
  applyErasure(ids: readonly string[], at: number): Promise<void>;

  // Queries of the marketers' API (history/query-api.ts). All of them read the stage indexes or a
  // few named hashes; none scans the people.

  /** Every topic that ever had a dialogue (the `topics` set), sorted. */
  topics(): Promise<string[]>;
  /** Whether `topic` ever had a dialogue. */
  hasTopic(topic: string): Promise<boolean>;
  /**
   * For each topic, the number of people per stage (ladder order): the members of each stage index,
   * or with a window only those whose last activity (the index score) lies in [since, until], ms.
   */
  stageCounts(topics: readonly string[], window?: TimeWindow): Promise<number[][]>;
  /** Members of one stage index with last activity at or after `since`, most recent first (equal times: reverse id order, as Redis), at most `limit`. */
  stageMembers(topic: string, stage: string, since: number, limit: number): Promise<StageMember[]>;
  /** The current dialogue about `topic` of each person (canonical ids, as the indexes hold them), or null. */
  dialogues(topic: string, persons: readonly string[]): Promise<(Dialogue | null)[]>;
  /**
   * Keeps a ranked list of people (a page-through snapshot of a query) for `ttlSeconds`; returns its
   * id. Lives with the topic (its hash tag), so paging a list never sees a person twice or misses one.
   */
  saveRanking(topic: string, persons: readonly string[], ttlSeconds: number): Promise<string>;
  /**
   * A slice of a saved ranking and its length, or null once it expired. Reading does not renew it: a
   * saved ranking lives `ttlSeconds` from its saving. An erase takes its people out of it, leaving
   * their places (left out of the slice, counted in the length), so later pages shift nobody.
   */
  readRanking(topic: string, id: string, offset: number, count: number): Promise<{ persons: string[]; total: number } | null>;
  close(): Promise<void>;
}

/** What an erase did. */
export interface ErasedPerson {
  /** The person `person` named (itself, or the known person a merged visitor points at). */
  person: string;
  /** Every id erased: the one asked for, the person, the ids linked to them. */
  ids: string[];
  /** Whether the store held anything of them (a history, a link, a pointer). */
  held: boolean;
}

export interface AdmitCaps {
  sites: number;
  topicsPerSite: number;
}

export interface Admission {
  site: boolean;
  /** Per topic, in order; all false when the site was refused. */
  topics: boolean[];
}

/** Inclusive bounds in epoch ms; either may be absent. */
export interface TimeWindow {
  since?: number | undefined;
  until?: number | undefined;
}

export interface StageMember {
  person: string;
  /** Last activity, epoch ms (the index score). */
  last: number;
}

/**
 * How long an erase marker (`keys.erasedFromTopic`) lives: far longer than any index update still in
 * flight from before the erase (a batch's fold and index update take milliseconds; a worker stalled
 * longer lost its partition and its transaction long before).
 */
export const ERASE_MARKER_SECONDS = 3600;

/** Ranking ids are random: 128 bits, URL-safe. */
export const RANKING_ID = /^[A-Za-z0-9_-]{22}$/;

export const DEFAULT_SEEN_SIZE = 32;

/** Key layout, shared by every component that touches Redis. The `{...}` hash tag keeps a person's keys in one cluster slot. */
export const keys = {
  person: (ns: string, person: string) => `${ns}h:{${person}}`,
  /** Recent event fingerprints; expires, since client retries come within minutes. */
  seen: (ns: string, person: string) => `${ns}r:{${person}}`,
  /** Visitor ids merged into the person. */
  linked: (ns: string, person: string) => `${ns}l:{${person}}`,
  /** Transitions written but not yet published, per partition; normally absent. */
  outbox: (ns: string, person: string) => `${ns}x:{${person}}`,
  stageIndex: (ns: string, topic: string, stage: string) => `${ns}ix:{${topic}}:${stage}`,
  /** A saved ranking of a needs query (a list of person ids), paged through by cursor; expires. */
  ranking: (ns: string, topic: string, id: string) => `${ns}nq:{${topic}}:${id}`,
  /** The ids of a topic's saved rankings, so that an erase finds them (same slot as the rankings). */
  rankings: (ns: string, topic: string) => `${ns}nqs:{${topic}}`,
  /**
   * An erased id's tombstone: when it was erased (epoch ms). In the person's slot, so the fold's
   * compare-and-set reads it atomically with the history; expires once no raw record it covers can
   * exist any more (lib/retention.ts tombstoneMs).
   */
  tombstone: (ns: string, person: string) => `${ns}e:{${person}}`,
  /**
   * The same erasure, as the stage indexes of one topic see it (their slot): an index update planned
   * before the erase finds it and removes instead of adding. Expires after ERASE_MARKER_SECONDS.
   */
  erasedFromTopic: (ns: string, topic: string, person: string) => `${ns}ie:{${topic}}:${person}`,
  topics: (ns: string) => `${ns}topics`,
  /** Sites the worker has admitted (capped). */
  sites: (ns: string) => `${ns}sites`,
  /** Topics a site has created (capped per site); the site is the hash tag. */
  siteTopics: (ns: string, site: string) => `${ns}st:{${site}}`,
};
