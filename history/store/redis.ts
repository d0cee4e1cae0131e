import { randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { foldBatchWith, type FieldBackend, type FoldOutcome } from '../fold/fold-batch.js';
import type { Dialogue, FoldOptions } from '../fold/fold.js';
import type { BatchRecord, IndexEntry, PersonPlan } from '../fold/person-batch.js';
import { DIALOGUE_PREFIX, decodeDialogue, decodeList, F, outboxField, type Fields } from '../fold/codec.js';
import { ADMIT, CLEAR_OUTBOX, LUA_SLICE, MARK, SEAL, WRITE_IF_VERSION } from './redis-scripts.js';
import { keys, type AdmitCaps, type Admission, type HistoryStore, type StageMember, type TimeWindow } from './store.js';
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
    expectVersion: string,
    seenTtl: string,
    partition: string,
    ...fieldValues: string[]
  ): Promise<number>;
  clickfoldSeal(h: string, seen: string, linked: string, person: string): Promise<number>;
  clickfoldMark(h: string, person: string, expectVersion: string): Promise<number>;
  clickfoldClearOutbox(outbox: string, partition: string, value: string): Promise<number>;
  clickfoldAdmit(set: string, cap: string, ...members: string[]): Promise<number[]>;
};
type Pipeline = ReturnType<Redis['pipeline']> & Client;

export class RedisHistoryStore implements HistoryStore {
  private readonly redis: Client;
  private readonly backend: FieldBackend;

