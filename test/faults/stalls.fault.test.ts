import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { afterEach, describe, expect, it } from 'vitest';
import { TOPICS } from '../../contract/raw-event.js';
import type { HistoryEvent, StallEvent } from '../../contract/transition.js';
import { DEFAULT_TOPIC_MAP } from '../../history/fold/topic-map.js';
import { RedisHistoryStore } from '../../history/store/redis.js';
import type { NodeProcess } from '../../services/node-process.js';
import { sleep } from '../../services/proc.js';
import { FOLD, startStack, type Stack } from './harness.js';

/**
 * Stalls on the real stack: three worker processes on one broker and one Redis, a rule that fires
 * after 5 s, one worker killed with SIGKILL while stalls come due (its partitions and, maybe, the
 * sweep lease move to the others). Every dialogue stalls exactly once per quiet spell; activity
 * re-arms it; an erase before the time leaves nothing to fire.
 */
const AFTER_S = 5;

async function post(url: string, person: string, events: Record<string, unknown>[]): Promise<void> {
  for (;;) {
    const res = await fetch(`${url}/v1/collect`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: JSON.stringify({ site: 'demo', visitor: person, session: `s-${person}`, events }),
    }).catch(() => null);
    await res?.arrayBuffer();
    if (res?.status === 202) return;
    await sleep(300);
  }
}

/** A product page, then its specs: the dialogue stands at detail. */
const toDetail = (person: string, round: number) => {
  const ts = Date.now();
  return [
    { id: `${person}-r${round}-a`, type: 'page', ts, url: 'https://shop.example/products/sku-1' },
    { id: `${person}-r${round}-b`, type: 'page', ts: ts + 1, url: 'https://shop.example/products/sku-1/specs' },
  ];
};

/** Everything on history.transitions, read committed, as it arrives. */
async function follow(stack: Stack) {
  const events: HistoryEvent[] = [];
  const kafka = new Kafka({ brokers: [stack.broker.brokers], logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: `stalls-${Date.now()}`, maxWaitTimeInMs: 100, readUncommitted: false });
  await consumer.connect();
  await consumer.subscribe({ topic: TOPICS.transitions, fromBeginning: true });
  await consumer.run({ eachMessage: async ({ message }) => void events.push(JSON.parse(message.value!.toString()) as HistoryEvent) });
  return { stalls: () => events.filter((e): e is StallEvent => 'kind' in e && e.kind === 'stalled'), stop: () => consumer.disconnect() };
}

async function until(what: string, ok: () => boolean, ms = 90_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

describe.sequential('stalls on the real stack', () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.destroy();
    stack = undefined;
  });

  it('fire exactly once per dialogue and quiet spell with three workers, through a SIGKILL and a rebalance; activity re-arms; an erase leaves nothing to fire', async () => {
    const s = (stack = await startStack());
    const mapFile = join(s.dir, 'topic-map.json');
    writeFileSync(mapFile, JSON.stringify({ rules: DEFAULT_TOPIC_MAP.rules, stalls: [{ name: 'quiet-at-detail', stage: 'detail', after: `${AFTER_S}s` }] }));
    const env = { TOPIC_MAP: mapFile };
    const workers: NodeProcess[] = [await s.worker('worker-1', env), await s.worker('worker-2', env), await s.worker('worker-3', env)];
    const feed = await follow(s);
    const people = Array.from({ length: 30 }, (_, i) => `stall-${i}`);
    const erased = people[0]!;

    await Promise.all(people.map((p) => post(s.ingestUrl, p, toDetail(p, 1))));
    // Folded: then one is erased before its time (through a store on the same Redis, as the API would).
    const redis = new Redis(s.redis.url);
    const store = new RedisHistoryStore(redis, FOLD);
    for (const p of people) {
      for (let i = 0; i < 100 && !(await store.getPerson(p)); i++) await sleep(100);
    }
    await store.erase(erased, Date.now());

    // While the stalls come due, one worker dies without a word and the group rebalances.
    await sleep(2000);
    await workers[0]!.kill('SIGKILL');

    const others = people.filter((p) => p !== erased);
    await until(`${others.length} stalls`, () => new Set(feed.stalls().map((e) => e.person)).size >= others.length);
    // Sweeps go on every second: give them time to fire anything twice.
    await sleep(AFTER_S * 1000);
    const first = feed.stalls();
    expect(first.filter((e) => e.person === erased)).toEqual([]);
    expect(first.map((e) => e.person).sort()).toEqual(others.sort());
    expect(new Set(first.map((e) => e.id)).size).toBe(first.length);
    for (const e of first) expect(e).toMatchObject({ topic: 'product:sku-1', stage: 'detail', rule: 'quiet-at-detail', at: e.since + AFTER_S * 1000 });

    // Five come back: armed again, each stalls once more, with a later `since` (another id).
    const back = others.slice(0, 5);
    await Promise.all(back.map((p) => post(s.ingestUrl, p, toDetail(p, 2))));
    await until('the second stalls', () => feed.stalls().length >= first.length + back.length);
    await sleep(AFTER_S * 1000);
    const second = feed.stalls().slice(first.length);
    expect(second.map((e) => e.person).sort()).toEqual([...back].sort());
    for (const e of second) expect(e.since).toBeGreaterThan(first.find((f) => f.person === e.person)!.since);
    expect(new Set(feed.stalls().map((e) => e.id)).size).toBe(feed.stalls().length);

    // What the API lists: the dialogues stalled now.
    const listed = await store.automationPage({ topic: 'product:sku-1', rule: 'quiet-at-detail' }, undefined, 1000);
    expect(listed.map((e) => e.person).sort()).toEqual(others.sort());
    console.log(
      `[faults] stalls: ${first.length} + ${second.length} fired once each through a SIGKILL of one of three workers; the erased person's did not fire`,
    );
    await feed.stop();
    redis.disconnect();
  });
});
