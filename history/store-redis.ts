import type { Cluster, Redis } from 'ioredis';
import type { Transition } from '../contract/transition.js';
import type { Fields } from './codec.js';
import type { FoldOptions } from './fold.js';
import { byPerson, planPerson, type BatchRecord, type IndexEntry, type PersonPlan } from './person-batch.js';
import { keys, type HistoryStore } from './store.js';
import { personView, type PersonView } from './views.js';

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

type Client = (Redis | Cluster) & {
  clickfoldWrite(key: string, expectVersion: string, ...fieldValues: string[]): Promise<number>;
};

const MAX_ATTEMPTS = 8;

export class RedisHistoryStore implements HistoryStore {
  private readonly redis: Client;

  constructor(
    redis: Redis | Cluster,
    readonly options: FoldOptions,
    /** Key prefix: replays build into a fresh namespace, then switch over. */
    private readonly ns = '',
  ) {
    if (!('clickfoldWrite' in redis)) redis.defineCommand('clickfoldWrite', { numberOfKeys: 1, lua: WRITE_IF_VERSION });
    this.redis = redis as Client;
  }

  async foldBatch(partition: string, records: readonly BatchRecord[]): Promise<Transition[]> {
    const transitions: Transition[] = [];
    const index: IndexEntry[] = [];
    const indexPeople: string[] = [];
    let pending = byPerson(records);

    for (let attempt = 0; pending.size > 0; attempt++) {
      if (attempt === MAX_ATTEMPTS) throw new Error(`write conflicts persisted for ${pending.size} people after ${MAX_ATTEMPTS} attempts`);
      const people = [...pending.keys()];
      const read = this.redis.pipeline();
      for (const p of people) read.hgetall(keys.person(this.ns, p));
      const current = unwrap<Fields>(await read.exec());

      const plans: PersonPlan[] = people.map((p, i) => {
        const f = current[i]!;
        return planPerson(p, Object.keys(f).length ? f : null, pending.get(p)!, partition, this.options);
      });
      const writes = plans.filter((p) => Object.keys(p.set).length > 0);
      const write = this.redis.pipeline() as unknown as Client;
      for (const plan of writes) {
        write.clickfoldWrite(keys.person(this.ns, plan.person), String(plan.expectVersion), ...Object.entries(plan.set).flat());
      }
      const results = writes.length ? unwrap<number>(await (write as unknown as ReturnType<Redis['pipeline']>).exec()) : [];

      const conflicted = new Set(writes.filter((_, i) => results[i] !== 1).map((p) => p.person));
      const next = new Map<string, BatchRecord[]>();
      for (const plan of plans) {
        if (conflicted.has(plan.person)) {
          next.set(plan.person, pending.get(plan.person)!);
          continue;
        }
        transitions.push(...plan.transitions);
        for (const e of plan.index) {
          index.push(e);
          indexPeople.push(plan.person);
        }
      }
      pending = next;
    }

    if (index.length > 0) await this.updateIndex(index, indexPeople);
    return transitions;
  }

  /** Idempotent, so a crash between the person write and this one heals on redelivery. */
  private async updateIndex(entries: IndexEntry[], people: string[]): Promise<void> {
    const ladder = this.options.ladder;
    const p = this.redis.pipeline();
    const topics = new Set<string>();
    entries.forEach((e, i) => {
      const person = people[i]!;
      ladder.forEach((stage, s) => {
        if (s !== e.stage) p.zrem(keys.stageIndex(this.ns, e.topic, stage), person);
      });
      p.zadd(keys.stageIndex(this.ns, e.topic, ladder[e.stage]!), e.last, person);
      topics.add(e.topic);
    });
    p.sadd(keys.topics(this.ns), ...topics);
    unwrap(await p.exec());
  }

  async getPerson(person: string): Promise<PersonView | null> {
    const f = await this.redis.hgetall(keys.person(this.ns, person));
    return Object.keys(f).length ? personView(person, f, this.options.ladder) : null;
  }

  async atStage(topic: string, stage: string, limit: number): Promise<string[]> {
    return this.redis.zrevrange(keys.stageIndex(this.ns, topic, stage), 0, limit - 1);
  }

  async close(): Promise<void> {}
}

function unwrap<T>(results: [Error | null, unknown][] | null): T[] {
  if (!results) throw new Error('redis pipeline was discarded');
  return results.map(([err, value]) => {
    if (err) throw err;
    return value as T;
  });
}
