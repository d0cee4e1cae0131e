/**
 * Builds the tracker snippet into one minified IIFE at dist/t.js and reports its size.
 *
 *   npm run build            # or: tsx tracker-snippet/build.ts
 *
 * The budget (2,048 bytes gzipped, zlib level 9) is checked by test/e2e/snippet-size.e2e.test.ts;
 * this script prints the three numbers (raw, gzip, brotli) and fails when the budget is passed.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import { build } from 'esbuild';

export const SNIPPET_ENTRY = fileURLToPath(new URL('./src/index.ts', import.meta.url));
export const SNIPPET_OUT = fileURLToPath(new URL('../dist/t.js', import.meta.url));
export const GZIP_BUDGET = 2048;
export const STAGES_ENTRY = fileURLToPath(new URL('./src/stages.ts', import.meta.url));
export const STAGES_OUT = fileURLToPath(new URL('../dist/t-stages.js', import.meta.url));
/** The `stages` add-on's budget: only pages that ask for their stages load it. */
export const STAGES_GZIP_BUDGET = 1024;

/** Compile-time constants (see globals.d.ts); esbuild inlines them and folds what they decide. */
export const DEFINE = {
  __KEY__: JSON.stringify('clickfold'),
  __PATH__: JSON.stringify('/v1/collect'),
  __BATCH__: '10',
  __FLUSH_MS__: '1000',
  __CHUNK__: '20',
  __MAX_QUEUE__: '200',
  __SESSION_MS__: String(30 * 60_000),
};

export interface SnippetSizes {
  raw: number;
  gzip: number;
  brotli: number;
}

export function sizes(code: Uint8Array): SnippetSizes {
  return {
    raw: code.byteLength,
    gzip: gzipSync(code, { level: 9 }).byteLength,
    brotli: brotliCompressSync(code, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).byteLength,
  };
}

/** Bundles the snippet and writes it atomically (concurrent test files may build at once). */
export function buildSnippet(out = SNIPPET_OUT): Promise<{ code: string; sizes: SnippetSizes }> {
  return bundle(SNIPPET_ENTRY, out, 'iife');
}

/** Bundles the `stages` add-on: an ES module, which the snippet loads with import(). */
export function buildStagesAddon(out = STAGES_OUT): Promise<{ code: string; sizes: SnippetSizes }> {
  return bundle(STAGES_ENTRY, out, 'esm');
}

async function bundle(entry: string, out: string, format: 'iife' | 'esm'): Promise<{ code: string; sizes: SnippetSizes }> {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    format,
    platform: 'browser',
    // Every browser of the last few years (ES2021: logical assignment, Chrome 85, Firefox 79,
    // Safari 14); no polyfills are added, none are needed.
    target: ['es2021'],
    minify: true,
    legalComments: 'none',
    charset: 'utf8',
    define: DEFINE,
    // The root tsconfig's `strict` would add a "use strict" prologue; the IIFE does not need it.
    tsconfigRaw: { compilerOptions: { alwaysStrict: false } },
    write: false,
    logLevel: 'silent',
  });
  const file = result.outputFiles[0];
  if (!file) throw new Error('esbuild produced no output');
  await mkdir(dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, file.contents);
  await rename(tmp, out);
  return { code: file.text, sizes: sizes(file.contents) };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  for (const [name, built, budget] of [
    ['dist/t.js', buildSnippet(), GZIP_BUDGET],
    ['dist/t-stages.js', buildStagesAddon(), STAGES_GZIP_BUDGET],
  ] as const) {
    const { sizes: s } = await built;
    const pct = ((s.gzip / budget) * 100).toFixed(0);
    console.log(`${name}  raw ${s.raw} B  gzip ${s.gzip} B (${pct}% of ${budget})  brotli ${s.brotli} B`);
    if (s.gzip > budget) {
      console.error(`${name} is over its budget: ${s.gzip} > ${budget} bytes gzipped`);
      process.exitCode = 1;
    }
  }
}
