import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Hono } from 'hono';
import type { Logger } from '../../lib/logger.js';
import { PAGE_CSS, PAGE_HTML } from './page.js';
import { builtFile } from '../../lib/paths.js';

/** Where `npm run build` (build.ts) writes the dashboard's browser code; nothing else bundles it. */
export const DASHBOARD_BUNDLE = builtFile(import.meta.url, 'dashboard.js');

export interface DashboardRouteOptions {
  logger: Logger;
  /** The built bundle; defaults to dist/dashboard.js. */
  bundlePath?: string;
}

const NOT_BUILT = 'the dashboard is not built: run `npm run build`';
const NOT_BUILT_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Dashboard not built · clickfold</title></head>
<body><h1>The dashboard is not built yet</h1><p>Run <code>npm run build</code> on the server (it writes <code>dist/dashboard.js</code>), then reload this page.</p></body></html>
`;

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

interface Script {
  body: string;
  etag: string;
}

const etagOf = (body: string) => `"${createHash('sha256').update(body).digest('base64url').slice(0, 16)}"`;

/**
 * `GET /dashboard`: the marketers' page (static HTML; all data comes from the query API, with the
 * API key the page asks for when the server has keys). `GET /dashboard/app.js` and `/dashboard/app.css`.
 *
 * The script is the bundle `npm run build` wrote (`npm start` and `npm test` build first), read
 * when the routes are made and then served from memory. While it is missing, both the page and the
 * script answer 503 saying to run `npm run build` (logged once), and each request looks again, so
 * a build fixes a running server.
 */
export function dashboardRoutes(opts: DashboardRouteOptions): Hono {
  const path = opts.bundlePath ?? DASHBOARD_BUNDLE;
  const { logger } = opts;
  let script: Script | null = null;
  let reading: Promise<Script | null> | null = null;
  let reported = false;

  const read = async (): Promise<Script | null> => {
    const body = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (!reported) logger.error({ path, err: err.code ?? String(err) }, `${NOT_BUILT}: /dashboard answers 503 until ${path} exists`);
      reported = true;
      return null;
    });
    if (body === null) return null;
    if (reported) logger.info({ path }, 'the dashboard is built: /dashboard is served again');
    reported = false;
    script = { body, etag: etagOf(body) };
    return script;
  };
  /** The bundle, read once; while it is missing, read again on each request. */
  const bundle = async () => {
    if (script) return script;
    reading ??= read().finally(() => (reading = null));
    return reading;
  };
  void bundle();

  const cssEtag = etagOf(PAGE_CSS);
  const app = new Hono();
  app.get('/dashboard', async (c) => {
    if (!(await bundle())) return c.html(NOT_BUILT_HTML, 503, { 'cache-control': 'no-store', 'retry-after': '60' });
    return c.html(PAGE_HTML, 200, { 'content-security-policy': CSP, 'cache-control': 'no-cache', 'referrer-policy': 'no-referrer' });
  });
  app.get('/dashboard/', (c) => c.redirect('/dashboard', 301));
  app.get('/dashboard/app.css', (c) => c.body(PAGE_CSS, 200, { 'content-type': 'text/css; charset=utf-8', etag: cssEtag, 'cache-control': 'no-cache' }));
  app.get('/dashboard/app.js', async (c) => {
    const js = await bundle();
    if (!js) return c.text(`// ${NOT_BUILT}\n`, 503, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store', 'retry-after': '60' });
    if (c.req.header('if-none-match') === js.etag) return c.body(null, 304);
    return c.body(js.body, 200, {
      'content-type': 'text/javascript; charset=utf-8',
      etag: js.etag,
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
    });
  });
  return app;
}
