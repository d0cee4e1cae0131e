/**
 * The tracker snippet (dist/t.js) in real headless Chromium against the embedded all-in-one app,
 * in process on a free port. What arrived is read straight from the partitioned log
 * (`clicks.raw`), so "exactly once" means once on the raw log, before any dedupe downstream.
 *
 * Needs Debian's chromium at /usr/bin/chromium (services/install.sh installs it; or
 * `apt-get install -y chromium`), or CHROMIUM_PATH. No browser is downloaded.
 */
import { createHmac } from 'node:crypto';
import type { ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import { html, raw } from 'hono/html';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOPICS, type RawEvent } from '../../contract/raw-event.js';
import { createDemoShop } from '../../apps/demo-shop.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import { createQueryApp } from '../../history/query/app.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { DEFAULT_SEEN_SIZE } from '../../history/store/store.js';
import { compileTopicMap, DEFAULT_TOPIC_MAP } from '../../history/fold/topic-map.js';
import { createBatchHandler } from '../../history/worker/batch.js';
import { createIngestApp } from '../../ingest/app.js';
import { compileSites, DEMO_SITES, SitesFile } from '../../ingest/sites.js';
import { LogUnavailableError, type LogConsumer, type LogProducer } from '../../lib/log.js';
import { createLogger } from '../../lib/logger.js';
import { closeServer, listen } from '../../lib/serve.js';
import { buildSnippet } from '../../tracker-snippet/build.js';
import { launchChromium } from '../support/browser.js';
import { eventually } from '../support/app.js';


/** One POST to /v1/collect as the server saw it. */
interface Post {
  site: string;
  ids: string[];
  /** `cors` for fetch(), `no-cors` for navigator.sendBeacon. */
  mode: string | undefined;
  contentType: string | undefined;
  status: number;
  /** The batch's user and its signature; each event's signature (identify). */
  user?: string;
  sig?: string;
  eventSigs: (string | undefined)[];
}

type Outage = 'none' | 'kafka' | 'http';

/** One site per test, so each test reads only its own records. */
const TEST_SITES = [
  'e2e-spa',
  'e2e-click',
  'e2e-offline',
  'e2e-503',
  'e2e-nextload',
  'e2e-hide',
  'e2e-consent',
  'e2e-cookie',
  'e2e-dnt',
  'e2e-gpc',
  'e2e-dnt-ignored',
  'e2e-hostile-local',
  'e2e-hostile-cookie',
];
/** A site that signs user ids (signed identify): its secret, and what its own server would compute. */
const SIGNED_SITE = 'e2e-signed';
const IDENTITY_SECRET = 'e2e-identity-secret-0123456789';
const signUserId = (user: string) => createHmac('sha256', IDENTITY_SECRET).update(user).digest('hex');

interface Harness {
  url: string;
  log: PartitionedLog;
  posts: Post[];
  setOutage(o: Outage): void;
  stop(): Promise<void>;
}

/**
 * Fixture pages: `/fixture/<anything>?site=...&consent=...&storage=...&dnt=...&hostile=1`.
 * The snippet tag has no data-endpoint, so the default (the script's origin + /v1/collect) is used.
 */
