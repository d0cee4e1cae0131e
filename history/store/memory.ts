import { randomBytes } from 'node:crypto';
import { DIALOGUE_PREFIX, decodeDialogue, decodeList, type Fields } from '../fold/codec.js';
import { foldBatchWith, type CrossSellStep, type FieldBackend, type FoldOutcome, type TrendStep } from '../fold/fold-batch.js';
import { countFollower, topFollowers, type FollowerCounts } from '../crm/cross-sell.js';
import type { Transition } from '../../contract/transition.js';
import { DEFAULT_TREND_RETENTION, oldestKept, type Granularity } from '../crm/trends.js';
import { openSignalWeight, type Dialogue, type FoldOptions, type Rfm } from '../fold/fold.js';
import type { CrmModel } from '../crm/model.js';
import { decodeRfm, F, OUTBOX_PREFIX, outboxField } from '../fold/codec.js';
import type { Automation } from '../fold/automation.js';
import { sealedFields, type AutomationWrite, type BatchRecord, type IndexEntry, type PersonPlan } from '../fold/person-batch.js';
import { hourOf, moveCount, sumHours } from './hour-counts.js';
import { compareRanked, floorOf, lastOf, rankScore } from './rank-key.js';
import { SortedIndex } from './sorted-index.js';
import {
  MAX_OPEN_LISTINGS,
  RECENT_TRANSITIONS,
  type AdmitCaps,
  type Admission,
  type AutomationEntry,
  type AutomationSet,
  type ErasedPerson,
  type HistoryStore,
  type NeedsPageQuery,
  type NeedsPageResult,
  type RankedEntry,
  type RelatedCount,
  type StageMember,
  type TimeWindow,
} from './store.js';
import { hasHistory, personView, type PersonView } from './views.js';

/**
 * The embedded store for `npm start`: the same fields and the same batch fold as Redis, held in
 * Maps. Single-threaded JavaScript makes each person's write atomic without further ceremony.
 */
export class MemoryHistoryStore implements HistoryStore {
  private readonly people = new Map<string, Fields>();
  /** topic -> stage index -> person -> index score (rank-key.ts: the needs ranking, holding the last activity) */
  private readonly index = new Map<string, Map<number, SortedIndex>>();
  /**
   * topic -> stage index -> hour of last activity -> members (Redis: one `ih:{topic}` per topic, hour-counts.ts),
   * kept with the index in the same synchronous step; derived from the index (`recountHours`), so a
   * snapshot does not carry it.
   */
  private readonly hours = new Map<string, Map<number, Map<number, number>>>();
  /** Topics that ever had a dialogue (Redis: the `topics` set). */
  private readonly topicSet = new Set<string>();
  /** Open needs listings by topic and id (Redis: `nqs:{topic}` and a `nq:{topic}:id` per listing). */
  private readonly listings = new Map<string, Map<string, Listing>>();
  /**
   * Erased ids and when (Redis: the `e:{id}` tombstones). Every write compares an id's tombstone as
   * it compares the version, and the fold skips an id's records received before it. Kept for the
   * life of the process, like everything here (embedded: no raw record outlives it).
   */
  private readonly tombstones = new Map<string, number>();
  private readonly backend: FieldBackend;
  private automationInForce: Automation | null = null;
  /** topic -> rule -> dialogues stalled by it now (Redis: `sl:{topic}:rule`), by when they stalled. */
  private readonly stalledSets = new Map<string, Map<string, SortedIndex>>();
  /** audience -> members by when they entered (Redis: `am:{audience}`). */
  private readonly audienceSets = new Map<string, SortedIndex>();
  /** The sweeper's queue (Redis: `due`), scored by minus the time, so that the earliest comes first. */
  private readonly dueQueue = new SortedIndex();
  private lease: { owner: string; until: number } | null = null;
  /** topic -> granularity -> trend counters (Redis: `tr:{topic}:h` and `:d`). */
  private readonly trends = new Map<string, Map<Granularity, TrendCounters>>();
  /** The latest transitions folded, newest first (Redis: `rtx`). */
  private recent: Transition[] = [];
  /** topic -> its purchases and the topics bought after it (Redis: `xs:{topic}`). */
  private readonly crossSellCounts = new Map<string, FollowerCounts>();
  /** People with RFM inputs by last purchase (Redis: `pu`), and the CRM model (Redis: `crm`). */
  private readonly purchaserSet = new SortedIndex();
  private model: CrmModel | null = null;
  private modelLease: { owner: string; until: number } | null = null;

