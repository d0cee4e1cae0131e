import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import { PAGE_CSS, PAGE_HTML } from './page.js';

/** The browser code (plain TypeScript, no framework), bundled by esbuild. */
export const DASHBOARD_ENTRY = fileURLToPath(new URL('./client.ts', import.meta.url));
/** Where `npm run build` writes the bundle, for installs without esbuild (production without dev dependencies). */
export const DASHBOARD_BUNDLE = fileURLToPath(new URL('../../dist/dashboard.js', import.meta.url));

/** Bundles the dashboard's script in memory. */
export async function bundleDashboard(): Promise<string> {
  const { build } = await import('esbuild');
  const r = await build({
    entryPoints: [DASHBOARD_ENTRY],
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: ['es2020'],
    minify: true,
    legalComments: 'none',
    write: false,
    logLevel: 'silent',
  });
  return r.outputFiles[0]!.text;
}

/**
 * The script: bundled from source on first request where esbuild is installed (so it always
 * matches the source), else the bundle `npm run build` wrote. Cached for the process's life.
 */
async function loadScript(): Promise<string | null> {
  try {
    return await bundleDashboard();
  } catch {
    return readFile(DASHBOARD_BUNDLE, 'utf8').catch(() => null);
  }
}

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * `GET /dashboard`: the marketers' page (static HTML; all data comes from the query API, with the
 * API key the page asks for when the server has keys). `GET /dashboard/app.js` and `/dashboard/app.css`.
 */
export function dashboardRoutes(): Hono {
  const app = new Hono();
  let script: Promise<{ body: string; etag: string } | null> | null = null;
  const cssEtag = `"${createHash('sha256').update(PAGE_CSS).digest('base64url').slice(0, 16)}"`;

  app.get('/dashboard', (c) => c.html(PAGE_HTML, 200, { 'content-security-policy': CSP, 'cache-control': 'no-cache', 'referrer-policy': 'no-referrer' }));
  app.get('/dashboard/', (c) => c.redirect('/dashboard', 301));
  app.get('/dashboard/app.css', (c) => c.body(PAGE_CSS, 200, { 'content-type': 'text/css; charset=utf-8', etag: cssEtag, 'cache-control': 'no-cache' }));
  app.get('/dashboard/app.js', async (c) => {
    script ??= loadScript().then((body) => (body === null ? null : { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 16)}"` }));
    const js = await script;
    if (!js) {
      script = null;
      return c.text('// the dashboard is not built: run `npm run build`\n', 500, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' });
    }
    if (c.req.header('if-none-match') === js.etag) return c.body(null, 304);
    return c.body(js.body, 200, { 'content-type': 'text/javascript; charset=utf-8', etag: js.etag, 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' });
  });
  return app;
}