function fixturePage(url: URL) {
  const q = url.searchParams;
  const attrs = ['consent', 'storage', 'dnt']
    .filter((k) => q.has(k))
    .map((k) => ` data-${k}="${q.get(k)!.replace(/"/g, '')}"`)
    .join('');
  const hostile = q.has('hostile');
  return html`<!doctype html>
<html><head><meta charset="utf-8"><title>Fixture ${url.pathname}</title>
${hostile ? raw(`<script>throw new Error('page boom 1');</script>`) : ''}
<script>
window.clickfold = window.clickfold || [];
${hostile ? raw(`
  const circular = { a: 1 }; circular.self = circular;
  clickfold.push(null, 42, 'track', [], ['nope'], ['track'], ['identify', {}], ['identify', 'has space']);
  clickfold.push(['track', 'Circular', circular, 'not a number'], ['track', { toString() { throw new Error('nasty'); } }]);
`) : ''}
</script>
<script async src="/t.js" data-site="${q.get('site') ?? 'fixture'}"${raw(attrs)}></script>
</head><body>
<h1>Fixture</h1>
<div data-topic="plan:pro" data-campaign="spring">
  <button id="choose" class="btn big" data-stage="detail" data-variant="b">  Choose
     Pro  </button>
</div>
<section id="basic" data-topic="plan:basic" data-stage="intro"><span id="inner">The basic plan</span></section>
<button id="plain">Plain button</button>
<div id="nothing">Not tracked</div>
<a id="link" href="/fixture/next?${q.toString()}">Next page</a>
${hostile ? raw(`<button id="boom" onclick="this.textContent = 'clicked'; throw new Error('page boom 2')">Boom</button>`) : ''}
</body></html>`;
}

