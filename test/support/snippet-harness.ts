/**
 * The tracker snippet (dist/t.js) in real headless Chromium against ingest, the worker, the query
 * API and the demo shop on the in-process log, in process on a free port. What arrived is read
 * straight from the partitioned log (`clicks.raw`), so "exactly once" means once on the raw log,
 * before any dedupe downstream. Shared by the snippet's browser test files.
 *
 * Needs Debian's chromium at /usr/bin/chromium (services/install.sh installs it; or
 * `apt-get install -y chromium`), or CHROMIUM_PATH. No browser is downloaded.
 */
import { createHmac } from 'node:crypto';
import type { ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import { html, raw } from 'hono/html';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, expect } from 'vitest';
import { TOPICS, type RawEvent } from '../../contract/raw-event.js';
import { createDemoShop } from '../../apps/demo-shop.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import { createQueryApp } from '../../history/query/app.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { compileTopicMap, DEFAULT_TOPIC_MAP, foldOptionsOf } from '../../history/fold/topic-map.js';
import { createBatchHandler } from '../../history/worker/batch.js';
import { createIngestApp } from '../../ingest/app.js';
import { compileSites, DEMO_SITES, SitesFile } from '../../ingest/sites.js';
import { LogUnavailableError, type LogConsumer, type LogProducer } from '../../lib/log.js';
import { createLogger } from '../../lib/logger.js';
import { closeServer, listen } from '../../lib/serve.js';
import { buildSnippet } from '../../tracker-snippet/build.js';
import { launchChromium } from './browser.js';
import { eventually } from './app.js';

/** One POST to /v1/collect as the server saw it. */
export interface Post {
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

export type Outage = 'none' | 'kafka' | 'http';

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
export const SIGNED_SITE = 'e2e-signed';
const IDENTITY_SECRET = 'e2e-identity-secret-0123456789';
export const signUserId = (user: string) => createHmac('sha256', IDENTITY_SECRET).update(user).digest('hex');

export interface Harness {
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
${
  hostile
    ? raw(`
  const circular = { a: 1 }; circular.self = circular;
  clickfold.push(null, 42, 'track', [], ['nope'], ['track'], ['identify', {}], ['identify', 'has space']);
  clickfold.push(['track', 'Circular', circular, 'not a number'], ['track', { toString() { throw new Error('nasty'); } }]);
`)
    : ''
}
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
  const store = new MemoryHistoryStore(foldOptionsOf(topicMap));
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
  // The demo shop's site, and one site per test (any origin: the pages come from this server). The
  // fixture pages say what they test in their query (which site, which storage...): the test sites
  // keep those parameters, as a site allow-lists its own (privacy.queryParams), so the tests see
  // the URLs the snippet reported.
  const privacy = { queryParams: ['site', 'consent', 'storage', 'dnt', 'hostile', 'utm_*'] };
  const sites = compileSites(
    SitesFile.parse({
      sites: [
        ...DEMO_SITES.sites,
        ...TEST_SITES.map((id) => ({ id, origins: ['*'], privacy })),
        { id: SIGNED_SITE, origins: ['*'], identitySecret: IDENTITY_SECRET, privacy },
      ],
    }),
  );
  app.route('/', createIngestApp({ producer, logger, maxBodyBytes: 256 * 1024, retryAfterSeconds: 1, sites }));
  app.route('/', createQueryApp({ store, logger }));
  app.get('/fixture/*', (c) => c.html(fixturePage(new URL(c.req.url))));
  app.route('/', createDemoShop());

  const consumer: LogConsumer = log.consumer({ topic: TOPICS.raw, group: 'snippet-e2e' });
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

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts the harness and a Chromium for the calling test file (beforeAll / afterAll), and returns
 * the helpers its tests use. `h` forwards to the harness once it runs.
 */
export function useSnippetHarness() {
  let harness: Harness;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const h = {
    get url() {
      return harness.url;
    },
    get posts() {
      return harness.posts;
    },
    get log() {
      return harness.log;
    },
    setOutage: (o: Outage) => harness.setOutage(o),
  };

  beforeAll(async () => {
    [harness, browser] = await Promise.all([startHarness(), launchChromium()]);
  });

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    await harness?.stop();
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

  return { h, records, arrived, expectNoDuplicates, open, loaded, storage, confirmed, push };
}
