/**
 * The dashboard's trend chart and "Happening now" in real headless Chromium against the all-in-one
 * app (embedded backends, with an API key). Transitions made before the page opens must be listed
 * at once (from `GET /v1/transitions/recent`, not the stream); the chart (uPlot, under the page's
 * CSP) must be drawn with each stage's total equal to an independent count of the walks, by hour and
 * by day, and follow a new transition without a reload. A screenshot goes to
 * test-artifacts/dashboard-trend.png.
 *
 * Needs Debian's chromium at /usr/bin/chromium (or CHROMIUM_PATH). No browser is downloaded.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import { batch, eventually, post, startTestApp } from '../support/app.js';
import { launchChromium } from '../support/browser.js';

const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));
const KEY = 'dashboard-trend-e2e-key-0123456789';
const TOPIC = 'product:sku-7';

const page = (url: string) => ({ type: 'page', url });
/** The little of a canvas the test reads (this project's types have no DOM). */
interface Canvas {
  width: number;
  height: number;
  getContext(kind: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } };
}
/** Transitions by stage: intro ann, ben, cat (3); detail ben, cat, dan (3, dan went straight to the specs); purchase cat (1). */
const walks: Record<string, Record<string, unknown>[]> = {
  ann: [page('/products/sku-7')],
  ben: [page('/products/sku-7'), page('/products/sku-7/specs')],
  cat: [page('/products/sku-7'), page('/products/sku-7/specs'), page('/checkout/sku-7')],
  dan: [page('/products/sku-7/specs')],
  eve: [page('/products/sku-8')],
};

describe('dashboard trend chart and latest transitions in Chromium', () => {
  let app: RunningApp;
  let browser: Browser;
  let tab: Page;
  const problems: string[] = [];
  const auth = { authorization: `Bearer ${KEY}` };

  beforeAll(async () => {
    [app, browser] = await Promise.all([startTestApp('embedded', { API_KEYS: KEY }), launchChromium()]);
    for (const [person, events] of Object.entries(walks)) expect((await post(app.url, batch(person, events))).status).toBe(202);
    await eventually(
      async () => {
        const r = await fetch(`${app.url}/v1/transitions/recent?limit=50`, { headers: auth });
        const body = (await r.json()) as { transitions: unknown[] };
        return body.transitions.length === 8 ? true : undefined;
      },
      20_000,
      'the walks folded',
    );
    const context = await browser.newContext({ viewport: { width: 1360, height: 1000 }, timezoneId: 'UTC', locale: 'en-GB' });
    tab = await context.newPage();
    // uPlot must work under the page's CSP: a refused style or script shows up here.
    tab.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy|Refused/i.test(m.text())) problems.push(m.text());
    });
    tab.on('pageerror', (e) => problems.push(String(e)));
  });

  afterAll(async () => {
    await browser?.close();
    await app?.stop();
  });

  const totals = () =>
    tab.locator('#trend-totals li').evaluateAll((items) => items.map((li) => [li.getAttribute('data-stage'), li.querySelector('b')?.textContent]));

  it('opens "Happening now" with the transitions made before the page was loaded', async () => {
    await tab.goto(`${app.url}/dashboard`);
    await tab.locator('#keyinput').waitFor({ state: 'visible' });
    await tab.fill('#keyinput', KEY);
    await tab.click('#keyform button[type=submit]');
    await tab.locator('#keygate').waitFor({ state: 'hidden' });
    await expect.poll(() => tab.locator('#live li').count()).toBe(8);
    expect(await tab.locator('#live-empty').isHidden()).toBe(true);
    // Newest first: the walks were posted in order, eve's last, dan's before it.
    const first = await tab
      .locator('#live li')
      .evaluateAll((items) => items.slice(0, 2).map((li) => [li.getAttribute('data-person'), li.getAttribute('data-to')]));
    expect(first).toEqual([
      ['eve', 'intro'],
      ['dan', 'detail'],
    ]);
    expect(await tab.locator('#live li.fresh').count()).toBe(0);
    expect(await tab.locator('#live li[data-person="dan"][data-to="detail"]').textContent()).toMatch(
      /^dan looked at the details of product:sku-7just now · web$/,
    );
  });

  it('draws the topic’s trend with the right totals, by hour and by day', async () => {
    const hourly = tab.waitForResponse((r) => r.url().includes(`/v1/topics/${encodeURIComponent(TOPIC)}/trend?by=hour`) && r.status() === 200);
    await tab.selectOption('#trend-topic', TOPIC);
    await hourly;
    await expect.poll(totals).toEqual([
      ['intro', '3'],
      ['detail', '3'],
      ['purchase', '1'],
    ]);
    expect(await tab.locator('#trend-summary').textContent()).toBe('7 steps forward in the last 48 hours.');
    const chart = tab.locator(`#trend-chart[data-topic="${TOPIC}"][data-by="hour"] .uplot`);
    await chart.waitFor();
    expect(await chart.locator('.u-legend .u-series .u-label').allTextContents()).toEqual(['Time', 'Had a first look', 'Looked at the details', 'Bought']);
    // Something was drawn: the series' canvas holds coloured pixels.
    const painted = await chart.locator('canvas').evaluate((el) => {
      const c = el as unknown as Canvas;
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i + 3]! > 0 && !(d[i] === d[i + 1] && d[i + 1] === d[i + 2])) n++;
      return n;
    });
    expect(painted).toBeGreaterThan(20);

    const daily = tab.waitForResponse((r) => r.url().includes('/trend?by=day') && r.status() === 200);
    await tab.selectOption('#trend-by', 'day');
    await daily;
    await tab.locator(`#trend-chart[data-by="day"] .uplot`).waitFor();
    expect(await totals()).toEqual([
      ['intro', '3'],
      ['detail', '3'],
      ['purchase', '1'],
    ]);
    expect(await tab.locator('#trend-summary').textContent()).toBe('7 steps forward in the last 30 days.');
  });

  it('follows a new transition without a reload, and saves a screenshot', async () => {
    expect((await post(app.url, batch('ann', [page('/products/sku-7/specs')]))).status).toBe(202);
    await tab.locator('#live li.fresh[data-person="ann"][data-to="detail"]').waitFor({ timeout: 15_000 });
    await expect.poll(totals, { timeout: 10_000 }).toEqual([
      ['intro', '3'],
      ['detail', '4'],
      ['purchase', '1'],
    ]);
    expect(await tab.locator('#live li').count()).toBe(9);
    if (!existsSync(ARTIFACTS)) mkdirSync(ARTIFACTS, { recursive: true });
    await tab.locator('#trend-section').screenshot({ path: `${ARTIFACTS}dashboard-trend.png` });
    expect(problems).toEqual([]);
  });
});
