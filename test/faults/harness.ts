import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { TOPICS, type RawEvent } from '../../contract/raw-event.js';
import { isTransition, type Transition } from '../../contract/transition.js';
import type { BatchRecord } from '../../history/fold/person-batch.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { RedisHistoryStore } from '../../history/store/redis.js';
import { compileTopicMap, DEFAULT_TOPIC_MAP, foldOptionsOf } from '../../history/fold/topic-map.js';
import type { PersonView } from '../../history/store/views.js';
import { toFoldEvent } from '../../history/worker/batch.js';
import { KafkaBroker } from '../../services/kafka.js';
import { NodeProcess } from '../../services/node-process.js';
import { freePorts, sleep } from '../../services/proc.js';
import { RedisServer } from '../../services/redis.js';

/**
 * The fault-test harness: real processes (ingest, workers) on a real broker and a real Redis of
 * their own, a known event stream driven through ingest by retrying clients, and the expected
 * histories computed apart from all of that, with the pure fold over what ingest acknowledged.
 */

export const MAP = compileTopicMap(DEFAULT_TOPIC_MAP);
export const FOLD = foldOptionsOf(MAP);

export interface Stack {
  broker: KafkaBroker;
  redis: RedisServer;
  ingestUrl: string;
  ingest: NodeProcess;
  dir: string;
  /** Starts one more worker process in the consumer group (`env`: its own settings on top). */
  worker(name: string, env?: Record<string, string>): Promise<NodeProcess>;
  destroy(): Promise<void>;
}

export async function startStack(): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), 'clickfold-faults-'));
  // Redis keeps what it acknowledged across a restart (AOF, fsync on every write), as production would.
  const [broker, redis] = await Promise.all([KafkaBroker.start(), RedisServer.start({ extraArgs: ['--appendonly', 'yes', '--appendfsync', 'always'] })]);
  const [port] = await freePorts(1);
  const env = {
    KAFKA_BROKERS: broker.brokers,
    REDIS_URL: redis.url,
    KAFKA_PARTITIONS: '6',
    KAFKA_SESSION_TIMEOUT_MS: '6000',
    INGEST_ACK_TIMEOUT_MS: '3000',
    INGEST_RETRY_AFTER_S: '1',
    // Several workers on one host: each takes a free port for its probes.
    WORKER_PORT: '0',
    // Exactly once: every scenario counts transitions published again (0); one turns it off.
    WORKER_TRANSACTIONS: 'true',
  };
  const ingest = new NodeProcess('ingest', 'apps/ingest.ts', { ...env, PORT: String(port) }, dir);
  await ingest.start(/ingest is listening/);
  const workers: NodeProcess[] = [];
  return {
    broker,
    redis,
    ingest,
    dir,
    ingestUrl: `http://127.0.0.1:${port}`,
    worker: async (name, own = {}) => {
      const w = new NodeProcess(name, 'apps/worker.ts', { ...env, ...own }, dir);
      await w.start(/worker is folding/);
      workers.push(w);
      return w;
    },
    destroy: async () => {
      await Promise.all([...workers, ingest].map((p) => p.kill('SIGKILL')));
      await Promise.all([broker.destroy(), redis.destroy()]);
    },
  };
}

/** One person's scripted walk: several products, intro to purchase, some with a price. */
export function script(person: string, base: number, round = 0) {
  const events: Record<string, unknown>[] = [];
  const skus = ['sku-1', 'sku-2', 'sku-3'].slice(0, 1 + (person.length % 3));
  let i = 0;
  for (const sku of skus) {
    const steps = [
      { type: 'page', url: `https://shop.example/products/${sku}` },
      { type: 'click', url: `https://shop.example/products/${sku}`, el: { tag: 'a', text: 'Specs' } },
      { type: 'page', url: `https://shop.example/products/${sku}/specs` },
      { type: 'page', url: `https://shop.example/products/${sku}` },
      { type: 'click', url: `https://shop.example/products/${sku}/specs`, topic: `product:${sku}`, stage: 'detail', el: { tag: 'button', id: 'compare' } },
      { type: 'page', url: `https://shop.example/checkout/${sku}` },
      { type: 'track', name: 'Order Completed', url: `https://shop.example/checkout/${sku}`, value: 10 + skus.indexOf(sku) },
    ];
    for (const s of steps) events.push({ id: round ? `${person}-r${round}-e${i}` : `${person}-e${i}`, ts: base + i++ * 1000, ...s });
  }
  return events;
}

