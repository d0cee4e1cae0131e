/**
 * `clickfold.push(['stages', callback])` in Chromium, end to end: a shop on another origin embeds
 * the snippet as the README says, the snippet loads its add-on (t-stages.js) from ingest, and the
 * callback hears the visitor's stages as the all-in-one app (ingest, worker, the visitor API)
 * folds its clicks. Who may read whose stages is the point: another visitor, and an identified
 * visitor without the site's signature, see nothing.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import { signUser } from '../../ingest/identity.js';
import { closeServer, listen } from '../../lib/serve.js';
import { buildSnippet, buildStagesAddon } from '../../tracker-snippet/build.js';
import { startTestApp } from '../support/app.js';
import { launchChromium } from '../support/browser.js';

const SECRET = 'stages-e2e-identity-secret-0123';
const SIGNED = 'e2e-stages';
const UNSIGNED = 'e2e-stages-unsigned';

/**
 * The shop's page: the README's embed, plus a callback that keeps every map it is given in
 * `window.seen` (as JSON) and an identify when the test asks for one (`?user=&sig=`).
 */
function shopPage(url: URL, ingest: string): string {
  const site = url.searchParams.get('site') ?? SIGNED;
  const user = url.searchParams.get('user');
  const sig = url.searchParams.get('sig');
  const identify = user ? `clickfold.push(['identify', ${JSON.stringify(user)}${sig ? `, ${JSON.stringify(sig)}` : ''}]);` : '';
  return `<!doctype html><html><head><meta charset="utf-8"><title>Shop ${url.pathname}</title>
<script>window.clickfold = window.clickfold || [];</script>
<script async src="${ingest}/t.js" data-site="${site}"></script>
<script>
  window.seen = [];
  ${identify}
  clickfold.push(['stages', function (stages) { window.seen.push(JSON.stringify(stages)); }]);
</script></head><body><h1>${url.pathname}</h1>
<a id="specs" href="#" onclick="history.pushState({}, '', location.pathname + '/specs'); return false">Specs</a>
</body></html>`;
}