async function startHarness(): Promise<Harness> {
  await buildSnippet();
  const logger = createLogger('snippet-e2e', 'silent');
  const log = new PartitionedLog(4);
  const topicMap = compileTopicMap(DEFAULT_TOPIC_MAP);
  const store = new MemoryHistoryStore({ ladder: topicMap.ladder, quietMs: topicMap.quietMs, seenSize: DEFAULT_SEEN_SIZE });
  const logProducer = log.producer();
  let outage: Outage = 'none';
  // 'kafka': ingest's own path when the log cannot take events (503 + Retry-After: 1).
  const producer: LogProducer = {
    ...logProducer,
    send: async (topic, messages) => {
      if (outage === 'kafka' && topic === TOPICS.raw) throw new LogUnavailableError('test outage');
      return logProducer.send(topic, messages);
    },
  };
  const posts: Post[] = [];

  const app = new Hono();
  app.use('/v1/collect', async (c, next) => {
    if (c.req.method !== 'POST') return next();
    let body: { site?: string; user?: string; sig?: string; events?: { id?: string; sig?: string }[] } = {};
    try {
      body = JSON.parse(await c.req.raw.clone().text()) as typeof body;
    } catch {}
    const post: Post = {
      site: String(body.site),
      ids: (body.events ?? []).map((e) => String(e.id)),
      user: body.user,
      sig: body.sig,
      eventSigs: (body.events ?? []).map((e) => e.sig),
      mode: c.req.header('sec-fetch-mode'),
      contentType: c.req.header('content-type'),
      status: 0,
    };
    posts.push(post);
    // 'http': an outage in front of ingest that asks for a long pause (Retry-After: 600).
    if (outage === 'http') {
      post.status = 503;
      return c.json({ error: { code: 'unavailable', message: 'test outage' } }, 503, { 'retry-after': '600' });
    }
    await next();
    post.status = c.res.status;
  });
  // The demo shop's site, and one site per test (any origin: the pages come from this server).
  const sites = compileSites(
    SitesFile.parse({ sites: [...DEMO_SITES.sites, ...TEST_SITES.map((id) => ({ id, origins: ['*'] })), { id: SIGNED_SITE, origins: ['*'], identitySecret: IDENTITY_SECRET }] }),
  );
  app.route('/', createIngestApp({ producer, logger, maxBodyBytes: 256 * 1024, retryAfterSeconds: 1, sites }));
  app.route('/', createQueryApp({ store, logger }));
  app.get('/fixture/*', (c) => c.html(fixturePage(new URL(c.req.url))));
  app.route('/', createDemoShop());

  const consumer: LogConsumer = log.consumer(TOPICS.raw);
  await consumer.run(createBatchHandler({ store, topicMap, producer: logProducer, logger }));
  const { server, port }: { server: ServerType; port: number } = await listen(app, 0, '127.0.0.1');
  return {
    url: `http://127.0.0.1:${port}`,
    log,
    posts,
    setOutage: (o) => (outage = o),
    stop: async () => {
      await closeServer(server);
      await consumer.stop();
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('tracker snippet in Chromium', () => {
  let h: Harness;
  let browser: Browser;
  const contexts: BrowserContext[] = [];

  beforeAll(async () => {
    [h, browser] = await Promise.all([startHarness(), launchChromium()]);
  });

  afterAll(async () => {
    await browser?.close();
    await h?.stop();
  });

  /** Every raw record of one site, in log order per partition. */
  const records = (site: string): RawEvent[] =>
    h.log
      .read(TOPICS.raw)
      .flat()
      .map((m) => JSON.parse(m.value) as RawEvent)
      .filter((r) => r.site === site);

  /** Waits until `n` records of `site` match, then a little longer, and returns them (to catch late duplicates). */
  async function arrived(site: string, n: number, match: (r: RawEvent) => boolean = () => true, settleMs = 1500): Promise<RawEvent[]> {
    await eventually(async () => (records(site).filter(match).length >= n ? true : undefined), 15_000, `${n} records of ${site}`);
    await sleep(settleMs);
    return records(site).filter(match);
  }

  /** Each event id at most once on the raw log. */
  function expectNoDuplicates(site: string): void {
    const ids = records(site).map((r) => r.id);
    expect(ids.length, `duplicates among ${ids.join(', ')}`).toBe(new Set(ids).size);
  }

  async function open(path: string, init?: string): Promise<{ page: Page; context: BrowserContext; errors: string[] }> {
    const context = await browser.newContext();
    contexts.push(context);
    if (init) await context.addInitScript(init);
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(h.url + path);
    await loaded(page);
    return { page, context, errors };
  }

  /** The snippet has run: the queue stub was replaced by the object with push. */
  const loaded = (page: Page) => page.waitForFunction('window.clickfold && !Array.isArray(window.clickfold)', undefined, { timeout: 10_000 });

  const storage = async (page: Page) =>
    (await page.evaluate('({ local: Object.fromEntries(Object.entries(localStorage)), cookie: document.cookie })')) as {
      local: Record<string, string>;
      cookie: string;
    };

  /** Everything the page sent so far is confirmed: nothing left in its stored queue. */
  const confirmed = (page: Page) => page.waitForFunction(`!localStorage.getItem('clickfold_q')`, undefined, { timeout: 10_000 });

  const push = (page: Page, ...cmds: unknown[][]) => page.evaluate(`clickfold.push(...${JSON.stringify(cmds)})`);

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => {});
  });

  it('counts page views and SPA navigations once each, and not fragment or same-URL changes', async () => {
    const site = 'e2e-spa';
    const { page, errors } = await open(`/fixture/app?site=${site}`, `window.globalsBefore = new Set(Object.getOwnPropertyNames(window));`);
    const base = `${h.url}/fixture/app`;
    await page.evaluate(`history.pushState({}, '', '/fixture/app/a')`);
    await page.evaluate(`history.replaceState({ v: 2 }, '', location.href)`);
    await page.evaluate(`history.pushState({}, '', '#section')`);
    await page.evaluate(`history.replaceState({}, '', '/fixture/app/b')`);
    await page.evaluate(`history.back()`);
    await page.waitForURL(`${base}/a`);
    await page.evaluate(`history.back()`);
    await page.waitForURL(`${base}?site=${site}`);

    const pages = await arrived(site, 5, (r) => r.type === 'page');
    expect(pages.map((r) => r.url)).toEqual([`${base}?site=${site}`, `${base}/a`, `${base}/b`, `${base}/a`, `${base}?site=${site}`]);
    // A fragment change is no page view, so it does not become the next view's referrer either.
    expect(pages.map((r) => r.ref)).toEqual([undefined, `${base}?site=${site}`, `${base}/a`, `${base}/b`, `${base}/a`]);
    expect(pages[0]!.title).toBe('Fixture /fixture/app');
    // One visitor, one session, distinct event ids.
    expect(new Set(pages.map((r) => r.visitor)).size).toBe(1);
    expect(new Set(pages.map((r) => r.session)).size).toBe(1);
    expectNoDuplicates(site);
    expect(errors).toEqual([]);
    // One global name: nothing else was added to the page.
    const added = await page.evaluate(`Object.getOwnPropertyNames(window).filter((k) => !globalsBefore.has(k) && k !== 'globalsBefore')`);
    expect(added).toEqual(['clickfold']);
  });

  it('reports clicks on hinted elements, buttons and links with their element context', async () => {
    const site = 'e2e-click';
    const { page, errors } = await open(`/fixture/click?site=${site}`);
    await page.click('#choose');
    await page.click('#inner');
    await page.click('#plain');
    await page.click('#nothing');

    const clicks = await arrived(site, 3, (r) => r.type === 'click');
    expect(clicks).toHaveLength(3);
    const [choose, basic, plain] = clicks;
    expect(choose).toMatchObject({
      topic: 'plan:pro',
      stage: 'detail',
      url: `${h.url}/fixture/click?site=${site}`,
      el: { tag: 'button', id: 'choose', cls: 'btn big', text: 'Choose Pro', sel: 'button#choose', data: { campaign: 'spring', variant: 'b' } },
    });
    // A click inside a hinted element reports the hinted element.
    expect(basic).toMatchObject({ topic: 'plan:basic', stage: 'intro', el: { tag: 'section', id: 'basic', text: 'The basic plan', sel: 'section#basic' } });
    expect(basic!.el?.data).toBeUndefined();
    expect(plain).toMatchObject({ el: { tag: 'button', id: 'plain', text: 'Plain button' } });
    expect(plain!.topic).toBeUndefined();
    expect(plain!.stage).toBeUndefined();
    // Sent with fetch as text/plain (no preflight); ingest accepted every batch.
    const sent = h.posts.filter((p) => p.site === site);
    expect(sent.every((p) => p.mode === 'cors' && p.contentType?.startsWith('text/plain') && p.status === 202)).toBe(true);
    expectNoDuplicates(site);
    expect(errors).toEqual([]);
  });

  it('keeps events while the network is down and sends them exactly once when it returns', async () => {
    const site = 'e2e-offline';
    const { page, context } = await open(`/fixture/offline?site=${site}`);
    await arrived(site, 1, (r) => r.type === 'page', 0);
    await confirmed(page);

    await context.setOffline(true);
    await push(page, ['track', 'Offline 1'], ['track', 'Offline 2', { n: 2 }], ['track', 'Offline 3', {}, 3]);
    await page.click('#choose');
    await sleep(2500);
    expect(records(site).filter((r) => r.type !== 'page')).toEqual([]);
    const queued = JSON.parse((await storage(page)).local.clickfold_q ?? '[]') as { id: string; type: string }[];
    expect(queued.map((e) => e.type)).toEqual(['track', 'track', 'track', 'click']);

    await context.setOffline(false);
    const late = await arrived(site, 4, (r) => r.type !== 'page', 2500);
    expect(late.map((r) => r.id).sort()).toEqual(queued.map((e) => e.id).sort());
    expect(late.find((r) => r.name === 'Offline 3')?.value).toBe(3);
    expectNoDuplicates(site);
    expect((await storage(page)).local.clickfold_q).toBeUndefined();
  });

  it('retries when ingest answers 503 (honouring Retry-After) and delivers each event once', async () => {
    const site = 'e2e-503';
    const { page } = await open(`/fixture/retry?site=${site}`);
    await arrived(site, 1, (r) => r.type === 'page', 0);
    await confirmed(page);

    h.setOutage('kafka');
    // Ten events make a full batch: sent at once, answered 503.
    await push(page, ...Array.from({ length: 12 }, (_, i) => ['track', `Retry ${i}`]));
    await eventually(async () => (h.posts.some((p) => p.site === site && p.status === 503) ? true : undefined), 10_000, 'a 503');
    expect(records(site).filter((r) => r.type === 'track')).toEqual([]);
    const stored = JSON.parse((await storage(page)).local.clickfold_q ?? '[]') as unknown[];
    expect(stored).toHaveLength(12);

    h.setOutage('none');
    const tracks = await arrived(site, 12, (r) => r.type === 'track', 2500);
    expect(tracks.map((r) => r.name).sort()).toEqual(Array.from({ length: 12 }, (_, i) => `Retry ${i}`).sort());
    expectNoDuplicates(site);
    // The first answered attempt came about a second (Retry-After: 1) after the 503, not in a tight loop.
    const attempts = h.posts.filter((p) => p.site === site && p.status === 503).length;
    expect(attempts).toBeLessThan(5);
  });

  it('sends events a page could not deliver on the next page load', async () => {
    const site = 'e2e-nextload';
    const { page } = await open(`/fixture/next?site=${site}`);
    await arrived(site, 1, (r) => r.type === 'page', 0);
    await confirmed(page);

    h.setOutage('http'); // 503 with Retry-After: 600: this page will not retry in time
    await push(page, ['track', 'Left behind 1'], ['track', 'Left behind 2']);
    await eventually(async () => (h.posts.some((p) => p.site === site && p.status === 503) ? true : undefined), 10_000, 'a 503');
    h.setOutage('none');
    await page.reload();
    await loaded(page);

    const tracks = await arrived(site, 2, (r) => r.type === 'track', 2500);
    expect(tracks.map((r) => r.name)).toEqual(['Left behind 1', 'Left behind 2']);
    expect(records(site).filter((r) => r.type === 'page')).toHaveLength(2);
    expectNoDuplicates(site);
  });

  it('sends what waits with sendBeacon when the page is left, once', async () => {
    const site = 'e2e-hide';
    const { page } = await open(`/fixture/hide?site=${site}`);
    await arrived(site, 1, (r) => r.type === 'page', 0);
    await confirmed(page);

    // Queued (the 1 s flush has not fired) when the link click navigates away.
    await push(page, ['track', 'Just before leaving']);
    await page.click('#link');
    await page.waitForURL(/\/fixture\/next/);
    await loaded(page);

    const found = await arrived(site, 4, () => true, 2500);
    expect(found.map((r) => r.type)).toEqual(['page', 'track', 'click', 'page']);
    expect(found[2]).toMatchObject({ el: { tag: 'a', id: 'link', href: `${h.url}/fixture/next?site=${site}` } });
    const track = found[1]!;
    const beacon = h.posts.find((p) => p.ids.includes(track.id));
    expect(beacon?.mode).toBe('no-cors'); // navigator.sendBeacon
    expectNoDuplicates(site);

    // Closing the tab works the same way.
    await push(page, ['track', 'Closing']);
    await page.close({ runBeforeUnload: true });
    const closing = await arrived(site, 1, (r) => r.name === 'Closing', 1000);
    expect(closing).toHaveLength(1);
    expectNoDuplicates(site);
  });

  it('with consent required sends and stores nothing until consent, and forgets everything on withdrawal', async () => {
    const site = 'e2e-consent';
    const { page } = await open(`/fixture/consent?site=${site}&consent=required`);
    await page.click('#choose');
    await page.evaluate(`history.pushState({}, '', '/fixture/consent/2' + location.search)`);
    await push(page, ['track', 'Before consent'], ['identify', 'user-1']);
    await sleep(2500);
    expect(records(site)).toEqual([]);
    expect(h.posts.filter((p) => p.site === site)).toEqual([]);
    expect(await storage(page)).toEqual({ local: {}, cookie: '' });

    // Consent: what happened on this page is sent, the ids are stored.
    await push(page, ['consent', true]);
    const sent = await arrived(site, 5);
    expect(sent.map((r) => r.type)).toEqual(['page', 'click', 'page', 'track', 'identify']);
    expect(sent.every((r) => r.user === 'user-1')).toBe(true);
    // visitor|session|last activity|user|signature (none given here).
    expect((await storage(page)).local.clickfold).toMatch(/^\d+\|\d+\|\d+\|user-1\|$/);

    // Withdrawal: ids and queue gone, nothing more is sent, also not on the next page.
    await push(page, ['consent', false]);
    expect(await storage(page)).toEqual({ local: {}, cookie: '' });
    await push(page, ['track', 'After withdrawal']);
    await page.reload();
    await loaded(page);
    await page.click('#plain');
    await sleep(2500);
    expect(records(site)).toHaveLength(5);
    expect(await storage(page)).toEqual({ local: {}, cookie: '' });
  });

  it('keeps the visitor id in a first-party cookie with data-storage="cookie"', async () => {
    const site = 'e2e-cookie';
    const { page } = await open(`/fixture/cookie?site=${site}&storage=cookie&consent=required`);
    await push(page, ['consent', true]);
    const [first] = await arrived(site, 1, () => true, 0);
    const { local, cookie } = await storage(page);
    expect(cookie).toMatch(new RegExp(`^clickfold=${first!.visitor}\\|`));
    expect(local.clickfold).toBeUndefined();

    await page.goto(`${h.url}/fixture/cookie/2?site=${site}&storage=cookie&consent=required`);
    const pages = await arrived(site, 2, (r) => r.type === 'page');
    // Consent given once is remembered by the stored id; the same visitor on the next page.
    expect(pages[1]!.visitor).toBe(first!.visitor);
  });

  it('honours Do-Not-Track and Global Privacy Control with data-dnt="respect"', async () => {
    const dnt = `Object.defineProperty(Navigator.prototype, 'doNotTrack', { get: () => '1' });`;
    const gpc = `Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true });`;
    for (const [site, init] of [
      ['e2e-dnt', dnt],
      ['e2e-gpc', gpc],
    ] as const) {
      const { page } = await open(`/fixture/dnt?site=${site}&dnt=respect`, init);
      await page.click('#choose');
      await push(page, ['consent', true], ['track', 'Ignored']);
      await sleep(2000);
      expect(records(site)).toEqual([]);
      expect(await storage(page)).toEqual({ local: {}, cookie: '' });
    }
    // Without the option the signal is not honoured.
    await open(`/fixture/dnt?site=e2e-dnt-ignored`, dnt);
    await arrived('e2e-dnt-ignored', 1, () => true, 0);
  });

  it('works on a hostile page (throwing scripts, no storage) and throws nothing into it', async () => {
    // localStorage and document.cookie throw on every access, as in locked-down embeds.
    const noStorage = `
      Object.defineProperty(window, 'localStorage', { get() { throw new DOMException('storage is disabled', 'SecurityError'); } });
      Object.defineProperty(Document.prototype, 'cookie', {
        get() { throw new DOMException('cookies are disabled', 'SecurityError'); },
        set() { throw new DOMException('cookies are disabled', 'SecurityError'); },
      });`;
    for (const storageOption of ['local', 'cookie']) {
      const site = `e2e-hostile-${storageOption}`;
      const { page, errors } = await open(`/fixture/hostile?site=${site}&hostile=1&storage=${storageOption}`, noStorage);
      await page.click('#boom');
      expect(await page.textContent('#boom')).toBe('clicked');
      // The page's own history errors still reach the page.
      const own = await page.evaluate(`(() => { try { history.pushState({}, '', 'https://elsewhere.example/'); return 'no error'; } catch (e) { return e.name; } })()`);
      expect(own).toBe('SecurityError');
      await page.evaluate(`history.pushState({}, '', '/fixture/hostile/2')`);
      await page.click('#choose');

      const got = await arrived(site, 5);
      expect(got.map((r) => r.type)).toEqual(['page', 'track', 'click', 'page', 'click']);
      expect(got[1]).toMatchObject({ name: 'Circular', props: { a: 1 } });
      expect(got[1]!.value).toBeUndefined();
      expect(got[2]).toMatchObject({ el: { id: 'boom' } });
      expect(new Set(got.map((r) => r.visitor)).size).toBe(1);
      // Only the page's own errors; none from the snippet.
      expect(errors).toEqual(['page boom 1', 'page boom 2']);
      expectNoDuplicates(site);
    }
  });

  it('sends a signed identify and the signature with every batch, across pages; an unsigned one stays anonymous', async () => {
    const site = SIGNED_SITE;
    const { page, errors } = await open(`/fixture/signed?site=${site}`);
    await arrived(site, 1, (r) => r.type === 'page', 0);
    await confirmed(page);

    // Unsigned, then wrongly signed: ingest refuses both identifies, and the events stay the visitor's.
    await push(page, ['identify', 'user-7'], ['track', 'Before signing']);
    await confirmed(page);
    await push(page, ['identify', 'user-7', signUserId('user-8')], ['track', 'Wrongly signed']);
    await confirmed(page);
    const anonymous = await arrived(site, 2, (r) => r.type === 'track', 500);
    expect(anonymous.map((r) => [r.name, r.user, r.person === r.visitor])).toEqual([
      ['Before signing', undefined, true],
      ['Wrongly signed', undefined, true],
    ]);
    expect(records(site).filter((r) => r.type === 'identify')).toEqual([]);

    // The same user again, now signed: a new identify goes out, and every later batch carries the signature.
    await push(page, ['identify', 'user-7', signUserId('user-7')], ['track', 'Signed']);
    const [identify] = await arrived(site, 1, (r) => r.type === 'identify', 0);
    expect(identify).toMatchObject({ user: 'user-7', person: 'user-7', visitor: anonymous[0]!.visitor });
    const [signed] = await arrived(site, 1, (r) => r.name === 'Signed', 0);
    expect(signed).toMatchObject({ user: 'user-7', person: 'user-7' });
    await confirmed(page);
    expect((await storage(page)).local.clickfold).toBe(`${anonymous[0]!.visitor}|${signed!.session}|${signed!.ts}|user-7|${signUserId('user-7')}`);
    // Sent as the snippet sends it: on the identify event and on the batch, never stored on the raw log.
    const sent = h.posts.filter((p) => p.site === site && p.ids.includes(identify!.id));
    expect(sent.map((p) => [p.user, p.sig, p.eventSigs[p.ids.indexOf(identify!.id)]])).toEqual([['user-7', signUserId('user-7'), signUserId('user-7')]]);
    expect(JSON.stringify(records(site))).not.toContain(signUserId('user-7'));

    // The next page load remembers the user and its signature.
    await page.click('#link');
    await page.waitForURL(/\/fixture\/next/);
    await loaded(page);
    const [nextPage] = await arrived(site, 1, (r) => r.type === 'page' && r.url!.includes('/fixture/next'), 0);
    expect(nextPage).toMatchObject({ user: 'user-7', person: 'user-7' });
    // The link click left with the beacon on page hide, signed too.
    expect(records(site).find((r) => r.type === 'click')).toMatchObject({ user: 'user-7', person: 'user-7', el: { id: 'link' } });
    expect(records(site).filter((r) => r.type === 'identify')).toHaveLength(1);
    expectNoDuplicates(site);
    expect(errors).toEqual([]);
  });

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

    const person = await eventually(async () => {
      const res = await fetch(`${h.url}/v1/people/${visitor}`);
      if (!res.ok) return undefined;
      const view = (await res.json()) as { dialogues: { topic: string; stage: string }[] };
      return view.dialogues.find((d) => d.topic === 'product:sku-1' && d.stage === 'purchase') ? view : undefined;
    }, 10_000, 'product:sku-1 at purchase');
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
