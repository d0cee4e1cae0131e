import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { DeadLetter } from '../../contract/dead-letter.js';
import { TOPICS } from '../../contract/raw-event.js';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import { DEFAULT_TOPIC_MAP, TopicMapConfig } from '../../history/fold/topic-map.js';
import { KafkaBroker } from '../../services/kafka.js';
import { startGroupAtEnd } from '../support/kafka-groups.js';
import { batch, eventually, post, startTestApp, type Mode } from '../support/app.js';
import { keysOf } from '../support/redis-inspect.js';
import { readToEnd } from '../support/kafka-read.js';
import { ready, redisClient } from '../support/services.js';

/**
 * The fold under attack (README, Limits). More than 10,000 hostile records, half through ingest
 * over HTTP, half written straight to clicks.raw as a compromised producer would, interleaved with
 * a control stream of 500 visitors whose stages are known. Afterwards every control visitor stands
 * at its stage, the consumer is at the end of every partition, every hostile record is accounted
 * for (folded within the caps, or on clicks.invalid with its reason, or counted), and the worker
 * never had to retry a batch. Runs on Kafka + Redis, Kafka + Redis Cluster, and the embedded backends.
 *
 * The suite has a Kafka broker of its own: its tens of thousands of records would otherwise be folded
 * again by every other test file's consumer group. Everything here is still told apart by the run's
 * tag in ids and sites, since the Redis (and the cluster) are shared, namespaced by key prefix.
 */
const RUN = randomUUID().slice(0, 6);
const CONTROL = 500;
const TOPIC_BUDGET = 300;
const LINK_CAP = 100;
const DIALOGUE_CAP = 200;

