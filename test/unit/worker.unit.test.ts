import { describe, expect, it } from 'vitest';
import { DeadLetter } from '../../contract/dead-letter.js';
import { TOPICS } from '../../contract/raw-event.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { compileTopicMap, DEFAULT_TOPIC_MAP } from '../../history/fold/topic-map.js';
import { createBatchHandler } from '../../history/worker/batch.js';
import { createLogger } from '../../lib/logger.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';

describe('the worker batch step', () => {
  it('folds valid records and dead-letters the others with their reason, without stopping the partition', async () => {
    const log = new PartitionedLog(1);
    const store = new MemoryHistoryStore(FOLD_OPTIONS);
    const handle = createBatchHandler({
      store,
      topicMap: compileTopicMap(DEFAULT_TOPIC_MAP),
      producer: log.producer(),
      logger: createLogger('test', 'silent'),
    });
    const good = {
      v: 1,
      id: 'e1',
      site: 'demo',
      person: 'p1',
      channel: 'web',
      type: 'page',
      ts: 1_700_000_000_000,
      rt: 1_700_000_000_000,
      url: '/products/sku-1/specs',
    };
    const values = [
      JSON.stringify(good),
      '{not json',
      JSON.stringify({ ...good, id: 'e2', v: 2 }),
      JSON.stringify({ ...good, id: 'e3', ts: 'yesterday' }),
      JSON.stringify({ ...good, id: 'e4', props: ['not', 'an', 'object'] }),
    ];
    await handle({ topic: TOPICS.raw, partition: 0, messages: values.map((value, i) => ({ offset: String(i), key: 'p1', value, timestamp: 0 })) });

    expect((await store.getPerson('p1'))?.dialogues).toMatchObject([{ topic: 'product:sku-1', stage: 'detail', counts: { detail: 1 } }]);
    const dead = log
      .read(TOPICS.invalid)
      .flat()
      .map((m) => DeadLetter.parse(JSON.parse(m.value)));
    expect(dead.map((d) => d.offset)).toEqual(['1', '2', '3', '4']);
    expect(dead.map((d) => [d.stage, d.step, d.reason])).toEqual([
      ['worker', 'parse', 'invalid_json'],
      ['worker', 'parse', 'invalid_record'],
      ['worker', 'parse', 'invalid_record'],
      ['worker', 'parse', 'invalid_record'],
    ]);
    expect(dead[1]!.detail).toMatch(/^not a raw event: v:/);
    expect(dead[2]!.detail).toMatch(/ts:/);
    expect(dead[3]!.detail).toMatch(/props/);
  });

  it('in slices (yieldEvery, as in `npm start`) gives the loop turns while reading and folds the same', async () => {
    const topicMap = compileTopicMap(DEFAULT_TOPIC_MAP);
    const logger = createLogger('test', 'silent');
    const record = (i: number) =>
      JSON.stringify({
        v: 1,
        id: `e${i}`,
        site: 'demo',
        person: `p${i % 7}`,
        channel: 'web',
        type: 'page',
        ts: 1_700_000_000_000 + i,
        rt: 1_700_000_000_000,
        url: `/products/sku-${i % 5}${i % 3 ? '/specs' : ''}`,
      });
    const batch = {
      topic: TOPICS.raw,
      partition: 0,
      messages: Array.from({ length: 40 }, (_, i) => ({ offset: String(i), key: `p${i % 7}`, value: record(i), timestamp: 0 })),
    };
    const fold = async (yieldEvery?: number) => {
      const log = new PartitionedLog(1);
      const store = new MemoryHistoryStore(FOLD_OPTIONS);
      let turns = 0;
      // Counts the turns of the loop the handler left while it ran (an HTTP answer would be one).
      let ticking = true;
      const tick = () => {
        if (!ticking) return;
        turns++;
        setImmediate(tick);
      };
      setImmediate(tick);
      await createBatchHandler({ store, topicMap, producer: log.producer(), logger, yieldEvery })(batch);
      ticking = false;
      const people = await Promise.all(Array.from({ length: 7 }, (_, i) => store.getPerson(`p${i}`)));
      return { turns, people: people.map((p) => p?.dialogues.map((d) => [d.topic, d.stage, d.counts])) };
    };
    const whole = await fold();
    const sliced = await fold(8);
    expect(sliced.people).toEqual(whole.people);
    expect(sliced.turns).toBeGreaterThanOrEqual(whole.turns + 40 / 8 - 1);
  });
});