  constructor(
    readonly options: FoldOptions,
    /** The fold's clock: no record fires a stall before it says so (tests inject one). */
    private readonly clock: () => number = Date.now,
  ) {
    this.backend = {
      read: async (persons) =>
        persons.map((p) => {
          const f = this.people.get(p);
          const erased = this.tombstones.get(p);
          return erased === undefined ? (f ?? null) : { ...f, [F.erased]: String(erased) };
        }),
      write: async (plans) => plans.map((plan) => this.write(plan)),
      mark: async (items) =>
        items.map(({ person, visitor, expectVersion, expectErased }) => {
          const f = this.people.get(visitor);
          if (Number(f?.[F.version] ?? 0) !== expectVersion || this.erasedAt(visitor) !== expectErased) return false;
          this.people.set(visitor, { ...f, [F.alias]: person, [F.version]: String(expectVersion + 1) });
          return true;
        }),
      seal: async (pairs) => {
        for (const { person, visitor, expectErased } of pairs) {
          // An id erased since the merge read it gets no pointer back.
          if (this.erasedAt(visitor) === expectErased) this.people.set(visitor, sealedFields(this.people.get(visitor) ?? {}, person));
        }
      },
      index: async (entries) => {
        for (const e of entries) this.indexOne(e);
      },
      automate: async (writes) => {
        for (const w of writes) this.automateOne(w);
      },
      trend: async (step) => this.trendStep(step),
      crossSell: async (step) => this.crossSellStep(step),
      purchasers: async (people) => {
        // An id erased since its write is not recorded again.
        for (const { person, last } of people) if (this.people.get(person)?.[F.rfm] !== undefined) this.purchaserSet.set(person, last);
      },
      clearOutbox: async (items, partition) => {
        const field = outboxField(partition);
        for (const { person, value } of items) {
          const f = this.people.get(person);
          if (f && f[field] === value) delete f[field];
        }
      },
    };
  }

  private erasedAt(id: string): number {
    return this.tombstones.get(id) ?? 0;
  }

  private write(plan: PersonPlan): boolean {
    const f = this.people.get(plan.person);
    if (Number(f?.[F.version] ?? 0) !== plan.expectVersion || this.erasedAt(plan.person) !== plan.expectErased) return false;
    const next = { ...f, ...plan.set };
    for (const field of plan.del) delete next[field];
    // An empty outbox is a removed one (as in the Redis script).
    for (const [field, value] of Object.entries(plan.set)) if (value === '' && field.startsWith(OUTBOX_PREFIX)) delete next[field];
    this.people.set(plan.person, next);
    return true;
  }

  /** Sites and their topics, as admitted under the caps (Redis: the `sites` and `st:{site}` sets). */
  private readonly siteTopics = new Map<string, Set<string>>();

  async admit(site: string, topics: readonly string[], caps: AdmitCaps): Promise<Admission> {
    let known = this.siteTopics.get(site);
    if (!known) {
      if (this.siteTopics.size >= caps.sites) return { site: false, topics: topics.map(() => false) };
      this.siteTopics.set(site, (known = new Set()));
    }
    const set = known;
    return {
      site: true,
      topics: topics.map((t) => {
        if (set.has(t)) return true;
        if (set.size >= caps.topicsPerSite) return false;
        set.add(t);
        return true;
      }),
    };
  }