// A small deterministic PRNG, so a failure can be replayed.
let seed = 0x1234abcd;
const rnd = () => (seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32;

function topicMapFor(tag: string): TopicMapConfig {
  return TopicMapConfig.parse({
    ...DEFAULT_TOPIC_MAP,
    limits: { dialoguesPerPerson: DIALOGUE_CAP, linksPerPerson: LINK_CAP },
    sites: { [`evil-${tag}`]: { rules: [], limits: { topicsPerSite: TOPIC_BUDGET } } },
  });
}

function sitesFileFor(tag: string): string {
  const path = join(tmpdir(), `clickfold-sites-${tag}.json`);
  const site = (id: string) => ({ id, origins: ['*'], writeKeys: [`wk_${id}_key`], redirectHosts: ['localhost'] });
  writeFileSync(path, JSON.stringify({ sites: [site('demo'), site(`evil-${tag}`)] }));
  return path;
}

/** What the hostile streams must produce on clicks.invalid, by reason. */
interface Expected {
  deadLetters: Record<string, number>;
  /** Records sent, through ingest and straight to the topic. */
  viaIngest: number;
  direct: number;
}

/** Collect batches (site, visitor, events) of the hostile half that goes through ingest. */
function hostileBatches(tag: string): { batches: ReturnType<typeof batch>[]; expected: Record<string, number>; events: number } {
  const site = `evil-${tag}`;
  const out: ReturnType<typeof batch>[] = [];
  const page = (url: string, extra: Record<string, unknown> = {}) => ({ type: 'page', url, ...extra });
  const inBatches = (visitorBase: string, events: Record<string, unknown>[], size: number) => {
    for (let i = 0; i < events.length; i += size) out.push(batch(`${visitorBase}-${i / size}`, events.slice(i, i + size), { site }));
  };
  const escapes = ['%E0', '%', '%ZZ', '%C3%28', '%F0%9F', '%%41'];
  const controls = ['%0A', '%0D%0Aid:%20x', '%00', '%1B[31m', '%E2%80%A8', '%7F'];
  const braces = ['%7B', '%7D', '%7Bx%7D', '%7D%7B'];
  // Each of these mints a topic of its own: the first TOPIC_BUDGET are folded, the rest refused.
  const minting = [
    ...Array.from({ length: 1000 }, (_, i) => page(`/products/${escapes[i % escapes.length]}-${tag}-${i}`)),
    ...Array.from({ length: 500 }, (_, i) => page(`/products/c${i}${controls[i % controls.length]}-${tag}`)),
    ...Array.from({ length: 500 }, (_, i) => page(`/products/b${i}${braces[i % braces.length]}-${tag}`)),
    // A hint the map accepts (product:{sku}) with a stage that is not on the ladder.
    ...Array.from({ length: 500 }, (_, i) => page('/about', { topic: `product:h${i}-${tag}`, stage: 'bogus' })),
  ];
  inBatches(`mint-${tag}`, minting, 50);
  // Captures of 2 KB: topics too long to keep. Hyphenated: through ingest, one 2 KB run of letters
  // and digits would be a long token, masked before Kafka (ingest/scrub.ts).
  inBatches(
    `long-${tag}`,
    Array.from({ length: 1000 }, (_, i) => page(`/products/${'x-'.repeat(1000)}${i}`)),
    50,
  );
  // Hints of topics no rule produces: ignored, the URL decides (/about: no rule).
  inBatches(
    `hint-${tag}`,
    Array.from({ length: 500 }, (_, i) => page('/about', { topic: `minted:${tag}:${i}:${rnd()}`, stage: 'purchase' })),
    100,
  );
  // An identify storm: 1,000 visitors claim one user.
  for (let i = 0; i < 1000; i++) out.push(batch(`storm-${tag}-${i}`, [{ type: 'identify', user: `storm-user-${tag}` }], { site }));
  const events = out.reduce((n, b) => n + b.events.length, 0);
  return { batches: out, events, expected: { topic_budget: 2500 - TOPIC_BUDGET, topic_too_long: 1000, link_cap: 1000 - LINK_CAP } };
}

/** Raw records a compromised producer writes straight to clicks.raw: [key, value]. */
function hostileRecords(tag: string): { records: [string, string][]; expected: Record<string, number> } {
  const records: [string, string][] = [];
  const T = Date.now();
  let n = 0;
  const rec = (person: string, extra: Record<string, unknown> = {}) => ({
    v: 1,
    id: `${tag}-d${++n}`,
    site: `direct-${tag}`,
    person,
    channel: 'web',
    type: 'page',
    ts: T + n,
    rt: T + n,
    url: '/products/sku-1',
    ...extra,
  });
  const put = (key: string, value: unknown) => records.push([key, typeof value === 'string' ? value : JSON.stringify(value)]);

  for (let i = 0; i < 500; i++) put(`bad-${tag}-${i}`, `{"id":"${tag}-j${i}","v":1,${'['.repeat(i % 50)}`);
  const invalid = [
    (i: number) => rec(`inv-${tag}-${i}`, { type: 'purchase' }),
    (i: number) => rec(`inv-${tag}-${i}`, { v: 2 }),
    (i: number) => rec(`inv-${tag}-${i}`, { ts: 'yesterday' }),
    (i: number) => rec(`inv-${tag}-${i}`, { channel: 'Web Site' }),
    (i: number) => ({ ...rec(`inv-${tag}-${i}`), person: undefined }),
    (i: number) => rec(`{inv}-${tag}-${i}`),
    (i: number) => rec(`inv-${tag}\n${i}`),
    (i: number) => rec(`inv-${tag}-${i}`, { site: `{evil}${i}` }),
    (i: number) => rec(`inv-${tag}-${i}`, { topic: 'z'.repeat(2048) }),
    (i: number) => rec(`inv-${tag}-${i}`, { visitor: `v\u0000${i}`, type: 'identify' }),
  ];
  for (let i = 0; i < 1500; i++) put(`inv-${tag}-${i}`, invalid[i % invalid.length]!(i));
  // 2 KB captures written directly (ingest would have let them through too).
  for (let i = 0; i < 250; i++) put(`cap-${tag}-${i}`, rec(`cap-${tag}-${i}`, { url: `/checkout/${'q'.repeat(2048)}${i}` }));
  // A visitor with 5,000 topics, then merged into a user by one identify (on the user's partition).
  const wide = `wide-${tag}`;
  for (let i = 0; i < 5000; i++) put(wide, rec(wide, { url: `/products/w${i}`, site: `wide-${tag}` }));
  put(`wide-user-${tag}`, rec(`wide-user-${tag}`, { type: 'identify', visitor: wide, user: `wide-user-${tag}`, url: undefined, site: `wide-${tag}` }));
  // Links across partitions: a visitor's page on its partition, the identify on the user's.
  for (let i = 0; i < 200; i++) {
    put(`xv-${tag}-${i}`, rec(`xv-${tag}-${i}`, { url: `/products/x${i}/specs` }));
    put(`xu-${tag}-${i}`, rec(`xu-${tag}-${i}`, { type: 'identify', visitor: `xv-${tag}-${i}`, user: `xu-${tag}-${i}`, url: undefined }));
  }
  // Sites nobody configured, each with one event: folded within the site cap.
  for (let i = 0; i < 300; i++) put(`mint-site-${tag}-${i}`, rec(`ms-${tag}-${i}`, { site: `minted-${tag}-${i}`, url: `/products/m${i}` }));
  return { records, expected: { invalid_json: 500, invalid_record: 1500, topic_too_long: 250 } };
}

/** The control stream: visitor i reaches stage i % 3 of product:sku-(i % 10). */
function controlBatches(tag: string) {
  return Array.from({ length: CONTROL }, (_, i) => {
    const sku = `sku-${i % 10}`;
    const steps = [`/products/${sku}`, `/products/${sku}/specs`, `/checkout/${sku}`].slice(0, (i % 3) + 1);
    return batch(
      `ctl-${tag}-${i}`,
      steps.map((url) => ({ type: 'page', url })),
    );
  });
}

/** Runs `fn` over `items` with at most `n` at once. */
async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** A counter or gauge of the app's worker metrics, summed over the series matching `labels`. */
async function metric(app: RunningApp, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${app.url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const l = Object.fromEntries(
      (m[2] ?? '')
        .split(',')
        .filter(Boolean)
        .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 2, -1)]),
    );
    if (Object.entries(labels).every(([k, v]) => l[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

const modes: Mode[] = ['real', 'cluster', 'embedded'];

let broker: KafkaBroker | undefined;
/** The suite's own broker, started once for the Kafka modes. */
async function brokers(): Promise<string> {
  broker ??= await KafkaBroker.start();
  return broker.brokers;
}
afterAll(async () => {
  await broker?.destroy();
});

describe.each(modes)('the fold under hostile input (%s)', (mode) => {
  const tag = `${RUN}${mode[0]}`;
  const group = `fold-hostile-${tag}`;
  const prefix = `fh-${tag}:`;
  let app: RunningApp | undefined;
  afterAll(async () => {
    await app?.stop();
    if (mode !== 'embedded') {
      const redis = await ready(redisClient(mode));
      for (const k of await keysOf(redis, `${prefix}*`)) await redis.del(k);
      redis.disconnect();
    }
  });

  it('keeps every control visitor at its stage, ends with lag 0, and accounts for every hostile record', { timeout: 240_000 }, async () => {
    const kafka: { KAFKA_BROKERS?: string } = mode === 'embedded' ? {} : { KAFKA_BROKERS: await brokers() };
    if (kafka.KAFKA_BROKERS) await startGroupAtEnd(group, kafka.KAFKA_BROKERS);
    app = await startTestApp(
      mode,
      { ...(kafka.KAFKA_BROKERS ? { KAFKA_BROKERS: kafka.KAFKA_BROKERS } : {}), INGEST_SITES: sitesFileFor(tag), KAFKA_GROUP_ID: group, REDIS_PREFIX: prefix },
      topicMapFor(tag),
    );
    const running = app;
    const viaIngest = hostileBatches(tag);
    const direct = hostileRecords(tag);
    const control = controlBatches(tag);
    const expected: Expected = { deadLetters: {}, viaIngest: viaIngest.events, direct: direct.records.length };
    for (const part of [viaIngest.expected, direct.expected])
      for (const [k, v] of Object.entries(part)) expected.deadLetters[k] = (expected.deadLetters[k] ?? 0) + v;
    expect(expected.viaIngest + expected.direct).toBeGreaterThanOrEqual(10_000);
    const memoryBefore = await namespaceBytes(mode, prefix);

    // Interleave: control batches spread among the hostile requests, direct records written in slices alongside.
    const requests: { body: unknown; control: boolean }[] = viaIngest.batches.map((body) => ({ body, control: false }));
    control.forEach((body, i) => {
      requests.splice(Math.floor(((i + 1) * requests.length) / (CONTROL + 1)) + i, 0, { body, control: true });
    });
    const writer = directWriter(mode, running, kafka.KAFKA_BROKERS);
    const statuses = new Map<number, number>();
    const slices = 20;
    const perSlice = Math.ceil(direct.records.length / slices);
    let sliced = 0;
    await pool(requests, 8, async (r) => {
      const res = await post(running.url, r.body);
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      await res.body?.cancel();
      // Every so often, the compromised producer writes its next slice.
      if (sliced < slices && Math.random() < (slices * 1.5) / requests.length) {
        const s = sliced++;
        await writer.write(direct.records.slice(s * perSlice, (s + 1) * perSlice));
      }
    });
    while (sliced < slices) {
      const s = sliced++;
      await writer.write(direct.records.slice(s * perSlice, (s + 1) * perSlice));
    }
    await writer.close();
    // Ingest took every request: the hostile half is valid input to ingest, meant for the fold.
    expect(Object.fromEntries(statuses)).toEqual({ 202: requests.length });

    // Every control visitor at its stage.
    const stages = ['intro', 'detail', 'purchase'];
    await eventually(
      async () => {
        for (let i = 0; i < CONTROL; i++) {
          const visitor = control[i]!.visitor;
          const p = await running.backends.store.getPerson(visitor);
          const d = p?.dialogues.find((x) => x.topic === `product:sku-${i % 10}`);
          if (d?.stage !== stages[i % 3]) return undefined;
        }
        return true;
      },
      120_000,
      'every control visitor at its stage',
    );

    // Every hostile record accounted for: dead letters by reason, exactly.
    const dead = await eventually(
      async () => {
        const letters = await deadLettersOf(mode, running, tag, kafka.KAFKA_BROKERS);
        const counts: Record<string, number> = {};
        for (const d of letters) counts[d.reason] = (counts[d.reason] ?? 0) + 1;
        return Object.entries(expected.deadLetters).every(([k, v]) => (counts[k] ?? 0) >= v) ? counts : undefined;
      },
      120_000,
      'the dead letters',
    );
    expect(dead).toEqual(expected.deadLetters);

    // Folded within the caps.
    const store = running.backends.store;
    const storm = await store.getPerson(`storm-user-${tag}`);
    expect(storm?.linkedIds).toHaveLength(LINK_CAP);
    const wide = await eventually(
      async () => {
        const p = await store.getPerson(`wide-user-${tag}`);
        return p && p.dialogues.length === DIALOGUE_CAP && p.dialogues.some((d) => d.topic === 'product:w4999') ? p : undefined;
      },
      60_000,
      'the wide visitor merged',
    );
    expect(wide.dialogues.map((d) => d.topic).sort()).toEqual(Array.from({ length: DIALOGUE_CAP }, (_, i) => `product:w${4800 + i}`).sort());
    expect((await store.getPerson(`wide-${tag}`))?.person).toBe(`wide-user-${tag}`);
    for (let i = 0; i < 200; i += 17) {
      const u = await eventually(async () => (await store.getPerson(`xu-${tag}-${i}`)) ?? undefined, 30_000, 'a cross-partition link');
      expect(u.dialogues.map((d) => [d.topic, d.stage])).toContainEqual([`product:x${i}`, 'detail']);
    }
    for (let i = 0; i < 300; i += 29) expect((await store.getPerson(`ms-${tag}-${i}`))?.dialogues[0]?.topic).toBe(`product:m${i}`);
    // Nothing a sender minted reached the topics list past the budget, and no topic breaks a key or a line.
    const topics = await store.topics();
    expect(topics.filter((t) => t.includes(tag))).toHaveLength(TOPIC_BUDGET);
    expect(topics.every((t) => t.length <= 128 && !/[\u0000-\u001f{}]/.test(t))).toBe(true);

    // Counted: hints the map does not allow.
    expect(await metric(running, 'clickfold_worker_ignored_total', { reason: 'hint_topic' })).toBeGreaterThanOrEqual(500);
    // The consumer is at the end of every partition, and never had to retry a batch.
    await eventually(
      async () => ((await lagOf(mode, running, group, kafka.KAFKA_BROKERS)).every((l) => l === 0) ? true : undefined),
      60_000,
      'lag 0 on every partition',
    );
    expect(await metric(running, 'clickfold_worker_batch_retries_total')).toBe(0);

    const memoryAfter = await namespaceBytes(mode, prefix);
    const hostile = expected.viaIngest + expected.direct;
    if (memoryAfter !== null && memoryBefore !== null) {
      const perRecord = (memoryAfter - memoryBefore) / hostile;
      console.log(
        `[fold-hostile ${mode}] ${hostile} hostile records (+${CONTROL} control visitors): Redis grew ${memoryAfter - memoryBefore} B, ${perRecord.toFixed(1)} B per hostile record`,
      );
    }
  });
});

/** Bytes Redis holds for a key namespace (MEMORY USAGE of each key), or null for the embedded store. */
async function namespaceBytes(mode: Mode, prefix: string): Promise<number | null> {
  if (mode === 'embedded') return null;
  const redis = await ready(redisClient(mode));
  try {
    let total = 0;
    for (const k of await keysOf(redis, `${prefix}*`)) total += (await redis.memory('USAGE', k)) ?? 0;
    return total;
  } finally {
    redis.disconnect();
  }
}

/** Writes raw records to clicks.raw keyed by person, as any Kafka client would (or into the embedded log). */
function directWriter(mode: Mode, app: RunningApp, brokers: string | undefined) {
  if (mode === 'embedded' || !brokers) {
    return {
      write: async (records: [string, string][]) =>
        app.backends.log!.append(
          TOPICS.raw,
          records.map(([key, value]) => ({ key, value })),
        ),
      close: async () => {},
    };
  }
  const kafka = new Kafka({ clientId: 'compromised', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  const connected = producer.connect();
  return {
    write: async (records: [string, string][]) => {
      await connected;
      await producer.send({ topic: TOPICS.raw, acks: -1, messages: records.map(([key, value]) => ({ key, value })) });
    },
    close: () => producer.disconnect(),
  };
}

/** The worker's dead letters of this run (their payload carries the run's tag). */
async function deadLettersOf(mode: Mode, app: RunningApp, tag: string, brokers: string | undefined): Promise<DeadLetter[]> {
  const values =
    mode === 'embedded' || !brokers
      ? app.backends
          .log!.read(TOPICS.invalid)
          .flat()
          .map((m) => m.value)
      : await readAll(TOPICS.invalid, brokers);
  return values.map((v) => DeadLetter.parse(JSON.parse(v))).filter((d) => d.stage === 'worker' && (d.payload ?? '').includes(tag));
}

/** Every record of a topic up to its current end. */
async function readAll(topic: string, brokers: string): Promise<string[]> {
  const values: string[] = [];
  await readToEnd([topic], (_t, _p, m) => values.push(m.value?.toString() ?? ''), { brokers });
  return values;
}

/** Records behind the end, per partition of clicks.raw, for the app's consumer group. */
async function lagOf(mode: Mode, app: RunningApp, group: string, brokers: string | undefined): Promise<number[]> {
  if (mode === 'embedded' || !brokers) {
    const gauge = await metric(app, 'clickfold_worker_consumer_lag');
    return [gauge];
  }
  const kafka = new Kafka({ clientId: 'lag-check', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const ends = await admin.fetchTopicOffsets(TOPICS.raw);
    const [committed] = await admin.fetchOffsets({ groupId: group, topics: [TOPICS.raw] });
    return ends.map((p) => {
      const c = committed!.partitions.find((x) => x.partition === p.partition);
      return Number(p.high) - Math.max(0, Number(c?.offset ?? 0));
    });
  } finally {
    await admin.disconnect();
  }
}
