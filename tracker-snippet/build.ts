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
export async function buildSnippet(out = SNIPPET_OUT): Promise<{ code: string; sizes: SnippetSizes }> {
  const result = await build({
    entryPoints: [SNIPPET_ENTRY],
    bundle: true,
    format: 'iife',
    platform: 'browser',
    // Every browser of the last few years; no polyfills are added, none are needed.
    target: ['es2020'],
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
  const { sizes: s } = await buildSnippet();
  const pct = ((s.gzip / GZIP_BUDGET) * 100).toFixed(0);
  console.log(`dist/t.js  raw ${s.raw} B  gzip ${s.gzip} B (${pct}% of ${GZIP_BUDGET})  brotli ${s.brotli} B`);
  if (s.gzip > GZIP_BUDGET) {
    console.error(`the snippet is over its budget: ${s.gzip} > ${GZIP_BUDGET} bytes gzipped`);
    process.exitCode = 1;
  }
}
