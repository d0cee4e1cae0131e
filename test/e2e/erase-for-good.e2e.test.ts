import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBackends, type Backends } from '../../apps/shared/backends.js';
import type { ErasureRecord } from '../../contract/erasure.js';
import { TOPICS } from '../../contract/raw-event.js';
import { compileTopicMap, DEFAULT_TOPIC_MAP, foldOptionsOf } from '../../history/fold/topic-map.js';
import { createQueryApp } from '../../history/query/app.js';
import { followErasures } from '../../history/store/erasure-log.js';
import { RedisHistoryStore } from '../../history/store/redis.js';
import type { HistoryStore } from '../../history/store/store.js';
import { createBatchHandler } from '../../history/worker/batch.js';
import { replay } from '../../history/worker/replay.js';
import { createIngestApp } from '../../ingest/app.js';
import { parseEnv } from '../../lib/config.js';
import { openKafkaLog } from '../../lib/kafka/log.js';
import type { LogConsumer } from '../../lib/log.js';
import { createLogger } from '../../lib/logger.js';
import { batch, eventually } from '../support/app.js';
import { readTopic } from '../support/kafka-read.js';
import { recordsOf } from '../support/log-records.js';
import { inspectNamespace } from '../support/redis-inspect.js';
import { kafkaBrokers, ready, redisClient, redisClusterNodes, redisUrl } from '../support/services.js';

/**
 * Erase, for good: a person is erased while the worker holds a batch of their events (it has read
 * them and not folded them yet); the batch then folds nothing of them, no stage index holds them, an
 * event sent after the erasure folds as a new history, and a replay of `clicks.raw` from the beginning
 * into a fresh namespace does not bring them back. The worker here is the real one (its batch handler
 * and consumer group, the store the process serves, the erasure follower), with a gate in front of
 * its handler to hold the batch.
 */
const KEY = 'erase-e2e-key-0123456789';
const map = compileTopicMap(DEFAULT_TOPIC_MAP);
const logger = createLogger('test', 'silent');