  private indexOne(e: IndexEntry): void {
    let stages = this.index.get(e.topic);
    if (!stages) this.index.set(e.topic, (stages = new Map()));
    // A fold that wrote before an erase may update the index after it: the entry goes, it is not added.
    const stage = e.stage >= 0 && this.erasedAt(e.person) > (e.erased ?? 0) ? -1 : e.stage;
    const score = stage >= 0 ? rankScore(e.last, e.counts ?? [], e.boost) : 0;
    let oldStage = -1;
    let oldScore = 0;
    for (const [s, members] of stages) {
      const was = members.score(e.person);
      if (was === undefined) continue;
      oldStage = s;
      oldScore = was;
      if (s !== stage) members.delete(e.person);
    }
    if (oldStage !== stage || oldScore !== score) {
      this.recordMove(e.topic, e.person, oldStage, oldScore, stage);
      // The hour comes from the score, as in the Redis script, so both stores count alike.
      const oldHour = oldStage >= 0 ? hourOf(lastOf(oldScore)) : undefined;
      const newHour = stage >= 0 ? hourOf(lastOf(score)) : undefined;
      if (oldStage === stage) moveCount(this.hoursOf(e.topic, stage), oldHour, newHour);
      else {
        if (oldStage >= 0) moveCount(this.hoursOf(e.topic, oldStage), oldHour, undefined);
        if (stage >= 0) moveCount(this.hoursOf(e.topic, stage), undefined, newHour);
      }
    }
    this.stalledOne(e, stage);
    if (stage < 0) return;
    this.topicSet.add(e.topic);
    let members = stages.get(stage);
    if (!members) stages.set(stage, (members = new SortedIndex()));
    members.set(e.person, score);
  }

  private stalledOne(e: IndexEntry, stage: number): void {
    const rules = this.stalledSets.get(e.topic);
    if (stage < 0) {
      for (const set of rules?.values() ?? []) set.delete(e.person);
      return;
    }
    for (const rule of e.unstalled ?? []) rules?.get(rule)?.delete(e.person);
    for (const { rule, at } of e.stalled ?? []) {
      let byRule = this.stalledSets.get(e.topic);
      if (!byRule) this.stalledSets.set(e.topic, (byRule = new Map()));
      let set = byRule.get(rule);
      if (!set) byRule.set(rule, (set = new SortedIndex()));
      set.set(e.person, at);
    }
  }

  private automateOne(w: AutomationWrite): void {
    // A fold that wrote before an erase may get here after it: the erased id stays out.
    const erased = this.erasedAt(w.person) > w.erased;
    for (const name of w.leave) this.audienceSets.get(name)?.delete(w.person);
    if (erased) {
      for (const set of this.audienceSets.values()) set.delete(w.person);
      this.dueQueue.delete(w.person);
      return;
    }
    for (const { audience, at } of w.join) {
      let set = this.audienceSets.get(audience);
      if (!set) this.audienceSets.set(audience, (set = new SortedIndex()));
      set.set(w.person, at);
    }
    if (w.due === null) return;
    const queued = this.dueQueue.score(w.person);
    if (w.exact || queued === undefined || -w.due > queued) this.dueQueue.set(w.person, -w.due);
  }

  private trendStep(step: TrendStep): void {
    const width = this.options.ladder.length;
    for (const i of step.increments) {
      const stage = this.options.ladder.indexOf(i.stage);
      if (stage < 0) continue;
      let byGranularity = this.trends.get(i.topic);
      if (!byGranularity) this.trends.set(i.topic, (byGranularity = new Map()));
      const oldest = oldestKept(i.granularity, step.now, DEFAULT_TREND_RETENTION);
      let c = byGranularity.get(i.granularity);
      if (!c) byGranularity.set(i.granularity, (c = { kept: oldest, buckets: new Map() }));
      // Only topics written are pruned (as in Redis): a quiet topic's counters wait for its next transition.
      if (c.kept < oldest) {
        for (const b of c.buckets.keys()) if (b < oldest) c.buckets.delete(b);
        c.kept = oldest;
      }
      // A worker with a later clock may have pruned past this bucket already.
      if (i.bucket < c.kept) continue;
      let counts = c.buckets.get(i.bucket);
      if (!counts) c.buckets.set(i.bucket, (counts = new Array<number>(width).fill(0)));
      counts[stage] = (counts[stage] ?? 0) + i.by;
    }
    // An id erased since its write was read stays out of the list (as out of the indexes).
    const fresh = step.recent.filter((r) => this.erasedAt(r.event.person) <= r.erased).map((r) => r.event);
    this.recent = [...fresh.reverse(), ...this.recent].slice(0, RECENT_TRANSITIONS);
  }

