import { describe, expect, it, vi } from 'vitest';
import type { Funnel, Topics } from '../../contract/query.js';
import { funnelBox, signalWords, topicFunnel } from '../../history/dashboard/figures.js';
import type { BatchRecord } from '../../history/fold/person-batch.js';
import { createQueryApp } from '../../history/query/app.js';
import * as shared from '../../history/query/funnel.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { createLogger } from '../../lib/logger.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';

/**
 * The funnel figures the dashboard shows come from the API's own arithmetic
 * (history/query/funnel.ts), not from a copy of it: the topic boxes are computed by
 * `computeFunnel` itself, they equal what `GET /v1/topics/{topic}/funnel` answers for the same
 * people, and the browser bundle carries that module (and nothing of zod).
 */
vi.mock('../../history/query/funnel.js', { spy: true });

const LADDER = ['intro', 'detail', 'purchase'];
const NOW = Date.UTC(2026, 5, 10, 12);

describe('dashboard funnel figures', () => {
  it('computes each topic box with computeFunnel, from the stage counts in ladder order', () => {
    const compute = vi.mocked(shared.computeFunnel);
    compute.mockClear();
    const f = topicFunnel(LADDER, { stages: { purchase: 2, intro: 2, detail: 2, other: 9 } });
    expect(compute).toHaveBeenCalledTimes(1);
    expect(compute).toHaveBeenCalledWith(LADDER, [2, 2, 2]);
    expect(f).toBe(compute.mock.results[0]!.value);

    // Whatever the shared arithmetic answers is what the box shows.
    const planted: shared.Funnel = {
      people: 7,
      overallConversion: 0.1,
      stages: [
        { stage: 'intro', atStage: 1, reached: 7, conversionToNext: 0.4286 },
        { stage: 'detail', atStage: 5, reached: 3, conversionToNext: 0.3333 },
        { stage: 'purchase', atStage: 1, reached: 1, conversionToNext: null },
      ],
    };
    compute.mockReturnValueOnce(planted);
    const box = funnelBox(topicFunnel(LADDER, { stages: {} }));
    expect(box.total).toBe('7 people');
    expect(box.bars.map((b) => [b.stage, b.count, b.wentOn])).toEqual([
      ['intro', '7', '↓ 43% went on'],
      ['detail', '3', '↓ 33% went on'],
      ['purchase', '1', null],
    ]);
  });

  it('shows what the funnel says: at-least counts, bar lengths, and the share who went on', () => {
    const box = funnelBox(topicFunnel(LADDER, { stages: { intro: 2, detail: 2, purchase: 2 } }));
    expect(box.total).toBe('6 people');
    expect(box.bars.map((b) => [b.name, b.count, Math.round(b.width), b.wentOn])).toEqual([
      ['Had a first look', '6', 100, '↓ 67% went on'],
      ['Looked at the details', '4', 67, '↓ 50% went on'],
      ['Bought', '2', 33, null],
    ]);
    expect(box.bars[1]!.title).toBe('4 people got at least this far; 2 people stopped here');
    // Nobody went past the first step: no percentage where nobody reached the stage.
    const empty = funnelBox(topicFunnel(LADDER, { stages: { intro: 3 } }));
    expect(empty.bars.map((b) => b.wentOn)).toEqual(['↓ 0% went on', null, null]);
    expect(funnelBox(topicFunnel(LADDER, { stages: {} })).bars.map((b) => [b.count, b.width, b.wentOn])).toEqual([
      ['0', 0, null],
      ['0', 0, null],
      ['0', 0, null],
    ]);
  });

  it('equals the API funnel endpoint for the same people', async () => {
    const store = new MemoryHistoryStore(FOLD_OPTIONS);
    let offset = 0;
    const rec = (person: string, stage: number, topic = 'product:sku-1'): BatchRecord => ({
      offset: offset++,
      person,
      event: { id: `e-${offset}`, ts: NOW - 3_600_000 + offset, channel: 'web', topic, stage },
    });
    const o = await store.foldBatch('clicks.raw/0', [
      rec('a', 0),
      rec('b', 0),
      rec('b', 1),
      rec('c', 1),
      rec('d', 0),
      rec('d', 1),
      rec('d', 2),
      rec('e', 2),
      rec('f', 0),
      rec('g', 0, 'plan:pro'),
    ]);
    await o.published();
    const app = createQueryApp({ store, logger: createLogger('test', 'silent'), dashboard: false, now: () => NOW });
    const topics = (await (await app.request('/v1/topics')).json()) as Topics;
    expect(topics.topics.map((t) => t.topic)).toEqual(['product:sku-1', 'plan:pro']);
    for (const t of topics.topics) {
      const api = (await (await app.request(`/v1/topics/${encodeURIComponent(t.topic)}/funnel`)).json()) as Funnel;
      const { people, stages, overallConversion } = api;
      expect(topicFunnel(topics.ladder, t)).toEqual({ people, stages, overallConversion });
    }
    expect(topicFunnel(topics.ladder, topics.topics[0]!).stages.map((s) => s.reached)).toEqual([6, 4, 2]);
  });

  it('bundles the shared arithmetic into the browser code, and no package but the chart’s (no zod)', async () => {
    const { bundleDashboard, bundleProblem } = await import('../../history/dashboard/build.js');
    const b = await bundleDashboard();
    expect(b.inputs).toContain('history/query/funnel.ts');
    expect(b.inputs).toContain('history/dashboard/figures.ts');
    expect(b.inputs.filter((f) => f.includes('node_modules/') || f.startsWith('contract/'))).toEqual(['node_modules/uplot/dist/uPlot.esm.js']);
    expect(bundleProblem({ ...b, inputs: [...b.inputs, 'node_modules/zod/index.js'] })).toMatch(/pulls in packages \(node_modules\/zod/);
    expect(b.code).not.toMatch(/ZodError|\$ZodType/);
    expect(bundleProblem(b)).toBeNull();
  });

  it('words for stalls and audiences', async () => {
    const { durationWords, watches, describeAudience, backfillStatus } = await import('../../history/dashboard/figures.js');
    expect([durationWords(2000), durationWords(3 * 86_400_000), durationWords(90_000)]).toEqual(['2 seconds', '3 days', '90 seconds']);
    expect([watches('*', 'product:a'), watches('product:*', 'product:a'), watches('Product:A', 'product:a'), watches('cart', 'product:a')]).toEqual([
      true,
      true,
      true,
      false,
    ]);
    expect(describeAudience({ all: [{ topic: 'product:*', atLeast: 'detail' }, { not: { exactly: 'purchase' } }] })).toBe(
      'reached “Looked at the details” or further in any topic starting with product: and not at “Bought” in any topic',
    );
    expect(describeAudience({ any: [{ rfm: { recency: { atLeast: 4 } } }, { stalled: 'q', activeWithin: '7d' }] })).toBe(
      'recency score 4–5 or active in the last 1 week, gone quiet by rule “q” in any topic',
    );
    expect(backfillStatus({ state: 'running', total: 4, done: 1, startedAt: '', finishedAt: null })).toMatchObject({ progress: 25 });
  });

  it('trend figures: seconds for the time axis, a row and a total per stage, in words', async () => {
    const { trendFigures } = await import('../../history/dashboard/figures.js');
    const f = trendFigures(LADDER, {
      by: 'hour',
      buckets: [
        { start: '2026-11-30T10:00:00.000Z', counts: { intro: 2, detail: 1, purchase: 0 } },
        { start: '2026-11-30T11:00:00.000Z', counts: { intro: 1, detail: 0, purchase: 1 } },
      ],
    });
    expect(f.xs).toEqual([Date.UTC(2026, 10, 30, 10) / 1000, Date.UTC(2026, 10, 30, 11) / 1000]);
    expect(f.ys).toEqual([
      [2, 1],
      [1, 0],
      [0, 1],
    ]);
    expect(f.totals.map((t) => [t.name, t.total])).toEqual([
      ['Had a first look', 3],
      ['Looked at the details', 1],
      ['Bought', 1],
    ]);
    expect(f.summary).toBe('5 steps forward in the last 2 hours.');
    expect(trendFigures(LADDER, { by: 'day', buckets: [] }).summary).toBe('Nobody moved a step in the last 0 days.');
  });

  it('words for a dialogue’s signals: open ones first, then by name', () => {
    expect(signalWords({})).toEqual([]);
    expect(signalWords({ inquiry: { count: 1, open: false }, refund: { count: 3, open: true }, complaint: { count: 2, open: true } })).toEqual([
      'complaint ×2 open',
      'refund ×3 open',
      'inquiry ×1 settled',
    ]);
  });
});
