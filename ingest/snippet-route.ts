import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';

/** Where `npm run build` writes the bundled tracker snippet. */
export const SNIPPET_PATH = fileURLToPath(new URL('../dist/t.js', import.meta.url));

/** `GET /t.js`: the tracker snippet, read once and kept in memory. */
export function snippetRoute(path = SNIPPET_PATH): Hono {
  const app = new Hono();
  let body: Promise<string | null> | null = null;
  app.get('/t.js', async (c) => {
    body ??= readFile(path, 'utf8').catch(() => null);
    const js = await body;
    if (js === null) {
      body = null;
      return c.text('// the snippet is not built: run `npm run build`\n', 404, { 'content-type': 'text/javascript; charset=utf-8' });
    }
    return c.body(js, 200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'public, max-age=3600' });
  });
  return app;
}