describe.each(['real', 'cluster', 'embedded'] as const)('erase while folding, then replay (%s backends)', (mode) => {
  const tag = randomUUID().slice(0, 8);
  const prefix = `erase-${tag}:`;
  let backends: Backends;
  let consumers: LogConsumer[] = [];
  let ingest: ReturnType<typeof createIngestApp>;
  let api: ReturnType<typeof createQueryApp>;
  /** Set to hold the next batch that carries `holdKey`; `held` resolves when the worker has it, `folded` when it is done. */
  let hold: { key: string; release: Promise<void>; held: () => void; folded: () => void } | undefined;

  beforeAll(async () => {
    const env = parseEnv({
      LOG_LEVEL: 'silent',
      KAFKA_GROUP_ID: `erase-${tag}`,
      KAFKA_PARTITIONS: '3',
      // Embedded: the in-process log only, nothing written into the working directory.
      ...(mode === 'embedded' ? { DATA_DIR: 'memory' } : { KAFKA_BROKERS: kafkaBrokers(), REDIS_PREFIX: prefix }),
      ...(mode === 'real' ? { REDIS_URL: redisUrl() } : mode === 'cluster' ? { REDIS_CLUSTER_NODES: redisClusterNodes() } : {}),
    });
    backends = await openBackends(env, foldOptionsOf(map), logger);
    ingest = createIngestApp({ producer: backends.producer, logger, maxBodyBytes: 64 * 1024, retryAfterSeconds: 1 });
    api = createQueryApp({ store: backends.store, logger, keys: { full: [KEY], read: [] }, dashboard: false });
    const handler = createBatchHandler({ store: backends.store, topicMap: map, producer: backends.producer, logger });
    const raw = backends.rawConsumer();
    const erasures = backends.erasureConsumer();
    consumers = [raw, erasures];
    await Promise.all([
      erasures.run(followErasures(backends.store, logger)),
      raw.run(async (b, ctl) => {
        const h = hold;
        if (h && b.messages.some((m) => m.key === h.key)) {
          hold = undefined;
          h.held();
          await h.release;
          await handler(b, ctl);
          h.folded();
          return;
        }
        await handler(b, ctl);
      }),
    ]);
  });
  afterAll(async () => {
    await Promise.allSettled(consumers.map((c) => c.stop()));
    await backends?.close();
  });

  const post = (body: unknown) =>
    ingest.request('/v1/collect', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const call = (method: string, path: string) => api.request(path, { method, headers: { authorization: `Bearer ${KEY}` } });
  const view = async (store: HistoryStore, id: string) => store.getPerson(id);
  const atStage = async (store: HistoryStore, topic: string) =>
    (await Promise.all(['intro', 'detail', 'purchase'].map((s) => store.stageMembers(topic, s, 0, 1000)))).flat().map((m) => m.person);

  it('leaves nothing of the person, folds what came after as new, and a replay from the beginning agrees', async () => {
    const visitor = `ev-${tag}`;
    const user = `eu-${tag}`;
    const sku = `sku-e${tag}`;
    const later = `sku-l${tag}`;
    // Folded before the erase: two page views, then the identify that merges the visitor into the user.
    expect(
      (
        await post(
          batch(visitor, [
            { type: 'page', url: `/products/${sku}` },
            { type: 'page', url: `/products/${sku}/specs` },
          ]),
        )
      ).status,
    ).toBe(202);
    expect((await post(batch(visitor, [{ type: 'identify', user }]))).status).toBe(202);
    await eventually(async () => ((await view(backends.store, user))?.linkedIds.includes(visitor) ? true : undefined), 30_000, 'the merged person');

    // The worker takes the user's next batch and holds it; the erase comes while it does.
    let held!: () => void;
    let folded!: () => void;
    let release!: () => void;
    const isHeld = new Promise<void>((r) => (held = r));
    const isFolded = new Promise<void>((r) => (folded = r));
    hold = { key: user, release: new Promise<void>((r) => (release = r)), held, folded };
    expect(
      (
        await post(
          batch(
            visitor,
            [
              { type: 'page', url: `/checkout/${sku}` },
              { type: 'track', name: 'Paid', url: `/checkout/${sku}`, value: 99 },
            ],
            { user },
          ),
        )
      ).status,
    ).toBe(202);
    await isHeld;
    try {
      const erased = await call('DELETE', `/v1/people/${visitor}`);
      expect(erased.status).toBe(200);
      expect(await erased.json()).toMatchObject({ person: user, erasedIds: [user, visitor], held: true });
    } finally {
      release();
    }
    await isFolded;

    // Nothing of them: no history, no index entry, in the store the process serves.
    expect(await view(backends.store, user)).toBeNull();
    expect(await view(backends.store, visitor)).toBeNull();
    expect(await atStage(backends.store, `product:${sku}`)).toEqual([]);
    expect((await call('GET', `/v1/people/${user}/export`)).status).toBe(404);

    // The visitor comes back after the erasure: a new history, about what they did since.
    expect((await post(batch(visitor, [{ type: 'page', url: `/products/${later}` }]))).status).toBe(202);
    const back = await eventually(async () => (await view(backends.store, visitor)) ?? undefined, 30_000, 'the new history');
    expect(back).toMatchObject({ person: visitor, linkedIds: [], rfm: null });
    expect(back.dialogues.map((d) => [d.topic, d.stage, d.counts.intro])).toEqual([[`product:${later}`, 'intro', 1]]);

    // The erasure is on the log, one record per id.
    const onLog = (records: ErasureRecord[]) => records.filter((r) => r.person === user);
    if (mode === 'embedded') {
      expect(
        onLog(recordsOf<ErasureRecord>(backends.log!, TOPICS.erasures))
          .map((r) => r.id)
          .sort(),
      ).toEqual([user, visitor].sort());
      return;
    }
    const logged = await readTopic(
      TOPICS.erasures,
      (_, value) => JSON.parse(value) as ErasureRecord,
      (found) => onLog(found).length >= 2,
    );
    expect(
      onLog(logged)
        .map((r) => r.id)
        .sort(),
    ).toEqual([user, visitor].sort());
    const live = await inspectNamespace(await ready(redisFor(mode)), prefix);
    expect(live.people).not.toContain(user);
    expect(live.indexed).not.toContain(user);
    expect(live.erased).toEqual(expect.arrayContaining([user, visitor]));

    // A replay of clicks.raw from the beginning into a fresh namespace: the erased records stay erased.
    const redis = redisFor(mode);
    const log = await openKafkaLog({ brokers: kafkaBrokers(), clientId: `erase-replay-${tag}`, logger, producer: { ackTimeoutMs: 5000 } });
    const namespace = `${prefix}replay:`;
    try {
      await replay({ log, redis, map: DEFAULT_TOPIC_MAP, logger, from: 'earliest', namespace });
    } finally {
      await log.close();
    }
    const rebuilt = new RedisHistoryStore(redis, backends.store.options, namespace);
    expect(await view(rebuilt, user)).toBeNull();
    expect(await view(rebuilt, visitor)).toEqual(await view(backends.store, visitor));
    expect(await atStage(rebuilt, `product:${sku}`)).toEqual([]);
    const replayed = await inspectNamespace(redis, namespace);
    expect(replayed.people).not.toContain(user);
    expect(replayed.indexed).not.toContain(user);
    expect(replayed.erased).toEqual(expect.arrayContaining([user, visitor]));
  }, 180_000);
});

const clients = new Map<string, ReturnType<typeof redisClient>>();
function redisFor(mode: 'real' | 'cluster') {
  let c = clients.get(mode);
  if (!c) clients.set(mode, (c = redisClient(mode)));
  return c;
}
afterAll(() => {
  for (const c of clients.values()) c.disconnect();
});