  async trend(topic: string, by: Granularity, from: number, to: number): Promise<number[][]> {
    const c = this.trends.get(topic)?.get(by);
    const width = this.options.ladder.length;
    const out: number[][] = [];
    for (let b = from; b <= to; b++) {
      const counts = c && b >= c.kept ? c.buckets.get(b) : undefined;
      out.push(Array.from({ length: width }, (_, s) => counts?.[s] ?? 0));
    }
    return out;
  }

  async recentTransitions(limit: number): Promise<Transition[]> {
    return this.recent.slice(0, limit);
  }

  private crossSellStep(step: CrossSellStep): void {
    for (const { topic, buyers, followers } of step.topics) {
      let c = this.crossSellCounts.get(topic);
      if (!c) this.crossSellCounts.set(topic, (c = { buyers: 0, followers: new Map() }));
      c.buyers += buyers;
      for (const y of followers) countFollower(c.followers, y);
    }
  }

  async crossSell(topics: readonly string[]): Promise<FollowerCounts[]> {
    return topics.map((t) => {
      const c = this.crossSellCounts.get(t);
      // Copies: a caller holding them must not see later folds, nor change the store.
      return { buyers: c?.buyers ?? 0, followers: new Map([...(c?.followers ?? [])].map(([y, x]) => [y, { ...x }])) };
    });
  }

  async related(topic: string, limit: number): Promise<RelatedCount[]> {
    return topFollowers(this.crossSellCounts.get(topic)?.followers, limit);
  }

  setAutomation(a: Automation | null): void {
    this.automationInForce = a;
  }

  automation(): Automation | null {
    return this.automationInForce;
  }

  private setOf(set: AutomationSet): SortedIndex | undefined {
    return 'audience' in set ? this.audienceSets.get(set.audience) : this.stalledSets.get(set.topic)?.get(set.rule);
  }

  async automationPage(set: AutomationSet, after: AutomationEntry | undefined, limit: number): Promise<AutomationEntry[]> {
    const out: AutomationEntry[] = [];
    const members = this.setOf(set);
    if (!members) return out;
    for (const e of members.from(after ? { score: after.at, person: after.person } : undefined)) {
      if (out.length >= limit) break;
      out.push({ person: e.person, at: e.score });
    }
    return out;
  }

  async automationCount(set: AutomationSet): Promise<number> {
    return this.setOf(set)?.size ?? 0;
  }

  async dropAudience(name: string): Promise<void> {
    this.audienceSets.delete(name);
  }

  async dueTicks(now: number, limit: number): Promise<AutomationEntry[]> {
    const out: AutomationEntry[] = [];
    for (const e of this.dueQueue.from(undefined, -now)) {
      if (out.length >= limit) break;
      out.push({ person: e.person, at: -e.score });
    }
    return out;
  }

  async clearDue(entries: readonly AutomationEntry[]): Promise<void> {
    for (const e of entries) if (this.dueQueue.score(e.person) === -e.at) this.dueQueue.delete(e.person);
  }

  async sweepLease(owner: string, ttlMs: number): Promise<boolean> {
    const now = Date.now();
    if (this.lease && this.lease.owner !== owner && this.lease.until > now) return false;
    this.lease = { owner, until: now + ttlMs };
    return true;
  }

