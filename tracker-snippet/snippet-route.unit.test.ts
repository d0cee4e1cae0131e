import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acceptedEncodings, snippetRoute } from '../ingest/snippet-route.js';

// GET /t.js as ingest serves it (ingest/snippet-route.ts), on a stand-in snippet file.
describe('GET /t.js', () => {
  let dir: string;
  let path: string;
  const js = `(()=>{/* ${'a stand-in snippet '.repeat(50)} */})();`;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'clickfold-snippet-'));
    path = join(dir, 't.js');
    await writeFile(path, js);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('serves JavaScript with cache headers and an ETag', async () => {
    const res = await snippetRoute({ path }).request('/t.js');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(res.headers.get('cache-control')).toMatch(/^public, max-age=3600/);
    expect(res.headers.get('etag')).toMatch(/^"[\w-]+"$/);
    expect(res.headers.get('vary')).toBe('Accept-Encoding');
    expect(res.headers.get('content-encoding')).toBeNull();
    expect(await res.text()).toBe(js);
  });

  it('compresses with brotli or gzip, whichever the client accepts (brotli first)', async () => {
    const app = snippetRoute({ path });
    const br = await app.request('/t.js', { headers: { 'accept-encoding': 'gzip, deflate, br' } });
    expect(br.headers.get('content-encoding')).toBe('br');
    expect(brotliDecompressSync(Buffer.from(await br.arrayBuffer())).toString()).toBe(js);

    const gz = await app.request('/t.js', { headers: { 'accept-encoding': 'gzip, br;q=0' } });
    expect(gz.headers.get('content-encoding')).toBe('gzip');
    const gzBytes = Buffer.from(await gz.arrayBuffer());
    expect(Number(gz.headers.get('content-length'))).toBe(gzBytes.byteLength);
    expect(gunzipSync(gzBytes).toString()).toBe(js);
    // One validator per representation.
    expect(new Set([br.headers.get('etag'), gz.headers.get('etag')]).size).toBe(2);
  });

  it('answers a revalidation with 304 and no body', async () => {
    const app = snippetRoute({ path });
    const first = await app.request('/t.js', { headers: { 'accept-encoding': 'gzip' } });
    const etag = first.headers.get('etag')!;
    const again = await app.request('/t.js', { headers: { 'accept-encoding': 'gzip', 'if-none-match': `W/${etag}` } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');
    const stale = await app.request('/t.js', { headers: { 'if-none-match': '"something-else"' } });
    expect(stale.status).toBe(200);
  });

  it('answers 404 until the snippet is built, then serves it', async () => {
    const later = join(dir, 'later.js');
    const app = snippetRoute({ path: later });
    expect((await app.request('/t.js')).status).toBe(404);
    await writeFile(later, js);
    expect((await app.request('/t.js')).status).toBe(200);
  });

  it('parses Accept-Encoding with q-values', () => {
    expect([...acceptedEncodings('gzip, br;q=0, deflate;q=0.5')]).toEqual(['gzip', 'deflate']);
    expect([...acceptedEncodings(undefined)]).toEqual([]);
  });
});
