import { describe, expect, it } from 'vitest';
import { DeadLetter } from '../../contract/dead-letter.js';
import { F, outboxField } from '../../history/fold/codec.js';
import { TOPICS } from '../../contract/raw-event.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { DEFAULT_SEEN_SIZE } from '../../history/store/store.js';
import { compileTopicMap, DEFAULT_TOPIC_MAP, foldOptionsOf, TopicMapConfig } from '../../history/fold/topic-map.js';
import { createBatchHandler } from '../../history/worker/batch.js';
import { createWorkerMetrics } from '../../history/worker/metrics.js';
import { createLogger } from '../../lib/logger.js';

const T0 = 1_700_000_000_000;
let n = 0;
const raw = (person: string, url: string, extra: Record<string, unknown> = {}) => ({
  v: 1,
  id: `e${++n}`,
  site: 'demo',
  person,
  channel: 'web',
  type: 'page',
  ts: T0 + n,
  rt: T0 + n,
  url,
  ...extra,
});

/** A worker over the embedded log and the in-memory store, as `npm start` runs it. */
function worker(config: TopicMapConfig = DEFAULT_TOPIC_MAP) {
  const log = new PartitionedLog(1);
  const map = compileTopicMap(config);
  const store = new MemoryHistoryStore(foldOptionsOf(map, DEFAULT_SEEN_SIZE));
  const metrics = createWorkerMetrics();
  const handle = createBatchHandler({ store, topicMap: map, producer: log.producer(), logger: createLogger('test', 'silent'), metrics });
  let offset = 0;
  return {
    store,
    metrics,
    /** Hands the worker one batch of records (objects are sent as JSON, strings as they are). */
    run: (values: unknown[]) =>
      handle({
        topic: TOPICS.raw,
        partition: 0,
        messages: values.map((v) => ({ offset: String(offset++), key: 'k', value: typeof v === 'string' ? v : JSON.stringify(v), timestamp: 0 })),
      }),
    dead: () =>
      log
        .read(TOPICS.invalid)
        .flat()
        .map((m) => DeadLetter.parse(JSON.parse(m.value))),
    count: async (name: string, labels: Record<string, string> = {}) => {
      const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
      return (metric?.values ?? []).filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((s, v) => s + v.value, 0);
    },
  };
}

