import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import { eventually, startTestApp } from '../support/app.js';
import { launchChromium } from '../support/browser.js';
import { JOURNEY_MAP, purchased, sitesFile, type PersonView } from '../support/segment-journey.js';

/** analytics-next's own browser build, as the npm package ships it. */
const UMD = join(dirname(createRequire(import.meta.url).resolve('@segment/analytics-next/package.json')), 'dist', 'umd');
const WRITE_KEY = `wk_browser_${randomUUID().slice(0, 8)}`;

/**
 * A site's own pages on their own origin (`localhost`, another port than ingest's 127.0.0.1):
 * analytics.js 2.0 from the package, loaded with nothing but its documented options: `cdnURL`
 * (where it reads its settings) and the `Segment.io` integration's `apiHost` / `protocol` (where
 * it sends events), both ingest. `?cdnOnly`: `cdnURL` alone, the settings document names `apiHost`.
 */
function sitePage(ingest: URL, cdnOnly: boolean): string {
  const settings = { writeKey: WRITE_KEY, cdnURL: ingest.origin };
  const options = cdnOnly ? {} : { integrations: { 'Segment.io': { apiHost: `${ingest.host}/v1`, protocol: ingest.protocol.replace(':', '') } } };
  return `<!doctype html><html><head><meta charset="utf-8"><title>Trail Runner 2</title>
<script src="/analytics-next/index.js"></script>
<script>window.analytics = AnalyticsNext.AnalyticsBrowser.load(${JSON.stringify(settings)}, ${JSON.stringify(options)});</script>
</head><body><h1>Shop</h1></body></html>`;
}

/** The site's server; `ingest` is read per request (ingest starts after it: it must know the site's origin). */
function startSite(ingest: () => URL): Promise<{ server: Server; origin: string }> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    if (path.startsWith('/analytics-next/')) {
      // Only the build's own files, by name: nothing else of the disk.
      readFile(join(UMD, basename(path))).then(
        (js) => res.writeHead(200, { 'content-type': 'text/javascript' }).end(js),
        () => res.writeHead(404).end(),
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(sitePage(ingest(), url.searchParams.has('cdnOnly')));
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      resolve({ server, origin: `http://localhost:${port}` });
    }),
  );
}

