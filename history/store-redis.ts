import type { Cluster, Redis } from 'ioredis';
import type { Fields } from './codec.js';
import { foldBatchWith, type FieldBackend, type FoldOutcome } from './fold-batch.js';
import type { FoldOptions } from './fold.js';
import { F, type BatchRecord, type IndexEntry, type PersonPlan } from './person-batch.js';
import { DIALOGUE_PREFIX, decodeList } from './codec.js';
import { keys, type HistoryStore } from './store.js';
import { hasHistory, personView, type PersonView } from './views.js';

/**
 * Compare-and-set on the person's version: the write lands only if nobody else (a zombie worker
 * after a rebalance) wrote since we read. One key per call, so it runs unchanged on Redis Cluster.
 */
const WRITE_IF_VERSION = `
local v = redis.call('HGET', KEYS[1], 'v')
if (v or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
`;

/** Leaves a merged visitor as a pointer to its person (keeping offsets), history removed. */
const SEAL = `
local f = redis.call('HGETALL', KEYS[1])
local o = nil
local v = 0
for i = 1, #f, 2 do
  if f[i] == 'o' then o = f[i + 1] elseif f[i] == 'v' then v = tonumber(f[i + 1]) end
end
redis.call('DEL', KEYS[1])
if o then redis.call('HSET', KEYS[1], 'o', o) end
redis.call('HSET', KEYS[1], 'u', ARGV[1], 'v', tostring(v + 1))
return 1
`;

const CLEAR_OUTBOX = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
`;

type Client = (Redis | Cluster) & {
  clickfoldWrite(key: string, expectVersion: string, ...fieldValues: string[]): Promise<number>;
  clickfoldSeal(key: string, person: string): Promise<number>;
  clickfoldClearOutbox(key: string, field: string, value: string): Promise<number>;
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
  ) {
    if (!('clickfoldWrite' in redis)) {
      redis.defineCommand('clickfoldWrite', { numberOfKeys: 1, lua: WRITE_IF_VERSION });
      redis.defineCommand('clickfoldSeal', { numberOfKeys: 1, lua: SEAL });
      redis.defineCommand('clickfoldClearOutbox', { numberOfKeys: 1, lua: CLEAR_OUTBOX });
    }
    this.redis = redis as Client;
    const key = (p: string) => keys.person(this.ns, p);
    this.backend = {
      read: async (persons) => {
        const p = this.pipeline();
        for (const person of persons) p.hgetall(key(person));
        return (await exec<Fields>(p)).map((f) => (Object.keys(f).length ? f : null));
      },
      write: async (plans: PersonPlan[]) => {
        const p = this.pipeline();
        for (const plan of plans) p.clickfoldWrite(key(plan.person), String(plan.expectVersion), ...Object.entries(plan.set).flat());
        return (await exec<number>(p)).map((r) => r === 1);
      },
      seal: async (pairs) => {
        const p = this.pipeline();
        for (const { person, visitor } of pairs) p.clickfoldSeal(key(visitor), person);
        await exec(p);
      },
      index: (entries) => this.updateIndex(entries),
      clearOutbox: async (items) => {
        const p = this.pipeline();
        for (const { person, field, value } of items) p.clickfoldClearOutbox(key(person), field, value);
        await exec(p);
      },
    };
  }

  private pipeline(): Pipeline {
    return this.redis.pipeline() as Pipeline;
  }

  foldBatch(partition: string, records: readonly BatchRecord[]): Promise<FoldOutcome> {
    return foldBatchWith(this.backend, partition, records, this.options);
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
    const f = await this.redis.hgetall(keys.person(this.ns, person));
    const alias = f[F.alias];
    if (alias && alias !== person) {
      const g = await this.redis.hgetall(keys.person(this.ns, alias));
      return { id: alias, fields: Object.keys(g).length ? g : null };
    }
    return { id: person, fields: Object.keys(f).length ? f : null };
  }

  async getPerson(person: string): Promise<PersonView | null> {
    const { id, fields } = await this.resolve(person);
    return hasHistory(fields) ? personView(id, fields, this.options.ladder) : null;
  }

  async atStage(topic: string, stage: string, limit: number): Promise<string[]> {
    return this.redis.zrevrange(keys.stageIndex(this.ns, topic, stage), 0, limit - 1);
  }

  async erase(person: string): Promise<boolean> {
    const { id, fields } = await this.resolve(person);
    if (!fields) return false;
    const ids = [id, ...decodeList(fields[F.linked])];
    const topics = Object.keys(fields).filter((k) => k.startsWith(DIALOGUE_PREFIX)).map((k) => k.slice(DIALOGUE_PREFIX.length));
    await this.updateIndex(ids.flatMap((p) => topics.map((topic) => ({ person: p, topic, stage: -1, last: 0 }))));
    const p = this.pipeline();
    for (const x of ids) p.del(keys.person(this.ns, x));
    await exec(p);
    return true;
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