  constructor(
    redis: Redis | Cluster,
    readonly options: FoldOptions,
    /** Key prefix: replays build into a fresh namespace, then switch over. */
    private readonly ns = '',
    /** How long a person's recent event fingerprints are kept after their last event. */
    private readonly seenTtlSeconds = 86_400,
  ) {
    if (!('clickfoldWrite' in redis)) {
      redis.defineCommand('clickfoldWrite', { numberOfKeys: 4, lua: WRITE_IF_VERSION });
      redis.defineCommand('clickfoldSeal', { numberOfKeys: 3, lua: SEAL });
      redis.defineCommand('clickfoldMark', { numberOfKeys: 1, lua: MARK });
      redis.defineCommand('clickfoldClearOutbox', { numberOfKeys: 1, lua: CLEAR_OUTBOX });
      redis.defineCommand('clickfoldAdmit', { numberOfKeys: 1, lua: ADMIT });
    }
    this.redis = redis as Client;
    const k = (p: string) => ({
      h: keys.person(this.ns, p),
      seen: keys.seen(this.ns, p),
      linked: keys.linked(this.ns, p),
      outbox: keys.outbox(this.ns, p),
    });
    const ttl = String(this.seenTtlSeconds);
    this.backend = {
      read: async (persons, partition) => {
        const p = this.pipeline();
        for (const person of persons) {
          const x = k(person);
          p.hgetall(x.h).get(x.seen).get(x.linked).hget(x.outbox, partition);
        }
        const r = await exec<Fields | string | null>(p);
        return persons.map((_, i) => {
          const f = r[4 * i] as Fields;
          const [seen, linked, outbox] = r.slice(4 * i + 1, 4 * i + 4) as (string | null)[];
          if (seen) f[F.seen] = seen;
          if (linked) f[F.linked] = linked;
          if (outbox) f[outboxField(partition)] = outbox;
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
            String(plan.expectVersion),
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
        for (const { person, visitor, expectVersion } of items) p.clickfoldMark(k(visitor).h, person, String(expectVersion));
        return (await exec<number>(p)).map((r) => r === 1);
      },
      seal: async (pairs) => {
        const p = this.pipeline();
        for (const { person, visitor } of pairs) {
          const x = k(visitor);
          p.clickfoldSeal(x.h, x.seen, x.linked, person);
        }
        await exec(p);
      },
      index: (entries) => this.updateIndex(entries),
      clearOutbox: async (items, partition) => {
        const p = this.pipeline();
        for (const { person, value } of items) p.clickfoldClearOutbox(k(person).outbox, partition, value);
        await exec(p);
      },
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
    return foldBatchWith(this.backend, partition, records, this.options, publishedBelow);
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

  /** Idempotent, so a crash between the person write and this one heals on redelivery. */
  private async updateIndex(entries: IndexEntry[]): Promise<void> {
    const ladder = this.options.ladder;
    const p = this.pipeline();
    const topics = new Set<string>();
    for (const e of entries) {
      ladder.forEach((stage, s) => {
        if (s !== e.stage) p.zrem(keys.stageIndex(this.ns, e.topic, stage), e.person);
      });
      if (e.stage >= 0) {
        p.zadd(keys.stageIndex(this.ns, e.topic, ladder[e.stage]!), e.last, e.person);
        topics.add(e.topic);
      }
    }
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

  async erase(person: string): Promise<boolean> {
    const { id, fields } = await this.resolve(person);
    if (!fields) return false;
    const ids = [id, ...decodeList(fields[F.linked])];
    const topics = Object.keys(fields)
      .filter((k) => k.startsWith(DIALOGUE_PREFIX))
      .map((k) => k.slice(DIALOGUE_PREFIX.length));
    await this.updateIndex(ids.flatMap((p) => topics.map((topic) => ({ person: p, topic, stage: -1, last: 0 }))));
    const p = this.pipeline();
    for (const x of ids) p.del(keys.person(this.ns, x), keys.seen(this.ns, x), keys.linked(this.ns, x), keys.outbox(this.ns, x));
    await exec(p);
    return true;
  }

  async topics(): Promise<string[]> {
    return (await this.redis.smembers(keys.topics(this.ns))).sort();
  }

  async hasTopic(topic: string): Promise<boolean> {
    return (await this.redis.sismember(keys.topics(this.ns), topic)) === 1;
  }

  async stageCounts(topics: readonly string[], window: TimeWindow = {}): Promise<number[][]> {
    const ladder = this.options.ladder;
    const min = window.since === undefined ? '-inf' : String(window.since);
    const max = window.until === undefined ? '+inf' : String(window.until);
    const whole = window.since === undefined && window.until === undefined;
    const p = this.pipeline();
    for (const topic of topics) {
      for (const stage of ladder) {
        const key = keys.stageIndex(this.ns, topic, stage);
        if (whole) p.zcard(key);
        else p.zcount(key, min, max);
      }
    }
    const r = await exec<number>(p);
    return topics.map((_, t) => ladder.map((_, s) => Number(r[t * ladder.length + s])));
  }

  async stageMembers(topic: string, stage: string, since: number, limit: number): Promise<StageMember[]> {
    const r = await this.redis.zrevrangebyscore(keys.stageIndex(this.ns, topic, stage), '+inf', String(since), 'WITHSCORES', 'LIMIT', 0, limit);
    const out: StageMember[] = [];
    for (let i = 0; i + 1 < r.length; i += 2) out.push({ person: r[i]!, last: Number(r[i + 1]) });
    return out;
  }

  async dialogues(topic: string, persons: readonly string[]): Promise<(Dialogue | null)[]> {
    if (persons.length === 0) return [];
    const p = this.pipeline();
    for (const person of persons) p.hget(keys.person(this.ns, person), DIALOGUE_PREFIX + topic);
    return (await exec<string | null>(p)).map((v) => (v === null ? null : decodeDialogue(v)));
  }

  async saveRanking(topic: string, persons: readonly string[], ttlSeconds: number): Promise<string> {
    const id = randomBytes(16).toString('base64url');
    const key = keys.ranking(this.ns, topic, id);
    const p = this.pipeline();
    for (let i = 0; i < persons.length; i += 1000) p.rpush(key, ...persons.slice(i, i + 1000));
    p.expire(key, ttlSeconds);
    await exec(p);
    return id;
  }

  async readRanking(topic: string, id: string, offset: number, count: number, ttlSeconds: number): Promise<{ persons: string[]; total: number } | null> {
    const key = keys.ranking(this.ns, topic, id);
    const p = this.pipeline();
    p.lrange(key, offset, offset + count - 1)
      .llen(key)
      .expire(key, ttlSeconds);
    const [persons, total] = (await exec<string[] | number>(p)) as [string[], number];
    return total === 0 ? null : { persons, total };
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