/** Two drives of the same people, one after the other, as one (acknowledged events in order). */
export function merged(a: DriverResult, b: DriverResult): DriverResult {
  const acked = new Map([...a.acked].map(([p, events]) => [p, [...events]]));
  for (const [p, events] of b.acked) acked.set(p, [...(acked.get(p) ?? []), ...events]);
  return { acked, requests: a.requests + b.requests, refused: a.refused + b.refused, resent: a.resent + b.resent };
}

export interface DriverResult {
  /** Events ingest acknowledged (202), by person, in the order the person sent them. */
  acked: Map<string, Record<string, unknown>[]>;
  requests: number;
  refused: number;
  resent: number;
}

/**
 * Sends every person's script through ingest in batches, one batch at a time per person, and
 * retries a batch until ingest acknowledges it (503, 5xx and network errors), as the snippet does.
 * `onProgress` sees the share of batches acknowledged, so a scenario can inject its fault mid-way.
 */
export async function drive(
  url: string,
  people: string[],
  opts: {
    batchSize?: number;
    concurrency?: number;
    resendAcked?: boolean;
    onProgress?: (share: number) => void;
    /** A later round of the same people: new event ids, later times. */
    round?: number;
    /** A pause after each acknowledged batch of a client, ms (a person between clicks): spreads the stream over time. */
    pauseMs?: number;
  } = {},
): Promise<DriverResult> {
  const base = Date.now() - 3_600_000 + (opts.round ?? 0) * 600_000;
  const batchSize = opts.batchSize ?? 5;
  const plans = people.map((p) => {
    const events = script(p, base, opts.round);
    const batches: Record<string, unknown>[][] = [];
    for (let i = 0; i < events.length; i += batchSize) batches.push(events.slice(i, i + batchSize));
    return { person: p, batches };
  });
  const total = plans.reduce((n, p) => n + p.batches.length, 0);
  const result: DriverResult = { acked: new Map(), requests: 0, refused: 0, resent: 0 };
  let done = 0;
  const send = async (person: string, events: Record<string, unknown>[]) => {
    for (;;) {
      result.requests++;
      try {
        const res = await fetch(`${url}/v1/collect`, {
          method: 'POST',
          headers: { 'content-type': 'text/plain' },
          body: JSON.stringify({ site: 'demo', visitor: person, session: `s-${person}`, events }),
          signal: AbortSignal.timeout(10_000),
        });
        await res.arrayBuffer();
        if (res.status === 202) return;
        if (res.status < 500 && res.status !== 429) throw new Error(`ingest refused a valid batch: ${res.status}`);
      } catch (err) {
        if ((err as Error).message.startsWith('ingest refused')) throw err;
      }
      result.refused++;
      await sleep(300);
    }
  };
  const queue = [...plans];
  const workers = Array.from({ length: opts.concurrency ?? 8 }, async () => {
    for (let plan = queue.shift(); plan; plan = queue.shift()) {
      const acked: Record<string, unknown>[] = [];
      result.acked.set(plan.person, acked);
      for (const batch of plan.batches) {
        await send(plan.person, batch);
        acked.push(...batch);
        if (opts.resendAcked) {
          // The client never saw the 202 and sends the same batch again.
          await send(plan.person, batch);
          result.resent++;
        }
        done++;
        opts.onProgress?.(done / total);
        if (opts.pauseMs) await sleep(opts.pauseMs);
      }
    }
  });
  await Promise.all(workers);
  return result;
}

/** The histories one clean pass over the acknowledged events gives, with the product's pure fold. */
export async function expected(acked: Map<string, Record<string, unknown>[]>): Promise<{ store: MemoryHistoryStore; transitions: Transition[] }> {
  const store = new MemoryHistoryStore(FOLD);
  const transitions: Transition[] = [];
  let offset = 0;
  for (const [person, events] of acked) {
    const records: BatchRecord[] = [];
    for (const e of events) {
      const raw = { v: 1, site: 'demo', person, visitor: person, channel: 'web', rt: e.ts, ...e } as unknown as RawEvent;
      const event = toFoldEvent(raw, MAP);
      if (event) records.push({ offset: offset++, person, event });
    }
    const outcome = await store.foldBatch('clean', records);
    transitions.push(...outcome.transitions.filter(isTransition));
  }
  return { store, transitions };
}

export interface Verdict {
  events: number;
  lost: number;
  countedTwice: number;
  transitionsExpected: number;
  transitionsMissing: number;
  transitionRepeats: number;
  mismatched: string[];
}

