import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { buildSnippet, GZIP_BUDGET, SNIPPET_OUT, sizes } from '../../tracker-snippet/build.js';

// The snippet ships to every page of every site: its size is a tested number (bench/targets.ts: at most
// 2 KB gzipped, every feature included). Builds it the way `npm run build` does.
describe('tracker snippet size', () => {
  it(`is one minified IIFE of at most ${GZIP_BUDGET} bytes gzipped (zlib level 9)`, async () => {
    const built = await buildSnippet();
    const onDisk = await readFile(SNIPPET_OUT);
    expect(onDisk.toString()).toBe(built.code);

    const s = sizes(onDisk);
    console.log(`dist/t.js: raw ${s.raw} B, gzip ${s.gzip} B, brotli ${s.brotli} B (budget ${GZIP_BUDGET} B gzipped)`);
    expect(s.gzip).toBeLessThanOrEqual(GZIP_BUDGET);

    const code = built.code.trim();
    expect(code.startsWith('(()=>{')).toBe(true);
    expect(code.endsWith('})();')).toBe(true);
    // No dependencies, classes or module loaders crept in (the browser test checks the one global).
    expect(code).not.toMatch(/\bclass(\s+[\w$]+)?(\s+extends\s+[\w$.]+)?\s*\{|\brequire\(|\bimport\b|zod/);
  });
});
