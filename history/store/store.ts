import type { FoldOutcome } from '../fold/fold-batch.js';
import type { Automation } from '../fold/automation.js';
import type { Dialogue, FoldOptions, Rfm } from '../fold/fold.js';
import type { CrmModel } from '../crm/model.js';
import type { BatchRecord } from '../fold/person-batch.js';
import type { PersonView } from './views.js';
import type { Transition } from '../../contract/transition.js';
import type { Granularity } from '../crm/trends.js';
import type { FollowerCounts } from '../crm/cross-sell.js';

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
   * stage-index entries and places in open needs listings. Each id keeps only a tombstone (`erased at`):
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
   * or with a window only those whose last activity lies in the whole UTC hours the window touches:
   * [since's hour start, until's hour end] (hour-counts.ts countedWindow), exact to the hour. Read from
   * counters per stage and hour kept with the index, at any size; since after until counts nobody.
   */
  stageCounts(topics: readonly string[], window?: TimeWindow): Promise<number[][]>;
  /** Members of one stage index with last activity at or after `since`, most recent first (equal times: reverse id order, as Redis), at most `limit`. */
  stageMembers(topic: string, stage: string, since: number, limit: number): Promise<StageMember[]>;
  /** The current dialogue about `topic` of each person (canonical ids, as the indexes hold them), or null. */
  dialogues(topic: string, persons: readonly string[]): Promise<(Dialogue | null)[]>;
  /** The RFM inputs of each person (canonical ids), or null: one field each, for the rows of a page (their lifetime value). */
  rfms(persons: readonly string[]): Promise<(Rfm | null)[]>;
  /**
   * One page of a topic's needs ranking: the people of stage indexes [from, to) whose index score
   * (rank-key.ts) is at least `min`, best first. The first page (no `listing`) answers the total and,
   * when more people follow, opens a listing that lives `ttlSeconds`: the ranking as it stood at that
   * instant. A later page names the listing and the last entry it gave, and answers the entries after
   * it in that ranking: everyone keeps the place they had when the listing opened, also if they moved
   * since (their score then is kept for the listing when they move), so no page repeats or skips
   * anyone. People who entered the stages since are not in it (they are in the next listing); people
   * who left them are (with their dialogue read, the caller sees they left). An erase takes its people
   * out of every index and listing. null: the listing expired or never was.
   */
  needsPage(q: NeedsPageQuery): Promise<NeedsPageResult | null>;
  /**
   * Transitions into each stage of a topic per UTC hour or day (history/crm/trends.ts buckets),
   * buckets `from` to `to` inclusive, each the counts in ladder order (zeros where none). Counted by
   * the fold's trend step from new transitions only; buckets past the retention
   * (DEFAULT_TREND_RETENTION at the fold's clock) are pruned by it.
   */
  trend(topic: string, by: Granularity, from: number, to: number): Promise<number[][]>;
  /** The latest stage transitions folded (at most RECENT_TRANSITIONS, the latest folded first), none of an erased id. */
  recentTransitions(limit: number): Promise<Transition[]>;
  /**
   * Cross-selling (history/crm/cross-sell.ts): each topic's purchases and the topics bought after
   * it (at most DEFAULT_FOLLOWER_CAPACITY, Space-Saving), as the fold's cross-selling step counted
   * them; a topic never bought answers no buyers and no followers.
   */
  crossSell(topics: readonly string[]): Promise<FollowerCounts[]>;
  /** The topics most bought after `topic`, best first (equal counts: by name), at most `limit`. */
  related(topic: string, limit: number): Promise<RelatedCount[]>;

  // Stalls and audiences (history/automation/): what the fold keeps for them, and the sweeper's queue.

  /** The stall rules and audiences every later fold applies (the registry sets them as definitions change). */
  setAutomation(a: Automation | null): void;
  /** The rules and audiences in force, or null when there are none. */
  automation(): Automation | null;
  /**
   * One page of an automation set, most recent first (equal times: greater id first); `after`: the
   * last entry of the previous page. Entries are kept by the fold's index step, so a page may hold
   * someone who moved on a moment ago: callers read the dialogue when it matters.
   */
  automationPage(set: AutomationSet, after: AutomationEntry | undefined, limit: number): Promise<AutomationEntry[]>;
  /** How many entries the set holds. */
  automationCount(set: AutomationSet): Promise<number>;
  /** Removes an audience's whole member set (the audience was deleted). */
  dropAudience(name: string): Promise<void>;
  /**
   * People whose stalls or audiences may change at or before `now` with no new event (at most
   * `limit`, earliest first), with the time each was queued for: the sweeper sends them a tick.
   */
  dueTicks(now: number, limit: number): Promise<AutomationEntry[]>;
  /** Takes the given entries out of the queue, each only if it is still queued for the same time (a fold since may have queued it anew). */
  clearDue(entries: readonly AutomationEntry[]): Promise<void>;
  /** Takes or renews the sweep lease for `owner` (one sweeper at a time; another takes over when it lapses). */
  sweepLease(owner: string, ttlMs: number): Promise<boolean>;

  // The CRM model (history/crm/model.ts), computed by the worker's model job (history/worker/crm-model.ts).

  /**
   * Up to `limit` of the purchasers the fold recorded (all of them when fewer, else a uniform random
   * sample) with their RFM inputs, and how many there are. An id that holds none any more (merged
   * into another person, erased) is taken out of the set and left out.
   */
  purchasers(limit: number): Promise<{ total: number; sample: { person: string; rfm: Rfm }[] }>;
  /** The model in force, or null before the first one. */
  crmModel(): Promise<CrmModel | null>;
  setCrmModel(m: CrmModel): Promise<void>;
  /** As `sweepLease`, for the model job. */
  crmLease(owner: string, ttlMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/** The audience members' set (score: when they entered) or one topic's dialogues stalled by one rule (score: when they stalled). */
export type AutomationSet = { audience: string } | { topic: string; rule: string };

export interface AutomationEntry {
  person: string;
  /** Epoch ms: entered, stalled, or queued for. */
  at: number;
}

export interface RelatedCount {
  topic: string;
  /** Purchases of it after one of `topic` (Space-Saving: at most `error` too many). */
  count: number;
  error: number;
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

export interface RankedEntry {
  person: string;
  /** The index score (rank-key.ts): the needs ranking, last activity and weighted interactions in one number. */
  score: number;
}

export interface NeedsPageQuery {
  topic: string;
  /** Stage indexes [from, to) (ladder positions). */
  from: number;
  to: number;
  /** Only entries scoring at least this (rank-key.ts floorOf). */
  min: number;
  limit: number;
  /** How long a listing opened by this first page lives (the store's own clock, as key expiry). */
  ttlSeconds: number;
  /** A later page: the listing (from the first page) and the last entry already given. */
  listing?: { id: string; after: RankedEntry } | undefined;
}

export interface NeedsPageResult {
  entries: RankedEntry[];
  /** First page: how many people the whole listing holds. */
  total?: number;
  /** First page: the listing opened for the next pages, or null when this page holds everyone. */
  listing?: string | null;
}

/**
 * Open listings per topic: each one makes the index update of a person who moves record their old
 * score once more (the first move per listing and person; later ones cost a no-op ZADD NX), so past
 * this many the oldest is closed (its cursors answer "expired"). A dashboard that reloads the first
 * page on every transition opens one listing per reload: the cap bounds what that costs the fold.
 */
export const MAX_OPEN_LISTINGS = 16;

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

/** How many of the latest transitions a store keeps for the dashboard's "Happening now" at load. */
export const RECENT_TRANSITIONS = 50;

/** The field of `keys.crossSell` that counts the topic's purchases: braces, so that no topic can be named so. */
export const CROSS_SELL_BUYERS = '{n}';

/** Key layout, shared by every component that touches Redis. The `{...}` hash tag keeps a person's keys in one cluster slot. */
export const keys = {
  person: (ns: string, person: string) => `${ns}h:{${person}}`,
  /** Recent event fingerprints; expires, since client retries come within minutes. */
  seen: (ns: string, person: string) => `${ns}r:{${person}}`,
  /** Visitor ids merged into the person. */
  linked: (ns: string, person: string) => `${ns}l:{${person}}`,
  /** Transitions written but not yet published, per partition; normally absent. */
  outbox: (ns: string, person: string) => `${ns}x:{${person}}`,
  /** People at one stage of a topic, scored by the needs ranking (rank-key.ts), which also holds their last activity. */
  stageIndex: (ns: string, topic: string, stage: string) => `${ns}ix:{${topic}}:${stage}`,
  /** The members of the topic's stage indexes counted by stage and hour of last activity (hour-counts.ts): hour · stages + stage -> count. Kept by the index update. */
  topicHours: (ns: string, topic: string) => `${ns}ih:{${topic}}`,
  /**
   * An open needs listing: the people who moved since it opened, with the score they had then
   * (+inf: not in the listing's stages then). Expires with the listing.
   */
  listingMoves: (ns: string, topic: string, id: string) => `${ns}nq:{${topic}}:${id}`,
  /** A topic's open listings: members `id.from.to`, scored by when they expire (epoch ms). Same slot as the indexes. */
  listings: (ns: string, topic: string) => `${ns}nqs:{${topic}}`,
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
  /**
   * A topic's transitions per stage and UTC hour (`h`) or day (`d`), history/crm/trends.ts: field
   * bucket -> counts in ladder order, comma-separated; field `p` the oldest bucket kept (the step
   * prunes what falls behind it). Same slot as the topic's indexes.
   */
  trend: (ns: string, topic: string, by: 'h' | 'd') => `${ns}tr:{${topic}}:${by}`,
  /**
   * A topic's cross-selling counters (history/crm/cross-sell.ts): field CROSS_SELL_BUYERS its
   * purchases; every other field a topic bought after it -> `count` or `count,error` (Space-Saving,
   * at most DEFAULT_FOLLOWER_CAPACITY of them). Same slot as the topic's indexes.
   */
  crossSell: (ns: string, topic: string) => `${ns}xs:{${topic}}`,
  /** The latest transitions folded, as JSON, newest first, capped at RECENT_TRANSITIONS. */
  recentTransitions: (ns: string) => `${ns}rtx`,
  topics: (ns: string) => `${ns}topics`,
  /** People whose stalls or audiences change with time: person -> when (epoch ms). The sweeper sends them ticks. */
  due: (ns: string) => `${ns}due`,
  /** Who sweeps `due` now (SET NX PX). */
  sweepLease: (ns: string) => `${ns}due:lease`,
  /** People with RFM inputs (purchasers): person -> last purchase (epoch ms). Kept by the fold's purchasers step. */
  purchasers: (ns: string) => `${ns}pu`,
  /** The CRM model in force (history/crm/model.ts), JSON. */
  crmModel: (ns: string) => `${ns}crm`,
  /** Who computes the CRM model now (SET NX PX, as `sweepLease`). */
  crmLease: (ns: string) => `${ns}crm:lease`,
  /** Dialogues of a topic stalled by one rule now: person -> when it stalled. Same slot as the topic's indexes. */
  stalled: (ns: string, topic: string, rule: string) => `${ns}sl:{${topic}}:${rule}`,
  /** An audience's members: person -> when they entered. */
  audienceMembers: (ns: string, audience: string) => `${ns}am:{${audience}}`,
  /** Audience definitions (history/automation/registry.ts): name -> JSON record. */
  audiences: (ns: string) => `${ns}aud`,
  /** Bumped on every change of `audiences`, so pollers read the definitions only when they changed. */
  audiencesVersion: (ns: string) => `${ns}aud:v`,
  /** Sites the worker has admitted (capped). */
  sites: (ns: string) => `${ns}sites`,
  /** Topics a site has created (capped per site); the site is the hash tag. */
  siteTopics: (ns: string, site: string) => `${ns}st:{${site}}`,
};
