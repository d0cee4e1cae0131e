/**
 * The tracker snippet in Chromium through the demo shop: multi-page and single-page walks up the ladder.
 * The harness and its helpers: test/support/snippet-harness.ts.
 */
import { describe, expect, it } from 'vitest';
import type { RawEvent } from '../../contract/raw-event.js';
import { eventually } from '../support/app.js';
import { useSnippetHarness } from '../support/snippet-harness.js';

describe('tracker snippet in Chromium: the demo shop', () => {
  const { h, records, arrived, expectNoDuplicates, open, loaded, storage } = useSnippetHarness();

  it('places a person who clicks through the demo shop at purchase', async () => {
    const { page, errors } = await open('/');
    await page.click('text=Trail Runner 2');
    await page.waitForURL(/\/products\/sku-1$/);
    await page.click('#compare');
    await page.click('text=See the full specs');
    await page.waitForURL(/\/products\/sku-1\/specs$/);
    await page.click('text=Buy now');
    await page.waitForURL(/\/checkout\/sku-1$/);
    await loaded(page);
    await page.click('#pay');

    const visitor = (await storage(page)).local.clickfold!.split('|')[0]!;
    const mine = (r: RawEvent) => r.visitor === visitor;
    const pages = await arrived('demo', 4, (r) => mine(r) && r.type === 'page', 0);
    expect(pages.map((r) => new URL(r.url!).pathname)).toEqual(['/', '/products/sku-1', '/products/sku-1/specs', '/checkout/sku-1']);
    const order = await arrived('demo', 1, (r) => mine(r) && r.name === 'Order Completed', 1500);
    expect(order[0]).toMatchObject({ props: { sku: 'sku-1' }, value: 129 });

    const person = await eventually(
      async () => {
        const res = await fetch(`${h.url}/v1/people/${visitor}`);
        if (!res.ok) return undefined;
        const view = (await res.json()) as { dialogues: { topic: string; stage: string }[] };
        return view.dialogues.find((d) => d.topic === 'product:sku-1' && d.stage === 'purchase') ? view : undefined;
      },
      10_000,
      'product:sku-1 at purchase',
    );
    expect(person.dialogues.find((d) => d.topic === 'product:sku-1')?.stage).toBe('purchase');
    expectNoDuplicates('demo');
    expect(errors).toEqual([]);
  });

  it('moves a person up the ladder in the single-page demo shop, views counted once each', async () => {
    const { page, errors } = await open('/spa');
    await page.click('button[data-go="/spa/sku-2"]');
    await page.click('text=Show the specs');
    await page.click('text=Go to checkout');
    await page.click('#spa-pay');

    const visitor = (await storage(page)).local.clickfold!.split('|')[0]!;
    const mine = (r: RawEvent) => r.visitor === visitor;
    const pages = await arrived('demo', 4, (r) => mine(r) && r.type === 'page');
    expect(pages.map((r) => new URL(r.url!).pathname)).toEqual(['/spa', '/spa/sku-2', '/spa/sku-2/specs', '/spa/sku-2/checkout']);
    const clicks = records('demo').filter((r) => mine(r) && r.type === 'click');
    expect(clicks.map((r) => [r.topic, r.stage])).toEqual([
      ['product:sku-2', 'intro'],
      ['product:sku-2', 'detail'],
      ['product:sku-2', 'purchase'],
      ['product:sku-2', 'purchase'],
    ]);
    // The page's own panel shows the stage, from the query API.
    await page.waitForFunction(`document.getElementById('dialogues').textContent.includes('product:sku-2purchase')`, undefined, { timeout: 10_000 });
    expectNoDuplicates('demo');
    expect(errors).toEqual([]);
  });
});