const countsOf = (v: PersonView | null) => {
  const m = new Map<string, number>();
  for (const d of v?.dialogues ?? []) for (const [stage, n] of Object.entries(d.counts)) m.set(`${d.topic}/${stage}`, n);
  return m;
};

/**
 * Each person's history as `read` gives it against the clean pass: interactions lost and counted
 * twice (per topic and stage), and the people whose history differs in anything.
 */
export async function compareHistories(
  people: readonly string[],
  read: (person: string) => Promise<PersonView | null>,
  want: MemoryHistoryStore,
): Promise<{ mismatched: string[]; lost: number; twice: number }> {
  const mismatched: string[] = [];
  let lost = 0;
  let twice = 0;
  for (const p of people) {
    const [got, exp] = await Promise.all([read(p), want.getPerson(p)]);
    const g = countsOf(got);
    for (const [k, n] of countsOf(exp)) {
      const have = g.get(k) ?? 0;
      if (have < n) lost += n - have;
      if (have > n) twice += have - n;
    }
    if (JSON.stringify(got) !== JSON.stringify(exp)) mismatched.push(p);
  }
  return { mismatched, lost, twice };
}

/** Waits until Redis holds the expected histories (or the time is up), then compares everything. */
export async function verify(stack: Stack, acked: Map<string, Record<string, unknown>[]>, timeoutMs = 90_000): Promise<Verdict> {
  const want = await expected(acked);
  const redis = new Redis(stack.redis.url);
  const store = new RedisHistoryStore(redis, FOLD);
  const people = [...acked.keys()];
  const compare = () => compareHistories(people, (p) => store.getPerson(p), want.store);
  let state = await compare();
  const until = Date.now() + timeoutMs;
  while ((state.mismatched.length > 0 || state.lost > 0) && Date.now() < until) {
    await sleep(500);
    state = await compare();
  }
  redis.disconnect();

  const wantIds = new Set(want.transitions.map((t) => t.id));
  const seen = new Map<string, number>();
  const kafka = new Kafka({ brokers: [stack.broker.brokers], logLevel: logLevel.NOTHING });
  // read_committed, as every reader of history.transitions in the project: what an aborted
  // transaction wrote is not a transition anybody sees.
  const consumer = kafka.consumer({ groupId: `verify-${Date.now()}`, maxWaitTimeInMs: 100, readUncommitted: false });
  await consumer.connect();
  await consumer.subscribe({ topic: TOPICS.transitions, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const t = JSON.parse(message.value!.toString()) as Transition;
      seen.set(t.id, (seen.get(t.id) ?? 0) + 1);
    },
  });
  const tUntil = Date.now() + 30_000;
  while ([...wantIds].some((id) => !seen.has(id)) && Date.now() < tUntil) await sleep(200);
  await sleep(1000);
  await consumer.disconnect();

  return {
    events: [...acked.values()].reduce((n, e) => n + e.length, 0),
    lost: state.lost,
    countedTwice: state.twice,
    transitionsExpected: wantIds.size,
    transitionsMissing: [...wantIds].filter((id) => !seen.has(id)).length,
    transitionRepeats: [...seen.values()].reduce((n, c) => n + c - 1, 0),
    mismatched: state.mismatched,
  };
}

export function report(name: string, v: Verdict, d: DriverResult): void {
  console.log(
    `[faults] ${name}: ${v.events} events acknowledged (${d.requests} requests, ${d.refused} refused or failed and retried, ${d.resent} re-sent after a 202); ` +
      `lost ${v.lost}, counted twice ${v.countedTwice}; transitions ${v.transitionsExpected} expected, ${v.transitionsMissing} missing, ${v.transitionRepeats} published again (same id); ` +
      `${v.mismatched.length} histories differ`,
  );
}

/**
 * Fault steps that run once each, in order, when the share of acknowledged batches passes their
 * threshold, without holding up the clients: events keep flowing while a step runs.
 */
export function faultPlan(steps: [threshold: number, name: string, action: () => Promise<void>][]) {
  let next = 0;
  let running: Promise<void> = Promise.resolve();
  let busy = false;
  const ran: string[] = [];
  const pump = (share: number) => {
    if (busy || next >= steps.length || share < steps[next]![0]) return;
    const [, name, action] = steps[next++]!;
    busy = true;
    running = running.then(action).then(() => {
      ran.push(name);
      busy = false;
    });
  };
  return {
    onProgress: pump,
    /** Runs the steps the clients finished too early to trigger, then waits for all of them. */
    async done(): Promise<string[]> {
      for (;;) {
        await running;
        if (next >= steps.length) return ran;
        busy = false;
        pump(1);
      }
    },
  };
}
