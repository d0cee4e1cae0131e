/** The tracker snippet's size: dist/t.js raw, gzip -9, brotli 11 (skipped when not built). */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { brotliCompressSync, constants as zlibConstants, gzipSync } from 'node:zlib';
import type { Figure } from '../report.js';
import { meets, targetText, TARGETS } from '../targets.js';

export type SnippetResult =
  | { built: false; figures: { skipped: Figure } }
  | { built: true; raw: number; gzip: number; brotli: number; figures: { raw: Figure; gzip: Figure; brotli: Figure } };

/** `file`: the built snippet, dist/t.js. */
export function measureSnippet(file: string): SnippetResult {
  if (!existsSync(file)) {
    return {
      built: false,
      figures: { skipped: { key: 'snippet', what: 'snippet dist/t.js', unit: '', value: 'not built: run `npm run build` first (skipped)' } },
    };
  }
  const code = readFileSync(file);
  const gz = gzipSync(code, { level: 9 }).byteLength;
  const br = brotliCompressSync(code, { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 11 } }).byteLength;
  return {
    built: true,
    raw: code.byteLength,
    gzip: gz,
    brotli: br,
    figures: {
      raw: {
        key: 'snippet.raw',
        what: 'snippet dist/t.js, raw',
        unit: 'B',
        value: code.byteLength,
        note: `sha256 ${createHash('sha256').update(code).digest('hex').slice(0, 12)}`,
      },
      gzip: {
        key: 'snippet.gzip',
        what: 'snippet dist/t.js, gzip -9',
        unit: 'B',
        value: gz,
        target: targetText(TARGETS.snippetGzip),
        ok: meets(TARGETS.snippetGzip, gz),
      },
      brotli: { key: 'snippet.brotli', what: 'snippet dist/t.js, brotli q11', unit: 'B', value: br },
    },
  };
}
