/**
 * The marketers' dashboard in real headless Chromium against the all-in-one app (embedded
 * backends, with an API key so the page has to ask for it). A scripted click-through posts collect
 * batches as the snippet would; the page must show each topic's funnel with the right counts, a
 * new transition in the live feed without a reload, the needs list and its CSV export, and a person
 * (with what they might buy next).
 * A screenshot goes to test-artifacts/dashboard.png.
 *
 * Needs Debian's chromium at /usr/bin/chromium (or CHROMIUM_PATH). No browser is downloaded.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import { batch, eventually, post, startTestApp } from '../support/app.js';
import { launchChromium } from '../support/browser.js';

const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));
const KEY = 'dashboard-e2e-key-0123456789';

const page = (url: string) => ({ type: 'page', url });
const walks: Record<string, Record<string, unknown>[]> = {
  // product:sku-1: 6 people had a first look, 4 read the specs, 2 bought.
  'mia.k': [page('/products/sku-1')],
  'noah.b': [page('/products/sku-1'), page('/products/sku-1')],
  'olivia.r': [page('/products/sku-1'), page('/products/sku-1/specs')],
  'liam.t': [page('/products/sku-1'), page('/products/sku-1/specs'), page('/products/sku-1/specs'), page('/products/sku-1/specs')],
  'emma.w': [
    page('/products/sku-1'),
    page('/products/sku-1/specs'),
    page('/checkout/sku-1'),
    { type: 'track', url: '/checkout/sku-1', name: 'Order Completed', value: 129, topic: 'product:sku-1', stage: 'purchase' },
  ],
  'lucas.m': [page('/products/sku-1/specs'), page('/checkout/sku-1')],
  // product:sku-2: 2 people, one read the specs.
  'ava.s': [page('/products/sku-2'), page('/products/sku-2/specs')],
  'ethan.j': [page('/products/sku-2')],
};

describe('dashboard in Chromium', () => {
  let app: RunningApp;
  let browser: Browser;
  let tab: Page;
  const auth = { authorization: `Bearer ${KEY}` };

  beforeAll(async () => {
    [app, browser] = await Promise.all([startTestApp('embedded', { API_KEYS: KEY }), launchChromium()]);
    for (const [person, events] of Object.entries(walks)) expect((await post(app.url, batch(person, events))).status).toBe(202);
    await eventually(
      async () => {
        const r = await fetch(`${app.url}/v1/topics`, { headers: auth });
        const body = (await r.json()) as { topics: { topic: string; people: number }[] };
        return body.topics.find((t) => t.topic === 'product:sku-1')?.people === 6 && body.topics.find((t) => t.topic === 'product:sku-2')?.people === 2
          ? true
          : undefined;
      },
      20_000,
      'the click-through folded',
    );
    const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, acceptDownloads: true, timezoneId: 'UTC', locale: 'en-GB' });
    tab = await context.newPage();
  });

  afterAll(async () => {
    await browser?.close();
    await app?.stop();
  });

  const counts = async (topic: string) =>
    tab
      .locator(`article.topic[data-topic="${topic}"] .step`)
      .evaluateAll((steps) => steps.map((s) => [s.getAttribute('data-stage'), s.querySelector('.count')?.textContent]));

  it('asks for the API key, then shows each topic’s funnel with the right counts', async () => {
    await tab.goto(`${app.url}/dashboard`);
    await tab.locator('#keyinput').waitFor({ state: 'visible' });
    await tab.fill('#keyinput', 'not-the-key-at-all');
    await tab.click('#keyform button[type=submit]');
    await expect.poll(() => tab.locator('#keyerror').textContent()).toBe('That key was not accepted. Check it and try again.');
    await tab.fill('#keyinput', KEY);
    await tab.click('#keyform button[type=submit]');
    await tab.locator('#keygate').waitFor({ state: 'hidden' });

    await tab.locator('article.topic[data-topic="product:sku-1"]').waitFor();
    // "Reached at least": intro 6, detail 4 (lucas went straight to the specs), purchase 2.
    expect(await counts('product:sku-1')).toEqual([
      ['intro', '6'],
      ['detail', '4'],
      ['purchase', '2'],
    ]);
    expect(await counts('product:sku-2')).toEqual([
      ['intro', '2'],
      ['detail', '1'],
      ['purchase', '0'],
    ]);
    expect(await tab.locator('article.topic[data-topic="product:sku-1"] .went-on').allTextContents()).toEqual(['↓ 67% went on', '↓ 50% went on']);
    expect(await tab.locator('article.topic[data-topic="product:sku-1"] .total').textContent()).toBe('6 people');
    await expect.poll(() => tab.locator('#live-status').textContent()).toBe('live');

    // With a time window the boxes come from the funnel endpoint: the same figures (everyone was active today).
    const funnels = tab.waitForResponse((r) => r.url().includes('/funnel?since=7d') && r.status() === 200);
    await tab.selectOption('#window', '7d');
    await funnels;
    await expect
      .poll(() => counts('product:sku-1'))
      .toEqual([
        ['intro', '6'],
        ['detail', '4'],
        ['purchase', '2'],
      ]);
    expect(await tab.locator('article.topic[data-topic="product:sku-1"] .went-on').allTextContents()).toEqual(['↓ 67% went on', '↓ 50% went on']);
    await tab.selectOption('#window', '');
  });

  it('lists who to contact and exports the list as CSV', async () => {
    await tab.selectOption('#needs-topic', 'product:sku-1');
    await tab.selectOption('#needs-stage', 'detail');
    await expect
      .poll(() => tab.locator('#needs-rows tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-person'))))
      .toEqual(['liam.t', 'olivia.r']);
    expect(await tab.locator('#needs-summary').textContent()).toBe('2 people got as far as “Looked at the details” but not to “Bought”. Most promising first.');

    const [download] = await Promise.all([tab.waitForEvent('download'), tab.click('#needs-csv')]);
    expect(download.suggestedFilename()).toMatch(/^needs-product_sku-1-detail-\d{4}-\d{2}-\d{2}\.csv$/);
    const csv = readFileSync((await download.path())!, 'utf8')
      .trim()
      .split('\r\n');
    expect(csv[0]).toBe('person,topic,stage,last_activity,stage_reached_at,interactions,channels,score,ltv_to_date,ltv_projected');
    expect(csv.slice(1).map((l) => l.split(',')[0])).toEqual(['liam.t', 'olivia.r']);
  });

  it('shows a new transition in the live feed without a reload, and the funnel follows', async () => {
    await tab.evaluate(() => ((globalThis as unknown as { marker: number }).marker = 42));
    expect((await post(app.url, batch('mia.k', [page('/products/sku-1/specs')]))).status).toBe(202);
    const item = tab.locator('#live li[data-person="mia.k"][data-to="detail"]');
    await item.waitFor({ timeout: 15_000 });
    expect(await item.textContent()).toMatch(/^mia\.k looked at the details of product:sku-1just now · web$/);
    await expect
      .poll(() => counts('product:sku-1'), { timeout: 10_000 })
      .toEqual([
        ['intro', '6'],
        ['detail', '5'],
        ['purchase', '2'],
      ]);
    // Same document: no reload happened.
    expect(await tab.evaluate(() => (globalThis as unknown as { marker?: number }).marker)).toBe(42);
  });

  it('looks a person up, and saves a screenshot', async () => {
    await tab.click('#needs-rows tr[data-person="liam.t"] button');
    await tab.locator('#person .person').waitFor();
    expect(await tab.locator('#person h3').first().textContent()).toBe('liam.t');
    expect(await tab.locator('#person tbody tr').first().locator('td').first().textContent()).toBe('product:sku-1');

    // Someone who bought sku-1 went on to buy sku-2: emma, who bought sku-1, might buy it next.
    expect((await post(app.url, batch('zoe.p', [page('/checkout/sku-1'), page('/checkout/sku-2')]))).status).toBe(202);
    await eventually(
      async () => {
        const r = await fetch(`${app.url}/v1/topics/product:sku-1/related`, { headers: auth });
        return ((await r.json()) as { related: unknown[] }).related.length > 0 ? true : undefined;
      },
      15_000,
      'the purchase after a purchase counted',
    );
    await tab.fill('#person-id', 'emma.w');
    await tab.click('#personform button');
    await expect.poll(() => tab.locator('#person .scores').textContent()).toBe('Bought recently 5/5Buys often 1/5Spends a lot 2/5');
    expect(await tab.locator('#person h3').allTextContents()).toContain('Might buy next');
    expect(await tab.locator('#person .next li').allTextContents()).toEqual(['product:sku-2 (1 of 3 who bought product:sku-1)']);

    // A few more live steps so the screenshot shows a lived-in feed.
    expect((await post(app.url, batch('ethan.j', [page('/products/sku-2/specs')]))).status).toBe(202);
    expect((await post(app.url, batch('noah.b', [page('/products/sku-1/specs'), page('/checkout/sku-1')]))).status).toBe(202);
    await tab.locator('#live li[data-person="noah.b"][data-to="purchase"]').waitFor({ timeout: 15_000 });
    await expect
      .poll(() => counts('product:sku-1'), { timeout: 10_000 })
      .toEqual([
        ['intro', '7'],
        ['detail', '7'],
        ['purchase', '4'],
      ]);
    await tab.evaluate(() => (globalThis as unknown as { scrollTo(x: number, y: number): void }).scrollTo(0, 0));
    mkdirSync(ARTIFACTS, { recursive: true });
    await tab.screenshot({ path: `${ARTIFACTS}dashboard.png`, fullPage: true });
    expect(existsSync(`${ARTIFACTS}dashboard.png`)).toBe(true);
  });
});
