import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dashboardRoutes } from '../../history/dashboard/route.js';
import { captureLogs } from '../support/log-capture.js';

/**
 * The dashboard's script is the bundle `npm run build` wrote: without it the page and the script
 * answer 503 saying to run the build (and the server logs it once); once it is there it is served,
 * without a restart. Nothing that runs in a server process bundles it (no runtime module imports esbuild).
 */
const ROOT = join(import.meta.dirname, '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'dashboard-route-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('dashboard route', () => {
  it('answers 503 with "run npm run build" while the bundle is missing, logs it once, then serves it once built', async () => {
    const bundle = join(dir, 'dashboard.js');
    const { logger, lines } = captureLogs();
    const app = dashboardRoutes({ logger, bundlePath: bundle });

    const js = await app.request('/dashboard/app.js');
    expect(js.status).toBe(503);
    expect(js.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect(js.headers.get('cache-control')).toBe('no-store');
    expect(await js.text()).toContain('run `npm run build`');
    const page = await app.request('/dashboard');
    expect(page.status).toBe(503);
    expect(await page.text()).toContain('<code>npm run build</code>');

    const errors = lines.filter((l) => l.level === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ path: bundle, msg: expect.stringContaining('run `npm run build`') });

    writeFileSync(bundle, 'console.log("dashboard");\n');
    const built = await app.request('/dashboard/app.js');
    expect(built.status).toBe(200);
    expect(await built.text()).toBe('console.log("dashboard");\n');
    expect(built.headers.get('content-type')).toMatch(/^text\/javascript/);
    const etag = built.headers.get('etag')!;
    expect((await app.request('/dashboard/app.js', { headers: { 'if-none-match': etag } })).status).toBe(304);
    const ok = await app.request('/dashboard');
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(lines.filter((l) => l.level === 30).map((l) => l.msg)).toEqual(['the dashboard is built: /dashboard is served again']);

    // Read once: a later change of the file is not picked up by this process.
    writeFileSync(bundle, 'console.log("rebuilt");\n');
    expect(await (await app.request('/dashboard/app.js')).text()).toBe('console.log("dashboard");\n');
  });

  it('serves a bundle that is already there when the routes are made, and logs nothing', async () => {
    const bundle = join(dir, 'ready.js');
    writeFileSync(bundle, 'void 0;\n');
    const { logger, lines } = captureLogs();
    const app = dashboardRoutes({ logger, bundlePath: bundle });
    const res = await app.request('/dashboard/app.js');
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('void 0;\n');
    expect(lines).toEqual([]);
  });

  it('no runtime module imports esbuild: only the build scripts bundle', () => {
    const files = (d: string): string[] =>
      readdirSync(d).flatMap((n) => {
        const p = join(d, n);
        return statSync(p).isDirectory() ? files(p) : /\.ts$/.test(n) && !n.endsWith('.test.ts') ? [p] : [];
      });
    const importers = ['contract', 'lib', 'ingest', 'history', 'apps']
      .flatMap((top) => files(join(ROOT, top)))
      .filter((f) => /(?:from\s*|import\s*\(\s*)['"]esbuild['"]/.test(readFileSync(f, 'utf8')))
      .map((f) => relative(ROOT, f));
    expect(importers).toEqual(['history/dashboard/build.ts']);
  });
});