  async purchasers(limit: number): Promise<{ total: number; sample: { person: string; rfm: Rfm }[] }> {
    const ids = [...this.purchaserSet.entries()].map(([p]) => p);
    // A partial Fisher-Yates: the first `limit` of a uniform shuffle.
    for (let i = 0; i < Math.min(limit, ids.length - 1); i++) {
      const j = i + Math.floor(Math.random() * (ids.length - i));
      [ids[i], ids[j]] = [ids[j]!, ids[i]!];
    }
    const sample: { person: string; rfm: Rfm }[] = [];
    for (const person of ids.slice(0, limit)) {
      const v = this.people.get(person)?.[F.rfm];
      if (v === undefined) this.purchaserSet.delete(person);
      else sample.push({ person, rfm: decodeRfm(v) });
    }
    return { total: this.purchaserSet.size, sample };
  }

  async crmModel(): Promise<CrmModel | null> {
    return this.model;
  }

  async setCrmModel(m: CrmModel): Promise<void> {
    this.model = m;
  }

  async crmLease(owner: string, ttlMs: number): Promise<boolean> {
    const now = Date.now();
    if (this.modelLease && this.modelLease.owner !== owner && this.modelLease.until > now) return false;
    this.modelLease = { owner, until: now + ttlMs };
    return true;
  }

  private hoursOf(topic: string, stage: number): Map<number, number> {
    let stages = this.hours.get(topic);
    if (!stages) this.hours.set(topic, (stages = new Map()));
    let counters = stages.get(stage);
    if (!counters) stages.set(stage, (counters = new Map()));
    return counters;
  }

  /** The hour counters built again from the stage indexes (after a snapshot is restored). */
  recountHours(): void {
    this.hours.clear();
    for (const [topic, stages] of this.index) {
      for (const [stage, members] of stages) {
        const counters = this.hoursOf(topic, stage);
        for (const [, score] of members.entries()) moveCount(counters, undefined, hourOf(lastOf(score)));
      }
    }
  }

  /** Keeps, for each open listing of the topic, the place a person had when it opened (see NeedsPageQuery). */
  private recordMove(topic: string, person: string, oldStage: number, oldScore: number, stage: number): void {
    const open = this.listings.get(topic);
    if (!open) return;
    const now = Date.now();
    for (const [id, l] of open) {
      // An expired listing goes here (Redis: its keys expire), so its moves stop growing.
      if (l.expires <= now) {
        open.delete(id);
        continue;
      }
      if (l.moves.has(person)) continue;
      const was = oldStage >= l.from && oldStage < l.to;
      if (!was && !(stage >= l.from && stage < l.to)) continue;
      l.moves.set(person, was ? oldScore : Infinity);
      if (was) l.moved.set(person, oldScore);
    }
  }

  foldBatch(partition: string, records: readonly BatchRecord[], publishedBelow?: number): Promise<FoldOutcome> {
    return foldBatchWith(this.backend, partition, records, this.options, publishedBelow, this.automationInForce, this.clock);
  }

  private resolve(person: string): string {
    return this.people.get(person)?.[F.alias] ?? person;
  }

  async getPerson(person: string): Promise<PersonView | null> {
    const id = this.resolve(person);
    const f = this.people.get(id);
    return hasHistory(f) ? personView(id, f, this.options.ladder) : null;
  }

  /** As the Redis store's (its comment gives the order); here each id is one synchronous step. */
  async erase(person: string, at: number): Promise<ErasedPerson> {
    const id = this.resolve(person);
    const done = new Set<string>();
    let held = false;
    const queue = [id, person];
    for (let x = queue.shift(); x !== undefined; x = queue.shift()) {
      if (done.has(x)) continue;
      done.add(x);
      const f = this.eraseId(x, at, true);
      if (f) held = true;
      // The person an id asked for points at, not the one a linked visitor points at (a shared device).
      const alias = f?.[F.alias];
      if (alias && (x === id || x === person)) queue.push(alias);
      queue.push(...decodeList(f?.[F.linked]));
    }
    return { person: id, ids: [...done], held };
  }

  async applyErasure(ids: readonly string[], at: number): Promise<void> {
    for (const x of ids) this.eraseId(x, at, false);
  }