describe('stages callback in Chromium, on a shop of another origin', () => {
  let app: RunningApp;
  let shop: { server: ServerType; url: string };
  let browser: Browser;
  let dir: string;
  const contexts: BrowserContext[] = [];
  /** Every /v1/me/stream answer a page got: its status. */
  const streamStatuses = new Map<Page, number[]>();

  beforeAll(async () => {
    await Promise.all([buildSnippet(), buildStagesAddon()]);
    // The shop answers on `localhost`, ingest on `127.0.0.1`: two origins, as in production.
    const shopApp = new Hono();
    let ingestUrl = '';
    shopApp.get('*', (c) => c.html(shopPage(new URL(c.req.url), ingestUrl)));
    const listening = await listen(shopApp, 0, '127.0.0.1');
    const origin = `http://localhost:${listening.port}`;
    shop = { server: listening.server, url: origin };
    dir = await mkdtemp(join(tmpdir(), 'stages-e2e-'));
    const sitesFile = join(dir, 'sites.json');
    await writeFile(
      sitesFile,
      JSON.stringify({
        sites: [
          { id: SIGNED, origins: [origin], identitySecret: SECRET },
          { id: UNSIGNED, origins: [origin] },
          // The demo shop's own site (it is served by the app itself).
          { id: 'demo', origins: ['*'] },
        ],
      }),
    );
    [app, browser] = await Promise.all([startTestApp('embedded', { INGEST_SITES: sitesFile }), launchChromium()]);
    ingestUrl = app.url;
  });

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    await app?.stop();
    if (shop) await closeServer(shop.server);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A new visitor: a browser context of its own (its own storage). */
  async function visitor(): Promise<BrowserContext> {
    const context = await browser.newContext();
    contexts.push(context);
    return context;
  }

  async function open(context: BrowserContext, path: string): Promise<{ page: Page; errors: string[] }> {
    const page = await context.newPage();
    const errors: string[] = [];
    const statuses: number[] = [];
    streamStatuses.set(page, statuses);
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('response', (r) => {
      if (r.url().includes('/v1/me/stream')) statuses.push(r.status());
    });
    await page.goto(shop.url + path);
    return { page, errors };
  }

  const seen = async (page: Page): Promise<Record<string, string>[]> =>
    ((await page.evaluate('window.seen')) as string[]).map((s) => JSON.parse(s) as Record<string, string>);

  /** Waits until the page's callback was given a map where `topic` is at `stage`. */
  const sees = (page: Page, topic: string, stage: string) =>
    page.waitForFunction(`window.seen.some((m) => JSON.parse(m)[${JSON.stringify(topic)}] === ${JSON.stringify(stage)})`, undefined, { timeout: 15_000 });

  it('calls back with each stage as the visitor walks a product, in a second tab too, and never for another visitor', async () => {
    const alice = await visitor();
    const { page, errors } = await open(alice, `/products/sku-1`);
    await sees(page, 'product:sku-1', 'intro');
    const ids = (await page.evaluate(`localStorage.getItem('clickfold')`)) as string;
    const [visitorId, sessionId] = ids.split('|');
    // The ids are unguessable: 128 random bits (four 32-bit numbers as digits).
    expect(visitorId).toMatch(/^\d{30,40}$/);
    expect(sessionId).toMatch(/^\d{30,40}$/);

    // A second tab of the same visitor, on a page about something else.
    const { page: tab2 } = await open(alice, `/about`);
    await sees(tab2, 'product:sku-1', 'intro');

    // Another visitor, on another product, at the same time.
    const bob = await visitor();
    const { page: bobPage } = await open(bob, `/products/sku-2`);
    await sees(bobPage, 'product:sku-2', 'intro');

    // A single-page-app navigation to the specs: detail, in both tabs.
    await page.click('#specs');
    await sees(page, 'product:sku-1', 'detail');
    await sees(tab2, 'product:sku-1', 'detail');

    // A page load to the checkout: the new page registers its callback again and hears purchase.
    await page.goto(`${shop.url}/checkout/sku-1`);
    await sees(page, 'product:sku-1', 'purchase');
    await sees(tab2, 'product:sku-1', 'purchase');
    expect((await seen(page)).at(-1)).toEqual({ 'product:sku-1': 'purchase' });

    // Every map the second tab was given, in order: each stage arrived, none went back.
    const order = ['intro', 'detail', 'purchase'];
    const tab2Stages = (await seen(tab2)).map((m) => m['product:sku-1']).filter((s) => s !== undefined);
    expect(tab2Stages.map((s) => order.indexOf(s!))).toEqual([...tab2Stages.map((s) => order.indexOf(s!))].sort());
    expect(new Set(tab2Stages)).toEqual(new Set(order));

    // The other visitor never heard of Alice's product; it still has its own.
    const bobMaps = await seen(bobPage);
    expect(bobMaps.some((m) => 'product:sku-1' in m)).toBe(false);
    expect(bobMaps.at(-1)).toEqual({ 'product:sku-2': 'intro' });
    expect(errors).toEqual([]);
  });

  it("shows the demo shop's product banner for the visitor's stage: intro, detail, purchase", async () => {
    const context = await visitor();
    const page = await context.newPage();
    const banner = (stage: string) =>
      page.waitForFunction(`document.getElementById('stage-banner')?.dataset.stageNow === ${JSON.stringify(stage)}`, undefined, { timeout: 15_000 });
    await page.goto(`${app.url}/products/sku-1`);
    await banner('intro');
    await page.goto(`${app.url}/products/sku-1/specs`);
    await banner('detail');
    expect(await page.textContent('#stage-banner')).toContain('Questions about Trail Runner 2?');
    await page.goto(`${app.url}/checkout/sku-1`);
    await banner('purchase');
    expect(await page.textContent('#stage-banner')).toContain('Thank you for buying Trail Runner 2');
  });

  it('lets an identified visitor read its stages only with the site signature of its user id', async () => {
    const user = `user-${Date.now().toString(36)}`;
    // The real user, signed by the site's server: reads its stages.
    const signed = await visitor();
    const { page } = await open(signed, `/products/sku-1?user=${user}&sig=${signUser(SECRET, user)}`);
    await sees(page, 'product:sku-1', 'intro');

    // Somebody naming the same user with a forged signature: nothing, neither now nor later.
    const forger = await visitor();
    const { page: forged, errors } = await open(forger, `/products/sku-2?user=${user}&sig=${'0'.repeat(64)}`);
    // The same user id on a site without an identitySecret: nothing either.
    const unsignedVisitor = await visitor();
    const { page: unsigned } = await open(unsignedVisitor, `/products/sku-1?site=${UNSIGNED}&user=${user}`);
    for (const p of [forged, unsigned]) {
      await p.waitForFunction(`performance.getEntriesByType('resource').some((e) => e.name.includes('/v1/me/stream'))`, undefined, { timeout: 15_000 });
    }
    // The real user moves on; the pages without a valid signature still hear nothing.
    await page.goto(`${shop.url}/products/sku-1/specs?user=${user}&sig=${signUser(SECRET, user)}`);
    await sees(page, 'product:sku-1', 'detail');
    expect(await seen(forged)).toEqual([]);
    expect(await seen(unsigned)).toEqual([]);
    expect(streamStatuses.get(forged)).toContain(403);
    expect(streamStatuses.get(unsigned)).toContain(403);
    expect(errors).toEqual([]);
  });
});
