/**
 * The dashboard's "Gone quiet" and "Audiences" panels in real headless Chromium against the
 * all-in-one app (embedded backends, an API key, a topic map with a stall rule that waits 2 s).
 * An audience is made through the page's form (a bad definition first: the API's 400 message must
 * show), its member count and members must match the clicks, and both panels must follow the live
 * stream without a reload: a new click enters the audience, then goes quiet and is listed.
 * A screenshot goes to test-artifacts/dashboard-automation.png.
 *
 * Needs Debian's chromium at /usr/bin/chromium (or CHROMIUM_PATH), and the built bundle
 * (`npm run build`, which `npm test` runs first).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import { TopicMapConfig } from '../../history/fold/topic-map.js';
import { batch, eventually, post, startTestApp } from '../support/app.js';
import { launchChromium } from '../support/browser.js';

const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));
const KEY = 'dashboard-automation-e2e-key-0123456789';
const RULE = 'quiet-at-detail';

const MAP = TopicMapConfig.parse({
  rules: [
    { url: '/products/:sku', topic: 'product:{sku}', stage: 'intro' },
    { url: '/products/:sku/specs', topic: 'product:{sku}', stage: 'detail' },
    { url: '/checkout/:sku', topic: 'product:{sku}', stage: 'purchase' },
  ],
  stalls: [{ name: RULE, stage: 'detail', after: '2s' }],
});

const page = (url: string) => ({ type: 'page', url });
const walks: Record<string, Record<string, unknown>[]> = {
  // At intro: in no audience of "detail or further", never stalled by a rule about detail.
  'ana.p': [page('/products/sku-1')],
  // At detail: in the audience, and quiet after 2 s.
  'ben.k': [page('/products/sku-1'), page('/products/sku-1/specs')],
  'cleo.d': [page('/products/sku-1/specs')],
  // Bought: in the audience, but past the stall rule's stage.
  'dan.r': [page('/products/sku-1'), page('/checkout/sku-1')],
};

describe('dashboard: gone quiet and audiences, in Chromium', () => {
  let app: RunningApp;
  let browser: Browser;
  let tab: Page;
  /** Uncaught errors of the page's script: none may happen. */
  const pageErrors: string[] = [];
  const auth = { authorization: `Bearer ${KEY}` };

  beforeAll(async () => {
    [app, browser] = await Promise.all([startTestApp('embedded', { API_KEYS: KEY }, MAP), launchChromium()]);
    for (const [person, events] of Object.entries(walks)) expect((await post(app.url, batch(person, events))).status).toBe(202);
    await eventually(
      async () => {
        const r = await fetch(`${app.url}/v1/topics`, { headers: auth });
        const body = (await r.json()) as { topics: { topic: string; people: number }[] };
        return body.topics.find((t) => t.topic === 'product:sku-1')?.people === 4 ? true : undefined;
      },
      20_000,
      'the clicks folded',
    );
    const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, acceptDownloads: true, timezoneId: 'UTC', locale: 'en-GB' });
    tab = await context.newPage();
    tab.on('pageerror', (err) => pageErrors.push(err.message));
  });

  afterAll(async () => {
    await browser?.close();
    await app?.stop();
  });

  const rowsOf = (tbody: string) => tab.locator(`${tbody} tr`).evaluateAll((rows) => rows.map((r) => r.getAttribute('data-person')));
  const sorted = async (tbody: string) => (await rowsOf(tbody)).sort();
  const members = (name: string) => tab.locator(`#aud-rows tr[data-audience="${name}"] td[data-members]`).getAttribute('data-members');

  it('signs in with the key, offers the stall rule, and makes an audience through the form (the API’s 400 shown first)', async () => {
    await tab.goto(`${app.url}/dashboard`);
    await tab.locator('#keyinput').waitFor({ state: 'visible' });
    await tab.fill('#keyinput', KEY);
    await tab.click('#keyform button[type=submit]');
    await tab.locator('#keygate').waitFor({ state: 'hidden' });
    await expect.poll(() => tab.locator('#live-status').textContent()).toBe('live');

    // The panel is on: the rule is offered for the busiest topic it watches.
    await tab.locator('#quiet-body').waitFor({ state: 'visible' });
    expect(await tab.locator('#quiet-none').isHidden()).toBe(true);
    expect(await tab.locator('#quiet-rule option').allTextContents()).toEqual([`${RULE}: quiet at “Looked at the details” for 2 seconds`]);
    expect(await tab.locator('#quiet-topic').inputValue()).toBe('product:sku-1');

    await tab.locator('#aud-empty').waitFor({ state: 'visible' });
    await tab.fill('#aud-name', 'went-detail');
    await tab.fill('#aud-def', '{"atLeast": "nope"}');
    await tab.click('#audform button[type=submit]');
    await expect.poll(() => tab.locator('#aud-error').textContent()).toMatch(/"nope" is not on the ladder \(intro < detail < purchase\)/);
    await tab.fill('#aud-def', '{"atLeast": ');
    await tab.click('#audform button[type=submit]');
    await expect.poll(() => tab.locator('#aud-error').textContent()).toMatch(/not valid JSON/);

    await tab.fill('#aud-def', '{"atLeast": "detail"}');
    await tab.click('#audform button[type=submit]');
    await tab.locator('#aud-saved').waitFor({ state: 'visible' });
    expect(await tab.locator('#aud-error').isHidden()).toBe(true);
    expect(await tab.locator('#aud-saved').textContent()).toMatch(/^Saved “went-detail”/);
    const row = tab.locator('#aud-rows tr[data-audience="went-detail"]');
    await row.waitFor();
    expect(await row.locator('.what').textContent()).toBe('reached “Looked at the details” or further in any topic');

    // The backfill finds everyone at detail or further; the page follows it without a reload.
    await expect.poll(() => members('went-detail'), { timeout: 20_000 }).toBe('3');
    await expect.poll(() => row.locator('td').nth(2).textContent(), { timeout: 20_000 }).toBe('Up to date');
    await expect.poll(() => sorted('#aud-member-rows'), { timeout: 10_000 }).toEqual(['ben.k', 'cleo.d', 'dan.r']);
    expect(await tab.locator('#aud-members-title').textContent()).toBe('Who is in “went-detail”');
    expect(await tab.locator('#aud-members-summary').textContent()).toBe('3 people in it now. Most recent first.');
  });

  it('lists the people quiet at detail once the rule’s 2 s have passed', async () => {
    await expect.poll(() => sorted('#quiet-rows'), { timeout: 15_000 }).toEqual(['ben.k', 'cleo.d']);
    const cells = await tab.locator('#quiet-rows tr[data-person="ben.k"] td').allTextContents();
    expect(cells.slice(0, 2)).toEqual(['ben.k', 'Looked at the details']);
    expect(await tab.locator('#quiet-summary').textContent()).toBe(
      '2 people stopped at “Looked at the details” of product:sku-1 and clicked nothing for 2 seconds or more. Most recently gone quiet first.',
    );
  });

  it('follows the live stream: a new click enters the audience, then goes quiet, without a reload', async () => {
    await tab.evaluate(() => ((globalThis as unknown as { marker: number }).marker = 42));
    expect((await post(app.url, batch('eve.l', [page('/products/sku-1/specs')]))).status).toBe(202);

    await expect.poll(() => members('went-detail'), { timeout: 15_000 }).toBe('4');
    await expect.poll(() => rowsOf('#aud-member-rows'), { timeout: 10_000 }).toContain('eve.l');
    expect((await rowsOf('#aud-member-rows'))[0]).toBe('eve.l');

    // 2 s of quiet, then the sweeper's next round (1 s): the stall arrives on the stream.
    await tab.locator(`#live li[data-person="eve.l"][data-stalled="${RULE}"]`).waitFor({ timeout: 15_000 });
    await expect.poll(() => rowsOf('#quiet-rows'), { timeout: 10_000 }).toEqual(expect.arrayContaining(['eve.l', 'ben.k', 'cleo.d']));
    expect((await rowsOf('#quiet-rows'))[0]).toBe('eve.l');
    expect(await tab.evaluate(() => (globalThis as unknown as { marker?: number }).marker)).toBe(42);
  });

  it('exports the quiet list as CSV, saves a screenshot, and deletes the audience', async () => {
    const [download] = await Promise.all([tab.waitForEvent('download'), tab.click('#quiet-csv')]);
    expect(download.suggestedFilename()).toMatch(/^stalled-product_sku-1-quiet-at-detail-\d{4}-\d{2}-\d{2}\.csv$/);
    const csv = readFileSync((await download.path())!, 'utf8')
      .trim()
      .split('\r\n');
    expect(csv[0]).toBe('person,topic,rule,stage,since,stalled_at');
    expect(csv.slice(1).map((l) => l.split(',')[0])).toEqual(['eve.l', ...(await rowsOf('#quiet-rows')).slice(1)]);

    await tab.evaluate(() => (globalThis as unknown as { scrollTo(x: number, y: number): void }).scrollTo(0, 0));
    mkdirSync(ARTIFACTS, { recursive: true });
    await tab.screenshot({ path: `${ARTIFACTS}dashboard-automation.png`, fullPage: true });
    expect(existsSync(`${ARTIFACTS}dashboard-automation.png`)).toBe(true);

    tab.once('dialog', (d) => void d.accept());
    await tab.click('#aud-rows tr[data-audience="went-detail"] button[data-action="delete"]');
    await tab.locator('#aud-empty').waitFor({ state: 'visible' });
    expect(await tab.locator('#aud-rows tr').count()).toBe(0);
    expect(await tab.locator('#aud-members-box').isHidden()).toBe(true);
    const r = await fetch(`${app.url}/v1/audiences`, { headers: auth });
    expect(((await r.json()) as { audiences: unknown[] }).audiences).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});