  /** Tombstone, then everything the id holds; answers what it held (null: nothing, or not applied). */
  private eraseId(id: string, at: number, asked: boolean): Fields | null {
    const t = this.erasedAt(id);
    if (!asked && t >= at) return null;
    if (at > t) this.tombstones.set(id, at);
    const f = this.people.get(id) ?? null;
    this.people.delete(id);
    for (const [topic, stages] of this.index) {
      for (const [stage, members] of stages) {
        const score = members.score(id);
        if (score === undefined) continue;
        members.delete(id);
        moveCount(this.hoursOf(topic, stage), hourOf(lastOf(score)), undefined);
      }
    }
    for (const rules of this.stalledSets.values()) for (const set of rules.values()) set.delete(id);
    for (const set of this.audienceSets.values()) set.delete(id);
    this.dueQueue.delete(id);
    this.purchaserSet.delete(id);
    this.recent = this.recent.filter((t) => t.person !== id);
    // Out of every open listing: the others keep their places (a listing is ordered by score, not position).
    for (const open of this.listings.values()) {
      for (const l of open.values()) {
        l.moves.delete(id);
        l.moved.delete(id);
      }
    }
    return f;
  }

  async topics(): Promise<string[]> {
    return [...this.topicSet].sort();
  }

  async hasTopic(topic: string): Promise<boolean> {
    return this.topicSet.has(topic);
  }

  async stageCounts(topics: readonly string[], window: TimeWindow = {}): Promise<number[][]> {
    const whole = window.since === undefined && window.until === undefined;
    return topics.map((topic) =>
      this.options.ladder.map((_, s) => {
        if (whole) return this.index.get(topic)?.get(s)?.size ?? 0;
        const counters = this.hours.get(topic)?.get(s);
        return counters ? sumHours(counters, window) : 0;
      }),
    );
  }

  async stageMembers(topic: string, stage: string, since: number, limit: number): Promise<StageMember[]> {
    const members = this.index.get(topic)?.get(this.options.ladder.indexOf(stage));
    if (!members) return [];
    const out: StageMember[] = [];
    for (const m of members.from(undefined, floorOf(since))) {
      const last = lastOf(m.score);
      if (last >= since) out.push({ person: m.person, last });
    }
    return out.sort((a, b) => b.last - a.last || (a.person < b.person ? 1 : a.person > b.person ? -1 : 0)).slice(0, limit);
  }

  async needsPage(q: NeedsPageQuery): Promise<NeedsPageResult | null> {
    const stages = this.index.get(q.topic);
    const sources: SortedIndex[] = [];
    for (let s = q.from; s < q.to; s++) {
      const members = stages?.get(s);
      if (members) sources.push(members);
    }
    const now = Date.now();
    if (!q.listing) {
      const entries = mergePage(
        sources.map((m) => m.from(undefined, q.min)),
        q.limit,
      );
      const total = sources.reduce((n, m) => n + m.countFrom(q.min), 0);
      let listing: string | null = null;
      if (total > entries.length) {
        let open = this.listings.get(q.topic);
        if (!open) this.listings.set(q.topic, (open = new Map()));
        for (const [id, l] of open) if (l.expires <= now) open.delete(id);
        // Map order is opening order: the oldest goes first.
        while (open.size >= MAX_OPEN_LISTINGS) open.delete(open.keys().next().value!);
        listing = randomBytes(16).toString('base64url');
        open.set(listing, { from: q.from, to: q.to, expires: now + q.ttlSeconds * 1000, moves: new Map(), moved: new SortedIndex() });
      }
      return { entries, total, listing };
    }
    const l = this.listings.get(q.topic)?.get(q.listing.id);
    if (!l || l.expires <= now || l.from !== q.from || l.to !== q.to) return null;
    const after = q.listing.after;
    const unmoved = function* (it: Iterable<RankedEntry>) {
      for (const e of it) if (!l.moves.has(e.person)) yield e;
    };
    const entries = mergePage([...sources.map((m) => unmoved(m.from(after, q.min))), l.moved.from(after, q.min)], q.limit);
    return { entries };
  }