// analytics.js in Chromium on a page of another origin, against the whole app on the run's Kafka
// and Redis: the settings document, CORS, the short paths and text/plain bodies, as the library
// really sends them. Nothing may go anywhere but the site and ingest (no Segment CDN, no api.segment.io).
describe('analytics.js (@segment/analytics-next) in Chromium → ingest → dialogues (real backends)', () => {
  let app: RunningApp;
  let site: { server: Server; origin: string };
  let browser: Browser;
  let ingest: URL;
  let sites: string | undefined;

  beforeAll(async () => {
    // The site's origin is the only one its ingest site allows.
    site = await startSite(() => ingest);
    sites = sitesFile({ id: 'shop-browser', writeKeys: [WRITE_KEY], origins: [site.origin] });
    [app, browser] = await Promise.all([startTestApp('real', { INGEST_SITES: sites }, JOURNEY_MAP), launchChromium()]);
    ingest = new URL(app.url);
  });
  afterAll(async () => {
    await browser?.close();
    await app?.stop();
    await new Promise((r) => site?.server.close(r));
    if (sites) rmSync(sites, { force: true });
  });

  it('lands a page view, an e-mail click and an order in the user’s dialogue at purchase', async () => {
    const context = await browser.newContext();
    // Watched, not intercepted: with interception on, Playwright would answer CORS preflights itself.
    const elsewhere: string[] = [];
    context.on('request', (r) => {
      if (!r.url().startsWith(site.origin) && !r.url().startsWith(ingest.origin)) elsewhere.push(r.url());
    });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    const answers: { path: string; status: number; acao: string | null }[] = [];
    page.on('response', (r) => {
      if (r.url().startsWith(ingest.origin))
        answers.push({ path: new URL(r.url()).pathname, status: r.status(), acao: r.headers()['access-control-allow-origin'] ?? null });
    });
    const posted: { type: string | undefined; auth: string | undefined }[] = [];
    page.on('request', (r) => {
      if (r.method() === 'POST' && r.url().startsWith(ingest.origin)) posted.push({ type: r.headers()['content-type'], auth: r.headers().authorization });
    });
    const sent = (path: string, n: number) => expect.poll(() => answers.filter((a) => a.path === path && a.status === 200).length, { timeout: 15_000 }).toBe(n);
    const call = (p: Page, js: string) => p.evaluate(`(${js}).then(() => true)`);

    const sku = `sku-${randomUUID().slice(0, 8)}`;
    const user = `u-${randomUUID().slice(0, 8)}`;

    // An anonymous visitor views the product.
    await page.goto(`${site.origin}/products/${sku}`);
    await call(page, 'analytics.page()');
    await sent('/v1/p', 1);
    // Back from an e-mail about it: the landing page reports the click, on the e-mail channel.
    await page.goto(`${site.origin}/welcome?utm_medium=email&product=${sku}`);
    await call(page, `analytics.track('Email Link Clicked', { product: '${sku}', campaign: 'spring' }, { context: { channel: 'email' } })`);
    await sent('/v1/t', 1);
    // Signs in there (an identify on a page no rule matches counts for nothing but the link)...
    await call(page, `analytics.identify('${user}', { plan: 'pro' })`);
    await sent('/v1/i', 1);
    // ...and orders it at checkout.
    await page.goto(`${site.origin}/checkout/${sku}`);
    await call(page, `analytics.track('Order Completed', { order_id: 'o-1', revenue: 129, currency: 'EUR', products: [{ product_id: '${sku}' }] })`);
    await sent('/v1/t', 2);

    const view = await purchased(app.url, user, `product:${sku}`, { intro: 1, detail: 1, purchase: 1 });
    const dialogue = view.dialogues.find((d) => d.topic === `product:${sku}`)!;
    // The page view counts as the snippet's would (intro), the e-mail click at detail, the order at purchase.
    expect(dialogue).toMatchObject({ stage: 'purchase', counts: { intro: 1, detail: 1, purchase: 1 } });
    expect(dialogue.channels.sort()).toEqual(['email', 'web']);
    expect(view.rfm).toMatchObject({ purchases: 1, totalValue: 129 });

    // Every settings read and event post was answered for the site's origin; nothing went elsewhere.
    expect(answers.filter((a) => a.path === `/v1/projects/${WRITE_KEY}/settings`).length).toBe(3);
    expect(answers.filter((a) => a.status >= 400)).toEqual([]);
    expect(answers.every((a) => a.acao === site.origin)).toBe(true);
    expect(elsewhere).toEqual([]);
    expect(errors).toEqual([]);
    // The library sends text/plain JSON with its write key in Authorization, so each path was preflighted, and answered by ingest.
    expect(new Set(posted.map((p) => p.type))).toEqual(new Set(['text/plain']));
    expect(posted.every((p) => p.auth === `Basic ${btoa(`${WRITE_KEY}:`)}`)).toBe(true);
    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    for (const path of ['/v1/p', '/v1/t', '/v1/i'])
      expect(metrics).toMatch(new RegExp(`clickfold_ingest_requests_total\\{route="${path}",status="204"\\} [1-9]`));
    await context.close();
  });

  it('needs only cdnURL: the settings document sends the events to the host it was read from', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const elsewhere: string[] = [];
    context.on('request', (r) => {
      if (!r.url().startsWith(site.origin) && !r.url().startsWith(ingest.origin)) elsewhere.push(r.url());
    });
    const sku = `sku-${randomUUID().slice(0, 8)}`;
    await page.goto(`${site.origin}/products/${sku}/specs?cdnOnly`);
    const pageview = page.waitForResponse((r) => r.url() === `${ingest.origin}/v1/p`);
    await page.evaluate('analytics.page().then(() => true)');
    expect((await pageview).status()).toBe(200);
    const visitor = (await page.evaluate('analytics.user().then((u) => u.anonymousId())')) as string;
    const view = await eventually(
      async () => {
        const r = await fetch(`${app.url}/v1/people/${encodeURIComponent(visitor)}`);
        const v = r.ok ? ((await r.json()) as PersonView) : undefined;
        return v?.dialogues.some((d) => d.topic === `product:${sku}`) ? v : undefined;
      },
      30_000,
      'the page view',
    );
    expect(view.dialogues).toMatchObject([{ topic: `product:${sku}`, stage: 'detail', channels: ['web'] }]);
    expect(elsewhere).toEqual([]);
    await context.close();
  });
});
