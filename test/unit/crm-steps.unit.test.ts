import { describe, expect, it } from 'vitest';
import { bucketOf } from '../../history/crm/trends.js';
import type { BatchRecord } from '../../history/fold/person-batch.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';

/** WORKER_CRM_STEPS: the fold's CRM steps (trends, cross-selling, purchasers) on by default, and off when asked. */
const T = Date.UTC(2026, 10, 30, 9);
let n = 0;
const buy = (person: string, topic: string, ts: number): BatchRecord => ({
  offset: n++,
  person,
  rt: ts,
  event: { id: `b${n}`, ts, channel: 'web', topic, stage: 2, value: 10 },
});

async function fold(crmSteps: boolean | undefined) {
  const store = new MemoryHistoryStore({ ...FOLD_OPTIONS, crmSteps }, () => T + 60_000);
  for (const person of ['a', 'b', 'c']) {
    await (await store.foldBatch('0', [buy(person, 'product:x', T)])).published();
    await (await store.foldBatch('0', [buy(person, 'product:y', T + 1000)])).published();
  }
  const hour = bucketOf(T, 'hour');
  return {
    trend: (await store.trend('product:x', 'hour', hour, hour)).flat(),
    related: await store.related('product:x', 10),
    purchasers: (await store.purchasers(10)).total,
    stage: (await store.getPerson('a'))?.dialogues.map((d) => d.stage),
  };
}

describe('the fold’s CRM steps', () => {
  it('count trends, cross-selling and purchasers by default', async () => {
    const on = await fold(undefined);
    expect(on.trend).toEqual([0, 0, 3]);
    expect(on.related.map((r) => r.topic)).toEqual(['product:y']);
    expect(on.purchasers).toBe(3);
  });

  it('keep none of them when off, and fold the stages the same', async () => {
    const off = await fold(false);
    expect(off.trend).toEqual([0, 0, 0]);
    expect(off.related).toEqual([]);
    expect(off.purchasers).toBe(0);
    expect(off.stage).toEqual((await fold(true)).stage);
  });
});
