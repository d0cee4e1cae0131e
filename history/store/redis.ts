import { randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { foldBatchWith, type CrossSellStep, type FieldBackend, type FoldOutcome, type TrendStep } from '../fold/fold-batch.js';
import { DEFAULT_FOLLOWER_CAPACITY, topFollowers, type FollowerCounts, type Followers } from '../crm/cross-sell.js';
import type { Transition } from '../../contract/transition.js';
import { DEFAULT_TREND_RETENTION, oldestKept, type Granularity } from '../crm/trends.js';
import type { Dialogue, FoldOptions, Rfm } from '../fold/fold.js';
import { decodeModel, encodeModel, type CrmModel } from '../crm/model.js';
import type { Automation } from '../fold/automation.js';
import type { AutomationWrite, BatchRecord, IndexEntry, PersonPlan } from '../fold/person-batch.js';
import { DEFAULT_RETENTION, tombstoneMs } from '../../lib/retention.js';
import { DIALOGUE_PREFIX, decodeDialogue, decodeList, decodeRfm, F, outboxField, type Fields } from '../fold/codec.js';
import { hourWindow } from './hour-counts.js';
import { compareRanked, floorOf, lastOf, rankScore } from './rank-key.js';
import {
  ADMIT,
  CLEAR_DUE,
  CLEAR_OUTBOX,
  CROSS_SELL,
  ERASE_FROM_TOPIC,
  ERASE_ID,
  FORGET_RECENT,
  HOURS_SUM,
  INDEX,
  LEASE,
  LUA_SLICE,
  MARK,
  NEEDS_PAGE,
  SEAL,
  STALLED,
  TREND,
  WRITE_IF_VERSION,
} from './redis-scripts.js';
import {
  CROSS_SELL_BUYERS,
  ERASE_MARKER_SECONDS,
  keys,
  MAX_OPEN_LISTINGS,
  RECENT_TRANSITIONS,
  type NeedsPageQuery,
  type NeedsPageResult,
  type RankedEntry,
  type RelatedCount,
  type AdmitCaps,
  type Admission,
  type AutomationEntry,
  type AutomationSet,
  type ErasedPerson,
  type HistoryStore,
  type StageMember,
  type TimeWindow,
} from './store.js';
import { hasHistory, personView, type PersonView } from './views.js';

/**
 * A person's history is one small hash that Redis keeps as a listpack (every value under 64
 * bytes). What could grow past that lives in keys of its own in the same hash-tag slot: the recent
 * event fingerprints (expiring), the linked visitor ids, and the per-partition outbox. A hash that
 * once held a long value stays a (much larger) hashtable, so these must never enter it. The
 * scripts are in redis-scripts.ts.
 */

type Client = (Redis | Cluster) & {
  clickfoldWrite(
    h: string,
    seen: string,
    linked: string,
    outbox: string,
    tombstone: string,
    expectVersion: string,
    expectErased: string,
    seenTtl: string,
    partition: string,
    ...fieldValues: string[]
  ): Promise<number>;
  clickfoldSeal(h: string, seen: string, linked: string, tombstone: string, person: string, expectErased: string): Promise<number>;
  clickfoldMark(h: string, tombstone: string, person: string, expectVersion: string, expectErased: string): Promise<number>;
  clickfoldClearOutbox(outbox: string, partition: string, value: string): Promise<number>;
  clickfoldAdmit(set: string, cap: string, ...members: string[]): Promise<number[]>;
  clickfoldClearDue(due: string, ...personTime: string[]): Promise<number>;
  clickfoldLease(lease: string, owner: string, ms: string): Promise<number>;
  clickfoldTrend(counters: string, oldest: string, span: string, stages: string, ...bucketStageBy: string[]): Promise<number>;
  clickfoldForgetRecent(list: string, ...ids: string[]): Promise<number>;
  clickfoldCrossSell(counters: string, capacity: string, buyers: string, ...followers: string[]): Promise<number>;
  clickfoldEraseId(
    h: string,
    seen: string,
    linked: string,
    outbox: string,
    tombstone: string,
    at: string,
    ttl: string,
    mode: string,
  ): Promise<(string | number)[]>;
};

/**
 * Scripts whose key count is the ladder's (its stage indexes, plus the erase marker), defined once
 * per count: on a cluster, ioredis routes a command by its first argument, which must be a key, so
 * the key count cannot be passed as an argument.
 */
type TopicScript = (...keysThenArgs: string[]) => Promise<number>;
type Pipeline = ReturnType<Redis['pipeline']> & Client;

export class RedisHistoryStore implements HistoryStore {
  private readonly redis: Client;
  private readonly backend: FieldBackend;
  private readonly indexScript: string;
  private readonly eraseFromTopicScript: string;
  private readonly needsPageScript: string;
  private readonly hoursSumScript: string;
  private automationInForce: Automation | null = null;
  /** The fold's clock: no record fires a stall before it says so (tests inject one). */
  clock: () => number = Date.now;

  constructor(
    redis: Redis | Cluster,
    readonly options: FoldOptions,
    /** Key prefix: replays build into a fresh namespace, then switch over. */
    private readonly ns = '',
    /** How long a person's recent event fingerprints are kept after their last event. */
    private readonly seenTtlSeconds = 86_400,
    /** How long an erased id's tombstone is kept: longer than any raw record it covers (lib/retention.ts). */
    private readonly tombstoneTtlSeconds = Math.ceil(tombstoneMs(DEFAULT_RETENTION) / 1000),
  ) {
    if (!('clickfoldWrite' in redis)) {
      redis.defineCommand('clickfoldWrite', { numberOfKeys: 5, lua: WRITE_IF_VERSION });
      redis.defineCommand('clickfoldSeal', { numberOfKeys: 4, lua: SEAL });
      redis.defineCommand('clickfoldMark', { numberOfKeys: 2, lua: MARK });
      redis.defineCommand('clickfoldClearOutbox', { numberOfKeys: 1, lua: CLEAR_OUTBOX });
      redis.defineCommand('clickfoldAdmit', { numberOfKeys: 1, lua: ADMIT });
      redis.defineCommand('clickfoldEraseId', { numberOfKeys: 5, lua: ERASE_ID });
      redis.defineCommand('clickfoldClearDue', { numberOfKeys: 1, lua: CLEAR_DUE });
      redis.defineCommand('clickfoldLease', { numberOfKeys: 1, lua: LEASE });
    }
    if (!('clickfoldTrend' in redis)) {
      redis.defineCommand('clickfoldTrend', { numberOfKeys: 1, lua: TREND });
      redis.defineCommand('clickfoldForgetRecent', { numberOfKeys: 1, lua: FORGET_RECENT });
    }
    if (!('clickfoldCrossSell' in redis)) redis.defineCommand('clickfoldCrossSell', { numberOfKeys: 1, lua: CROSS_SELL });
    // The erase marker, the ladder's stage indexes, the topic's open listings; for the index update and
    // the erase also the topic's hour counters.
    const topicKeys = 2 + options.ladder.length;
    const countedKeys = topicKeys + 1;
    this.indexScript = `clickfoldIndexC${countedKeys}`;
    this.eraseFromTopicScript = `clickfoldEraseFromTopicC${countedKeys}`;
    this.needsPageScript = `clickfoldNeedsPage${topicKeys}`;
    if (!(this.indexScript in redis)) redis.defineCommand(this.indexScript, { numberOfKeys: countedKeys, lua: INDEX });
    if (!(this.eraseFromTopicScript in redis)) redis.defineCommand(this.eraseFromTopicScript, { numberOfKeys: countedKeys, lua: ERASE_FROM_TOPIC });
    if (!(this.needsPageScript in redis)) redis.defineCommand(this.needsPageScript, { numberOfKeys: topicKeys, lua: NEEDS_PAGE });
    this.hoursSumScript = 'clickfoldHoursSum';
    if (!(this.hoursSumScript in redis)) redis.defineCommand(this.hoursSumScript, { numberOfKeys: 1, lua: HOURS_SUM });
    this.redis = redis as Client;
    const k = (p: string) => this.keysOf(p);
    const ttl = String(this.seenTtlSeconds);
    this.backend = {
      read: async (persons, partition) => {
        const p = this.pipeline();
        for (const person of persons) {
          const x = k(person);
          p.hgetall(x.h).get(x.seen).get(x.linked).hget(x.outbox, partition).get(x.tombstone);
        }
        const r = await exec<Fields | string | null>(p);
        return persons.map((_, i) => {
          const f = r[5 * i] as Fields;
          const [seen, linked, outbox, tombstone] = r.slice(5 * i + 1, 5 * i + 5) as (string | null)[];
          if (seen) f[F.seen] = seen;
          if (linked) f[F.linked] = linked;
          if (outbox) f[outboxField(partition)] = outbox;
          if (tombstone) f[F.erased] = tombstone;
          return Object.keys(f).length ? f : null;
        });
      },
      write: async (plans: PersonPlan[], partition: string) => {
        const p = this.pipeline();
        for (const plan of plans) {
          const x = k(plan.person);
          p.clickfoldWrite(
            x.h,
            x.seen,
            x.linked,
            x.outbox,
            x.tombstone,
            String(plan.expectVersion),
            String(plan.expectErased),
            ttl,
            partition,
            String(plan.del.length),
            ...plan.del,
            ...Object.entries(plan.set).flat(),
          );
        }
        return (await exec<number>(p)).map((r) => r === 1);
      },
      mark: async (items) => {
        const p = this.pipeline();
        for (const { person, visitor, expectVersion, expectErased } of items) {
          const x = k(visitor);
          p.clickfoldMark(x.h, x.tombstone, person, String(expectVersion), String(expectErased));
        }
        return (await exec<number>(p)).map((r) => r === 1);
      },
      seal: async (pairs) => {
        const p = this.pipeline();
        for (const { person, visitor, expectErased } of pairs) {
          const x = k(visitor);
          p.clickfoldSeal(x.h, x.seen, x.linked, x.tombstone, person, String(expectErased));
        }
        await exec(p);
      },
      index: (entries) => this.updateIndex(entries),
      automate: (writes) => this.automate(writes),
      trend: (step) => this.trendStep(step),
      crossSell: (step) => this.crossSellStep(step),
      // A person erased since its write may be added back here: sampling drops ids without RFM inputs.
      purchasers: async (people) => {
        await this.redis.zadd(keys.purchasers(this.ns), ...people.flatMap(({ person, last }) => [String(last), person]));
      },
      clearOutbox: async (items, partition) => {
        const p = this.pipeline();
        for (const { person, value } of items) p.clickfoldClearOutbox(k(person).outbox, partition, value);
        await exec(p);
      },
    };
  }

  /** The keys of one person, all in the person's hash-tag slot. */
  private keysOf(p: string) {
    return {
      h: keys.person(this.ns, p),
      seen: keys.seen(this.ns, p),
      linked: keys.linked(this.ns, p),
      outbox: keys.outbox(this.ns, p),
      tombstone: keys.tombstone(this.ns, p),
    };
  }

  /**
   * A pipeline on one Redis; on a cluster, where a pipeline may only touch one node, the same
   * commands sent at once and grouped per node by ioredis (autopipelining), with the same
   * `exec()` result shape.
   */
  private pipeline(): Pipeline {
    if (!this.redis.isCluster) return this.redis.pipeline() as Pipeline;
    const client = this.redis as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const pending: Promise<unknown>[] = [];
    const batch: Pipeline = new Proxy({} as Pipeline, {
      get: (_, name: string) => {
        if (name === 'exec') {
          return async () => (await Promise.allSettled(pending)).map((r) => (r.status === 'fulfilled' ? [null, r.value] : [r.reason as Error, null]));
        }
        return (...args: unknown[]) => {
          pending.push(client[name]!(...args));
          return batch;
        };
      },
    });
    return batch;
  }

  foldBatch(partition: string, records: readonly BatchRecord[], publishedBelow?: number): Promise<FoldOutcome> {
    return foldBatchWith(this.backend, partition, records, this.options, publishedBelow, this.automationInForce, this.clock);
  }

  setAutomation(a: Automation | null): void {
    this.automationInForce = a;
  }

  automation(): Automation | null {
    return this.automationInForce;
  }

  /** The script that writes one person's entries in `n` stalled sets of a topic (one per key count, as the index's). */
  private stalledScript(n: number): string {
    const name = `clickfoldStalled${n + 1}`;
    if (!(name in this.redis)) this.redis.defineCommand(name, { numberOfKeys: n + 1, lua: STALLED });
    return name;
  }

  /** Rules whose stalled sets an entry touches: those it names, or for a removal every rule of the automation. */
  private stalledWrites(e: IndexEntry): [string, string][] {
    if (e.stage < 0) return (this.automationInForce?.stallRules ?? []).map((r) => [r.name, '']);
    return [...(e.stalled ?? []).map((x): [string, string] => [x.rule, String(x.at)]), ...(e.unstalled ?? []).map((r): [string, string] => [r, ''])];
  }

  /**
   * Audience sets and the sweeper's queue. The sets are in their own slots, away from the person's
   * tombstone, so an erase is guarded after the fact: the tombstone is read once the joins are in,
   * and an id erased since the write saw it is taken out again (the erase takes it out of every set
   * after writing its tombstone, so one of the two always sees the other).
   */
  private async automate(writes: AutomationWrite[]): Promise<void> {
    const p = this.pipeline();
    const due = keys.due(this.ns);
    const joined: AutomationWrite[] = [];
    for (const w of writes) {
      for (const name of w.leave) p.zrem(keys.audienceMembers(this.ns, name), w.person);
      for (const { audience, at } of w.join) p.zadd(keys.audienceMembers(this.ns, audience), String(at), w.person);
      if (w.join.length > 0 || w.due !== null) joined.push(w);
      if (w.due !== null) {
        if (w.exact) p.zadd(due, String(w.due), w.person);
        else p.zadd(due, 'LT', String(w.due), w.person);
      }
    }
    await exec(p);
    if (joined.length === 0) return;
    const check = this.pipeline();
    for (const w of joined) check.get(keys.tombstone(this.ns, w.person));
    const tombs = await exec<string | null>(check);
    const undo = this.pipeline();
    let n = 0;
    joined.forEach((w, i) => {
      if (Number(tombs[i] ?? 0) <= w.erased) return;
      for (const { audience } of w.join) undo.zrem(keys.audienceMembers(this.ns, audience), w.person);
      undo.zrem(due, w.person);
      n++;
    });
    if (n > 0) await exec(undo);
  }

  /**
   * One script per topic and granularity in the topic's slot (TREND), and the latest transitions
   * pushed onto their capped list. The list is away from the people's tombstones, so, as for the
   * audience sets, an erase is guarded after the fact: the tombstones are read once the push is in,
   * and an id erased since its write was read is taken out again (the erase takes its ids out after
   * writing their tombstones, so one of the two always sees the other).
   */
  private async trendStep(step: TrendStep): Promise<void> {
    const ladder = this.options.ladder;
    const groups = new Map<string, { key: string; g: Granularity; args: string[] }>();
    for (const i of step.increments) {
      const stage = ladder.indexOf(i.stage);
      if (stage < 0) continue;
      const key = keys.trend(this.ns, i.topic, i.granularity === 'hour' ? 'h' : 'd');
      let group = groups.get(key);
      if (!group) groups.set(key, (group = { key, g: i.granularity, args: [] }));
      group.args.push(String(i.bucket), String(stage), String(i.by));
    }
    const p = this.pipeline();
    for (const { key, g, args } of groups.values()) {
      const span = g === 'hour' ? DEFAULT_TREND_RETENTION.hours : DEFAULT_TREND_RETENTION.days;
      p.clickfoldTrend(key, String(oldestKept(g, step.now, DEFAULT_TREND_RETENTION)), String(span), String(ladder.length), ...args);
    }
    const list = keys.recentTransitions(this.ns);
    const recent = step.recent.slice(-RECENT_TRANSITIONS);
    if (recent.length > 0) {
      p.lpush(list, ...recent.map((r) => JSON.stringify(r.event)));
      p.ltrim(list, 0, RECENT_TRANSITIONS - 1);
    }
    await exec(p);
    if (recent.length === 0) return;
    const persons = [...new Set(recent.map((r) => r.event.person))];
    const check = this.pipeline();
    for (const person of persons) check.get(keys.tombstone(this.ns, person));
    const tombs = new Map((await exec<string | null>(check)).map((t, i) => [persons[i]!, Number(t ?? 0)]));
    const gone = [...new Set(recent.filter((r) => tombs.get(r.event.person)! > r.erased).map((r) => r.event.person))];
    if (gone.length > 0) await this.redis.clickfoldForgetRecent(list, ...gone);
  }

  async trend(topic: string, by: Granularity, from: number, to: number): Promise<number[][]> {
    const width = this.options.ladder.length;
    if (to < from) return [];
    const fields: string[] = [];
    for (let b = from; b <= to; b++) fields.push(String(b));
    const values = await this.redis.hmget(keys.trend(this.ns, topic, by === 'hour' ? 'h' : 'd'), ...fields);
    return values.map((v) => {
      const counts = v === null ? [] : v.split(',').map(Number);
      return Array.from({ length: width }, (_, s) => counts[s] ?? 0);
    });
  }

  async recentTransitions(limit: number): Promise<Transition[]> {
    if (limit <= 0) return [];
    return (await this.redis.lrange(keys.recentTransitions(this.ns), 0, limit - 1)).map((v) => JSON.parse(v) as Transition);
  }

  /** One script per topic bought or followed, in the topic's slot (CROSS_SELL). */
  private async crossSellStep(step: CrossSellStep): Promise<void> {
    const p = this.pipeline();
    for (const { topic, buyers, followers } of step.topics) {
      p.clickfoldCrossSell(keys.crossSell(this.ns, topic), String(DEFAULT_FOLLOWER_CAPACITY), String(buyers), ...followers);
    }
    await exec(p);
  }

  async crossSell(topics: readonly string[]): Promise<FollowerCounts[]> {
    if (topics.length === 0) return [];
    const p = this.pipeline();
    for (const t of topics) p.hgetall(keys.crossSell(this.ns, t));
    return (await exec<Record<string, string>>(p)).map(followerCounts);
  }

  async related(topic: string, limit: number): Promise<RelatedCount[]> {
    return topFollowers(followerCounts(await this.redis.hgetall(keys.crossSell(this.ns, topic))).followers, limit);
  }

  async automationPage(set: AutomationSet, after: AutomationEntry | undefined, limit: number): Promise<AutomationEntry[]> {
    const key = 'audience' in set ? keys.audienceMembers(this.ns, set.audience) : keys.stalled(this.ns, set.topic, set.rule);
    const out: AutomationEntry[] = [];
    // Entries of the cursor's own time that come before it in the order are skipped as they are read.
    for (let offset = 0; out.length < limit; ) {
      const chunk = limit - out.length + 64;
      const r = await this.redis.zrevrangebyscore(key, after ? String(after.at) : '+inf', '-inf', 'WITHSCORES', 'LIMIT', offset, chunk);
      for (let i = 0; i + 1 < r.length && out.length < limit; i += 2) {
        const e = { person: r[i]!, at: Number(r[i + 1]) };
        if (after && e.at === after.at && e.person >= after.person) continue;
        out.push(e);
      }
      if (r.length < 2 * chunk) break;
      offset += chunk;
    }
    return out;
  }

  async automationCount(set: AutomationSet): Promise<number> {
    return this.redis.zcard('audience' in set ? keys.audienceMembers(this.ns, set.audience) : keys.stalled(this.ns, set.topic, set.rule));
  }

  async dropAudience(name: string): Promise<void> {
    await this.redis.del(keys.audienceMembers(this.ns, name));
  }

  async dueTicks(now: number, limit: number): Promise<AutomationEntry[]> {
    const r = await this.redis.zrangebyscore(keys.due(this.ns), '-inf', String(now), 'WITHSCORES', 'LIMIT', 0, limit);
    const out: AutomationEntry[] = [];
    for (let i = 0; i + 1 < r.length; i += 2) out.push({ person: r[i]!, at: Number(r[i + 1]) });
    return out;
  }

  async clearDue(entries: readonly AutomationEntry[]): Promise<void> {
    for (let i = 0; i < entries.length; i += LUA_SLICE / 2) {
      const slice = entries.slice(i, i + LUA_SLICE / 2);
      await this.redis.clickfoldClearDue(keys.due(this.ns), ...slice.flatMap((e) => [e.person, String(e.at)]));
    }
  }

  async sweepLease(owner: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.clickfoldLease(keys.sweepLease(this.ns), owner, String(ttlMs))) === 1;
  }

  async purchasers(limit: number): Promise<{ total: number; sample: { person: string; rfm: Rfm }[] }> {
    const key = keys.purchasers(this.ns);
    const total = await this.redis.zcard(key);
    // ZRANDMEMBER with a positive count answers distinct members, uniformly.
    const ids = total <= limit ? await this.redis.zrange(key, 0, -1) : await this.redis.zrandmember(key, limit);
    const sample: { person: string; rfm: Rfm }[] = [];
    const gone: string[] = [];
    for (let i = 0; i < ids.length; i += 1000) {
      const slice = ids.slice(i, i + 1000);
      const p = this.pipeline();
      for (const person of slice) p.hget(keys.person(this.ns, person), F.rfm);
      const values = await exec<string | null>(p);
      slice.forEach((person, j) => {
        const v = values[j];
        if (v) sample.push({ person, rfm: decodeRfm(v) });
        else gone.push(person);
      });
    }
    if (gone.length > 0) await this.redis.zrem(key, ...gone);
    return { total: total - gone.length, sample };
  }

  async crmModel(): Promise<CrmModel | null> {
    return decodeModel(await this.redis.get(keys.crmModel(this.ns)));
  }

  async setCrmModel(m: CrmModel): Promise<void> {
    await this.redis.set(keys.crmModel(this.ns), encodeModel(m));
  }

  async crmLease(owner: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.clickfoldLease(keys.crmLease(this.ns), owner, String(ttlMs))) === 1;
  }

  /** Admitted members never leave their set, so this process remembers them and asks Redis only about new ones. */
  private readonly admitted = new Set<string>();

  async admit(site: string, topics: readonly string[], caps: AdmitCaps): Promise<Admission> {
    const siteKey = `s\n${site}`;
    const known = (t: string) => this.admitted.has(`t\n${site}\n${t}`);
    const unknown = [...new Set(topics.filter((t) => !known(t)))];
    if (this.admitted.has(siteKey) && unknown.length === 0) return { site: true, topics: topics.map(() => true) };
    if (this.admitted.size >= 100_000) this.admitted.clear();
    if (!this.admitted.has(siteKey)) {
      const [ok] = await this.redis.clickfoldAdmit(keys.sites(this.ns), String(caps.sites), site);
      if (ok !== 1) return { site: false, topics: topics.map(() => false) };
      this.admitted.add(siteKey);
    }
    const answers = new Map<string, boolean>();
    for (let i = 0; i < unknown.length; i += LUA_SLICE) {
      const slice = unknown.slice(i, i + LUA_SLICE);
      const r = await this.redis.clickfoldAdmit(keys.siteTopics(this.ns, site), String(caps.topicsPerSite), ...slice);
      slice.forEach((t, j) => {
        answers.set(t, r[j] === 1);
        if (r[j] === 1) this.admitted.add(`t\n${site}\n${t}`);
      });
    }
    return { site: true, topics: topics.map((t) => answers.get(t) ?? true) };
  }

  private stageKeys(topic: string): string[] {
    return this.options.ladder.map((stage) => keys.stageIndex(this.ns, topic, stage));
  }

  /** The keys of the index update and the erase from a topic, in their scripts' order (all in the topic's slot). */
  private countedKeys(topic: string, person: string): string[] {
    return [keys.erasedFromTopic(this.ns, topic, person), ...this.stageKeys(topic), keys.topicHours(this.ns, topic), keys.listings(this.ns, topic)];
  }

  /** The prefix of a topic's listings' moves keys: the scripts add the listing id (same slot). */
  private movesPrefix(topic: string): string {
    return keys.listingMoves(this.ns, topic, '');
  }

  /**
   * Idempotent, so a crash between the person write and this one heals on redelivery. One script
   * per entry, in the topic's slot, which compares the erase marker (see `erase`).
   */
  private async updateIndex(entries: IndexEntry[]): Promise<void> {
    const stalledOf = entries.map((e) => this.stalledWrites(e));
    // Defined before the pipeline is made: a pipeline knows only the scripts defined when it was made.
    const scripts = stalledOf.map((w) => (w.length > 0 ? this.stalledScript(w.length) : ''));
    const p = this.pipeline();
    const topics = new Set<string>();
    const index = (p as unknown as Record<string, TopicScript>)[this.indexScript]!;
    entries.forEach((e, i) => {
      const ks = this.countedKeys(e.topic, e.person);
      const score = e.stage >= 0 ? rankScore(e.last, e.counts ?? [], e.boost) : 0;
      index.call(p, ...ks, e.person, String(e.stage), String(score), String(e.erased ?? 0), this.movesPrefix(e.topic));
      if (e.stage >= 0) topics.add(e.topic);
      const stalled = stalledOf[i]!;
      if (stalled.length > 0) {
        const script = (p as unknown as Record<string, TopicScript>)[scripts[i]!]!;
        script.call(
          p,
          keys.erasedFromTopic(this.ns, e.topic, e.person),
          ...stalled.map(([rule]) => keys.stalled(this.ns, e.topic, rule)),
          e.person,
          String(e.erased ?? 0),
          ...stalled.map(([, at]) => at),
        );
      }
    });
    if (topics.size > 0) p.sadd(keys.topics(this.ns), ...topics);
    await exec(p);
  }

  private async resolve(person: string): Promise<{ id: string; fields: Fields | null }> {
    const [f] = await this.backend.read([person], '');
    const alias = f?.[F.alias];
    if (alias && alias !== person) {
      const [g] = await this.backend.read([alias], '');
      return { id: alias, fields: g ?? null };
    }
    return { id: person, fields: f ?? null };
  }

  async getPerson(person: string): Promise<PersonView | null> {
    const { id, fields } = await this.resolve(person);
    return hasHistory(fields) ? personView(id, fields, this.options.ladder) : null;
  }

  /**
   * The erase, in this order (see HistoryStore.erase):
   *
   * 1. Per id, one script in the id's slot (ERASE_ID): the tombstone, then the id's history, links,
   *    fingerprints and outbox deleted, answering the topics of its dialogues, the person it points
   *    at and the ids linked to it, which are erased the same way (a worklist, so an id merged or
   *    linked while the erase runs is found at the step that sees it). From the tombstone on, every
   *    write planned before fails its compare-and-set (version and tombstone), so nothing can add to
   *    the history, and the re-read skips the erased records.
   * 2. Per (id, topic) of those dialogues, one script in the topic's slot (ERASE_FROM_TOPIC): the
   *    erase marker, the id out of every stage index and out of the moves of every open needs listing
   *    (a listing reads the live indexes and those moves, so nothing else holds the id). The only index writes
   *    left are those of folds that wrote before step 1 and update the index after it; each does so
   *    in a script in the same slot that compares the marker with the tombstone its write saw (INDEX),
   *    and removes instead of adding. Before step 2 such an update is removed by it; after it, it
   *    removes itself. So once erase() resolves, no index or ranking holds the id, and none will.
   *
   * On Redis Cluster the steps touch one slot each (the id's, the topic's), which is why the marker
   * exists: the index update cannot read the tombstone in another slot.
   */
  async erase(person: string, at: number): Promise<ErasedPerson> {
    const { id } = await this.resolve(person);
    const r = await this.eraseIds([id, person], at, true);
    return { person: id, ids: r.ids, held: r.held };
  }

  async applyErasure(ids: readonly string[], at: number): Promise<void> {
    await this.eraseIds(ids, at, false);
  }

  /**
   * `asked`: an erase asked for now, which follows the ids linked to an erased id, and the person an
   * id of `start` points at (not the person a linked visitor points at: a device shared with someone
   * else does not erase them). Else an erasure on record is applied to exactly `start`.
   */
  private async eraseIds(start: readonly string[], at: number, asked: boolean): Promise<{ ids: string[]; held: boolean }> {
    const done = new Set<string>();
    const fromTopics: { person: string; topic: string }[] = [];
    const requested = new Set(start);
    const outOfSets: [string, string][] = [];
    let held = false;
    let queue = [...start];
    while (queue.length > 0) {
      const round = [...new Set(queue.filter((x) => !done.has(x)))];
      queue = [];
      if (round.length === 0) break;
      const p = this.pipeline();
      for (const x of round) {
        done.add(x);
        const ks = this.keysOf(x);
        p.clickfoldEraseId(ks.h, ks.seen, ks.linked, ks.outbox, ks.tombstone, String(at), String(this.tombstoneTtlSeconds), asked ? '1' : '0');
      }
      const results = await exec<(string | number)[]>(p);
      results.forEach((r, i) => {
        if (Number(r[0]) !== 1) return;
        if (Number(r[1]) === 1) held = true;
        const [alias, linked, memberships, ...topics] = r.slice(2).map(String);
        if (asked) queue.push(...(alias && requested.has(round[i]!) ? [alias] : []), ...decodeList(linked));
        for (const topic of topics) fromTopics.push({ person: round[i]!, topic });
        for (const name of decodeList(memberships)) outOfSets.push([keys.audienceMembers(this.ns, name), round[i]!]);
      });
    }
    await this.eraseFromTopics(fromTopics, at);
    // After the tombstones: an automation write that lands later sees them and takes itself out (automate).
    const p = this.pipeline();
    for (const x of done) p.zrem(keys.due(this.ns), x);
    for (const x of done) p.zrem(keys.purchasers(this.ns), x);
    for (const [key, x] of outOfSets) p.zrem(key, x);
    p.clickfoldForgetRecent(keys.recentTransitions(this.ns), ...done);
    await exec(p);
    return { ids: [...done], held };
  }

  private async eraseFromTopics(entries: { person: string; topic: string }[], at: number): Promise<void> {
    if (entries.length === 0) return;
    const p = this.pipeline();
    const eraseFromTopic = (p as unknown as Record<string, TopicScript>)[this.eraseFromTopicScript]!;
    for (const { person, topic } of entries) {
      const ks = this.countedKeys(topic, person);
      // Out of the moves of open listings too: a listing opened before the erase must not list the id.
      eraseFromTopic.call(p, ...ks, person, String(at), String(ERASE_MARKER_SECONDS), this.movesPrefix(topic));
      // After the marker (same slot, same pipeline): a stalled-set write planned before the erase removes itself.
      for (const rule of this.automationInForce?.stallRules ?? []) p.zrem(keys.stalled(this.ns, topic, rule.name), person);
    }
    await exec(p);
  }

  async topics(): Promise<string[]> {
    return (await this.redis.smembers(keys.topics(this.ns))).sort();
  }

  async hasTopic(topic: string): Promise<boolean> {
    return (await this.redis.sismember(keys.topics(this.ns), topic)) === 1;
  }

  /**
   * Without a window: the stage indexes' sizes (ZCARD). With one: per topic, one script in its slot
   * sums the topic's hour counters in the window's hours (hour-counts.ts, HOURS_SUM), whatever the
   * number of people; the index, ordered by the needs ranking, is not read.
   */
  async stageCounts(topics: readonly string[], window: TimeWindow = {}): Promise<number[][]> {
    const ladder = this.options.ladder;
    if (window.since === undefined && window.until === undefined) {
      const p = this.pipeline();
      for (const topic of topics) for (const key of this.stageKeys(topic)) p.zcard(key);
      const r = await exec<number>(p);
      return topics.map((_, t) => ladder.map((_, s) => Number(r[t * ladder.length + s])));
    }
    const hours = hourWindow(window);
    if (!hours) return topics.map(() => ladder.map(() => 0));
    const bound = (h: number) => (Number.isFinite(h) ? String(h) : '');
    const p = this.pipeline();
    const sum = (p as unknown as Record<string, (...a: string[]) => unknown>)[this.hoursSumScript]!;
    for (const topic of topics) sum.call(p, keys.topicHours(this.ns, topic), bound(hours.from), bound(hours.to), String(ladder.length));
    return (await exec<number[]>(p)).map((r) => r.map(Number));
  }

  /** By last activity, decoded from the index (K >= last: the read starts at K = since). Reads every member active since then. */
  async stageMembers(topic: string, stage: string, since: number, limit: number): Promise<StageMember[]> {
    const r = await this.redis.zrevrangebyscore(keys.stageIndex(this.ns, topic, stage), '+inf', String(floorOf(since)), 'WITHSCORES');
    const out: StageMember[] = [];
    for (let i = 0; i + 1 < r.length; i += 2) {
      const last = lastOf(Number(r[i + 1]));
      if (last >= since) out.push({ person: r[i]!, last });
    }
    return out.sort((a, b) => b.last - a.last || (a.person < b.person ? 1 : a.person > b.person ? -1 : 0)).slice(0, limit);
  }

  async needsPage(q: NeedsPageQuery): Promise<NeedsPageResult | null> {
    const first = !q.listing;
    const id = q.listing?.id ?? randomBytes(16).toString('base64url');
    const now = Date.now();
    const ks = [keys.listings(this.ns, q.topic), keys.listingMoves(this.ns, q.topic, id), ...this.stageKeys(q.topic)];
    const script = (this.redis as unknown as Record<string, (...a: string[]) => Promise<unknown[]>>)[this.needsPageScript]!;
    const r = await script.call(
      this.redis,
      ...ks,
      String(q.from),
      String(q.to),
      String(q.min),
      String(q.limit),
      first ? 'first' : 'next',
      `${id}.${q.from}.${q.to}`,
      String(now + q.ttlSeconds * 1000),
      String(now),
      String(q.listing?.after.score ?? 0),
      q.listing?.after.person ?? '',
      String(MAX_OPEN_LISTINGS),
      this.movesPrefix(q.topic),
    );
    if (Number(r[0]) < 0) return null;
    const all: RankedEntry[] = [];
    for (const flat of r.slice(2) as string[][]) {
      for (let i = 0; i + 1 < flat.length; i += 2) all.push({ person: flat[i]!, score: Number(flat[i + 1]) });
    }
    const after = q.listing?.after;
    const entries = (after ? all.filter((e) => compareRanked(after, e) < 0) : all).sort(compareRanked).slice(0, q.limit);
    return first ? { entries, total: Number(r[0]), listing: Number(r[1]) === 1 ? id : null } : { entries };
  }

  async rfms(persons: readonly string[]): Promise<(Rfm | null)[]> {
    if (persons.length === 0) return [];
    const p = this.pipeline();
    for (const person of persons) p.hget(keys.person(this.ns, person), F.rfm);
    return (await exec<string | null>(p)).map((v) => (v === null ? null : decodeRfm(v)));
  }

  async dialogues(topic: string, persons: readonly string[]): Promise<(Dialogue | null)[]> {
    if (persons.length === 0) return [];
    const p = this.pipeline();
    for (const person of persons) p.hget(keys.person(this.ns, person), DIALOGUE_PREFIX + topic);
    return (await exec<string | null>(p)).map((v) => (v === null ? null : decodeDialogue(v)));
  }

  async close(): Promise<void> {}
}

async function exec<T = unknown>(p: ReturnType<Redis['pipeline']>): Promise<T[]> {
  const results = await p.exec();
  if (!results) throw new Error('redis pipeline was discarded');
  return results.map(([err, value]) => {
    if (err) throw err;
    return value as T;
  });
}

/** A `keys.crossSell` hash as the counters it holds (an absent key: none). */
function followerCounts(hash: Record<string, string>): FollowerCounts {
  const followers: Followers = new Map();
  let buyers = 0;
  for (const [field, value] of Object.entries(hash)) {
    if (field === CROSS_SELL_BUYERS) {
      buyers = Number(value);
      continue;
    }
    const [count, error] = value.split(',');
    followers.set(field, { count: Number(count), error: Number(error ?? 0) });
  }
  return { buyers, followers };
}