describe('the worker under hostile records', () => {
  it('folds a malformed percent-escape and everyone after it: one record cannot stop a partition', async () => {
    const w = worker();
    await w.run([raw('evil', 'https://shop.example/products/%E0'), ...Array.from({ length: 20 }, (_, i) => raw(`v${i}`, '/products/sku-1/specs'))]);
    for (let i = 0; i < 20; i++) expect((await w.store.getPerson(`v${i}`))?.dialogues[0]).toMatchObject({ topic: 'product:sku-1', stage: 'detail' });
    expect((await w.store.getPerson('evil'))?.dialogues[0]?.topic).toBe('product:%e0');
    expect(w.dead()).toEqual([]);
  });

  it('dead-letters each refused record with its step and reason, and folds the rest of the batch', async () => {
    const w = worker();
    await w.run([
      raw('a', `/products/${'x'.repeat(2048)}`),
      raw('{slot}', '/products/sku-1'),
      raw('b', '/products/sku-1', { person: 'line\nbreak' }),
      raw('c', '/products/sku-1', { type: 'purchase' }),
      '{"v":1,',
      raw('ok', '/products/sku-2'),
    ]);
    expect(w.dead().map((d) => [d.offset, d.step, d.reason])).toEqual([
      ['0', 'classify', 'topic_too_long'],
      ['1', 'parse', 'invalid_record'],
      ['2', 'parse', 'invalid_record'],
      ['3', 'parse', 'invalid_record'],
      ['4', 'parse', 'invalid_json'],
    ]);
    expect(w.dead()[1]!.detail).toMatch(/person/);
    expect(w.dead().every((d) => d.stage === 'worker' && (d.payload?.length ?? 0) <= 2049)).toBe(true);
    expect((await w.store.getPerson('ok'))?.dialogues[0]?.topic).toBe('product:sku-2');
  });

  it('refuses events of new topics past the site budget (topic_budget), while known topics go on', async () => {
    const w = worker(TopicMapConfig.parse({ ...DEFAULT_TOPIC_MAP, limits: { topicsPerSite: 2 } }));
    await w.run([raw('p1', '/products/a'), raw('p2', '/products/b')]);
    await w.run([raw('p3', '/products/c'), raw('p4', '/products/a/specs'), raw('p5', '/products/d')]);
    expect(w.dead().map((d) => [d.offset, d.step, d.reason])).toEqual([
      ['2', 'budget', 'topic_budget'],
      ['4', 'budget', 'topic_budget'],
    ]);
    expect((await w.store.getPerson('p4'))?.dialogues[0]).toMatchObject({ topic: 'product:a', stage: 'detail' });
    expect(await w.store.getPerson('p3')).toBeNull();
    expect(await w.store.topics()).toEqual(['product:a', 'product:b']);
  });

  it('refuses events of new sites past the site cap (site_budget)', async () => {
    const w = worker(TopicMapConfig.parse({ ...DEFAULT_TOPIC_MAP, limits: { sites: 1 } }));
    await w.run([raw('p1', '/products/a'), raw('p2', '/products/a', { site: 'minted-1' }), raw('p3', '/products/b')]);
    expect(w.dead().map((d) => [d.offset, d.reason])).toEqual([['1', 'site_budget']]);
    expect(await w.store.getPerson('p3')).not.toBeNull();
  });

  it('takes a forged tick (a record only the sweeper writes) as a tick: no site, no topic, no history', async () => {
    const w = worker();
    // Ticks for ids nobody has, dressed as events, with far-future times and sites never seen: nothing is written.
    const forged = Array.from({ length: 50 }, (_, i) =>
      raw(`nobody-${i}`, '/products/sku-1/specs', {
        type: 'tick',
        site: `forged-${i}`,
        topic: 'product:x',
        stage: 'purchase',
        rt: T0 + 10 ** 12,
        ts: T0 + 10 ** 12,
      }),
    );
    await w.run([...forged, raw('real', '/products/sku-1/specs')]);
    expect(w.store.dump().people).toEqual(['real']);
    expect(w.dead()).toEqual([]);
    expect(await w.store.topics()).toEqual(['product:sku-1']);
    // The sites the forged ticks named were not admitted: with a cap of 2, `demo` and one more fit.
    expect((await w.store.admit('another', [], { sites: 2, topicsPerSite: 10 })).site).toBe(true);
    expect((await w.store.admit('one-too-many', [], { sites: 2, topicsPerSite: 10 })).site).toBe(false);
  });

  it('dead-letters identify storms past the link cap (link_cap)', async () => {
    const w = worker(TopicMapConfig.parse({ ...DEFAULT_TOPIC_MAP, limits: { linksPerPerson: 3 } }));
    await w.run(Array.from({ length: 10 }, (_, i) => ({ ...raw('victim', '/'), type: 'identify', visitor: `anon-${i}`, user: 'victim' })));
    expect(w.dead().map((d) => [d.offset, d.step, d.reason])).toEqual(Array.from({ length: 7 }, (_, i) => [String(i + 3), 'fold', 'link_cap']));
    expect((await w.store.getPerson('victim'))?.linkedIds).toHaveLength(3);
  });

  it('ignores (and counts) hints of topics the map cannot produce', async () => {
    const w = worker();
    await w.run([raw('h', '/products/sku-1', { topic: 'minted:1', stage: 'purchase' }), raw('h2', '/about', { topic: 'minted:2' })]);
    expect((await w.store.getPerson('h'))?.dialogues.map((d) => [d.topic, d.stage])).toEqual([['product:sku-1', 'intro']]);
    expect(await w.store.getPerson('h2')).toBeNull();
    expect(await w.count('clickfold_worker_ignored_total', { reason: 'hint_topic' })).toBe(2);
    expect(await w.store.topics()).toEqual(['product:sku-1']);
  });

  it('refuses the records of a person whose stored history cannot be folded (fold_error); the others go on', async () => {
    const w = worker();
    await w.run([raw('broken', '/products/sku-1')]);
    // A history written by something else: an outbox that is not JSON, from records at or past
    // this batch's start (an outbox from before it was published with its commit, and is not read).
    const stored = (w.store as unknown as { people: Map<string, Record<string, string>> }).people.get('broken')!;
    stored[outboxField('0')] = '{not json';
    stored[F.offsets] = '0=1';
    await w.run([raw('broken', '/products/sku-1/specs'), raw('fine', '/products/sku-1/specs')]);
    expect(w.dead().map((d) => [d.offset, d.step, d.reason])).toEqual([['1', 'fold', 'fold_error']]);
    expect((await w.store.getPerson('fine'))?.dialogues[0]?.stage).toBe('detail');
  });

  it('accounts for every record in the metrics: folded + unmatched + dead-lettered = consumed', async () => {
    const w = worker();
    await w.run([raw('m1', '/products/sku-1'), raw('m2', '/about'), 'nope', raw('m3', `/products/${'y'.repeat(300)}`)]);
    expect(await w.count('clickfold_worker_records_total', { outcome: 'folded' })).toBe(1);
    expect(await w.count('clickfold_worker_records_total', { outcome: 'unmatched' })).toBe(1);
    expect(await w.count('clickfold_worker_records_total', { outcome: 'dead_lettered' })).toBe(2);
    expect(await w.count('clickfold_worker_dead_letters_total', { reason: 'topic_too_long' })).toBe(1);
    expect(await w.count('clickfold_worker_dead_letters_total', { reason: 'invalid_json' })).toBe(1);
  });
});

describe('the worker when its own code fails on a record', () => {
  it('dead-letters the record (worker_error) and folds the rest of the batch', async () => {
    const map = compileTopicMap(DEFAULT_TOPIC_MAP);
    // A classification bug that only one URL trips.
    const buggy = {
      ...map,
      classifyEvent: (e: Parameters<typeof map.classifyEvent>[0]) => {
        if (e.url === '/products/trap') throw new Error('classification bug');
        return map.classifyEvent(e);
      },
    };
    const log = new PartitionedLog(1);
    const store = new MemoryHistoryStore(foldOptionsOf(map));
    const handle = createBatchHandler({ store, topicMap: buggy, producer: log.producer(), logger: createLogger('test', 'silent') });
    const values = [raw('t1', '/products/trap'), raw('t2', '/products/sku-3')].map((v) => JSON.stringify(v));
    await handle({ topic: TOPICS.raw, partition: 0, messages: values.map((value, i) => ({ offset: String(i), key: 'k', value, timestamp: 0 })) });
    const dead = log
      .read(TOPICS.invalid)
      .flat()
      .map((m) => DeadLetter.parse(JSON.parse(m.value)));
    expect(dead.map((d) => [d.offset, d.step, d.reason, d.detail])).toEqual([['0', 'classify', 'worker_error', 'classification bug']]);
    expect((await store.getPerson('t2'))?.dialogues[0]?.topic).toBe('product:sku-3');
  });
});
