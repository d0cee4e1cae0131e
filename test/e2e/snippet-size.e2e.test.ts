import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { buildSnippet, buildStagesAddon, GZIP_BUDGET, SNIPPET_OUT, sizes, STAGES_GZIP_BUDGET, STAGES_OUT } from '../../tracker-snippet/build.js';

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
    // No dependencies, classes or module loaders crept in (the browser test checks the one global);
    // the one import() is the stages add-on's, from the script's own origin.
    expect(code).not.toMatch(/\bclass(\s+[\w$]+)?(\s+extends\s+[\w$.]+)?\s*\{|\brequire\(|zod/);
    expect(code.match(/\bimport\b.{0,40}/g)).toEqual([expect.stringMatching(/^import\(new URL\("t-stages\.js",\w+\.src\)\)/)]);
  });

  it(`has a stages add-on (t-stages.js, an ES module) of at most ${STAGES_GZIP_BUDGET} bytes gzipped`, async () => {
    const built = await buildStagesAddon();
    const onDisk = await readFile(STAGES_OUT);
    expect(onDisk.toString()).toBe(built.code);
    const s = sizes(onDisk);
    console.log(`dist/t-stages.js: raw ${s.raw} B, gzip ${s.gzip} B, brotli ${s.brotli} B (budget ${STAGES_GZIP_BUDGET} B gzipped)`);
    expect(s.gzip).toBeLessThanOrEqual(STAGES_GZIP_BUDGET);
    // What the snippet calls: one export, `d`; no dependency bundled in.
    expect(built.code.trim()).toMatch(/export\s*\{\s*\w+ as d\s*\};$/);
    expect(built.code).not.toMatch(/\brequire\(|zod|\bimport\s/);
  });
});
