import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import { buildSnippet } from '../../tracker-snippet/build.js';
import { eventually, startTestApp } from '../support/app.js';
import { launchChromium } from '../support/browser.js';

// The snippet tests run on the embedded backends; this one clicks through the demo shop with the
// whole app on the real Kafka and Redis, as a site owner's visitor would.
describe('the demo shop in Chromium on the real stack', () => {
  let app: RunningApp;
  let browser: Browser;
  beforeAll(async () => {
    await buildSnippet();
    [app, browser] = await Promise.all([startTestApp('real'), launchChromium()]);
  });
  afterAll(async () => {
    await browser?.close();
    await app?.stop();
  });

  it('places a person who clicks through intro, specs and checkout of one product at purchase', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${app.url}/`);
    await page.click('text=Summit Jacket');
    await page.waitForURL(/\/products\/sku-2$/);
    await page.click('text=See the full specs');
    await page.waitForURL(/\/products\/sku-2\/specs$/);
    await page.click('text=Buy now');
    await page.waitForURL(/\/checkout\/sku-2$/);
    await page.waitForFunction('window.clickfold && !Array.isArray(window.clickfold)');
    await page.click('#pay');
    const visitor = ((await page.evaluate('localStorage.getItem("clickfold")')) as string).split('|')[0]!;

    const person = await eventually(
      async () => {
        const res = await fetch(`${app.url}/v1/people/${visitor}`);
        if (!res.ok) return undefined;
        const view = (await res.json()) as { dialogues: { topic: string; stage: string; counts: Record<string, number> }[]; rfm: unknown };
        const d = view.dialogues.find((x) => x.topic === 'product:sku-2');
        return d?.stage === 'purchase' && view.rfm ? view : undefined;
      },
      20_000,
      'product:sku-2 at purchase',
    );
    const dialogue = person.dialogues.find((d) => d.topic === 'product:sku-2')!;
    expect(dialogue.stage).toBe('purchase');
    // Page views and link clicks on each page count at that page's stage.
    expect(dialogue.counts.intro).toBeGreaterThanOrEqual(1);
    expect(dialogue.counts.detail).toBeGreaterThanOrEqual(1);
    expect(person.rfm).toMatchObject({ purchases: 1, totalValue: 249 });
    expect(errors).toEqual([]);
    await context.close();
  });
});