  async rfms(persons: readonly string[]): Promise<(Rfm | null)[]> {
    return persons.map((p) => {
      const v = this.people.get(p)?.[F.rfm];
      return v === undefined ? null : decodeRfm(v);
    });
  }

  async dialogues(topic: string, persons: readonly string[]): Promise<(Dialogue | null)[]> {
    return persons.map((p) => {
      const v = this.people.get(p)?.[DIALOGUE_PREFIX + topic];
      return v === undefined ? null : decodeDialogue(v);
    });
  }

  /**
   * The maps a snapshot of the embedded mode saves and restores (memory-snapshot.ts), live: read
   * them synchronously. Open needs listings are left out (they expire within minutes).
   */
  state() {
    return {
      people: this.people,
      index: this.index,
      topics: this.topicSet,
      siteTopics: this.siteTopics,
      tombstones: this.tombstones,
      stalled: this.stalledSets,
      audiences: this.audienceSets,
      due: this.dueQueue,
      trends: this.trends,
      crossSell: this.crossSellCounts,
      purchasers: this.purchaserSet,
      crmModel: {
        get: () => this.model,
        set: (m: CrmModel | null) => {
          this.model = m;
        },
      },
      recent: {
        get: () => this.recent,
        set: (list: Transition[]) => {
          this.recent = list.slice(0, RECENT_TRANSITIONS);
        },
      },
    };
  }

  /** The stage indexes built again from the histories (a snapshot of an older format kept other scores). */
  rebuildIndex(): void {
    this.index.clear();
    this.hours.clear();
    for (const [person, f] of this.people) {
      if (f[F.alias]) continue;
      for (const [field, value] of Object.entries(f)) {
        if (!field.startsWith(DIALOGUE_PREFIX)) continue;
        const d = decodeDialogue(value);
        const boost = openSignalWeight(d, this.options.signals);
        this.indexOne({ person, topic: field.slice(DIALOGUE_PREFIX.length), stage: d.stage, last: d.last, counts: d.counts, ...(boost ? { boost } : {}) });
      }
    }
  }

  /** Every key the store holds for tests that check erase leaves nothing behind (but the tombstones, listed apart); `indexed`: stage indexes and open listings. */
  dump(): { people: string[]; indexed: string[]; erased: string[] } {
    const indexed = new Set<string>();
    for (const stages of this.index.values()) for (const members of stages.values()) for (const [p] of members.entries()) indexed.add(p);
    for (const open of this.listings.values()) for (const l of open.values()) for (const p of l.moves.keys()) indexed.add(p);
    for (const rules of this.stalledSets.values()) for (const set of rules.values()) for (const [p] of set.entries()) indexed.add(p);
    for (const set of this.audienceSets.values()) for (const [p] of set.entries()) indexed.add(p);
    for (const [p] of this.dueQueue.entries()) indexed.add(p);
    return { people: [...this.people.keys()], indexed: [...indexed], erased: [...this.tombstones.keys()] };
  }

  async close(): Promise<void> {}
}

/** One topic's trend counters at one granularity: bucket -> counts in ladder order. */
export interface TrendCounters {
  /** The oldest bucket kept: older ones were pruned, and a late increment to one is dropped. */
  kept: number;
  buckets: Map<number, number[]>;
}

interface Listing {
  /** The stages it lists, [from, to). */
  from: number;
  to: number;
  /** epoch ms (this process's clock). */
  expires: number;
  /** People who moved since it opened: their score then (Infinity: not in its stages then). */
  moves: Map<string, number>;
  /** The same, those who were in it, by their score then. */
  moved: SortedIndex;
}

/** The first `limit` entries, in index order, of sources each already in index order. */
function mergePage(sources: Iterable<RankedEntry>[], limit: number): RankedEntry[] {
  const all: RankedEntry[] = [];
  for (const source of sources) {
    let n = 0;
    for (const e of source) {
      if (n++ >= limit) break;
      all.push(e);
    }
  }
  return all.sort(compareRanked).slice(0, limit);
}
