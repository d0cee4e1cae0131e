import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The import rule of ARCHITECTURE.md, checked on every product file: imports only point down.
 *
 *   contract/  ←  lib/  ←  ingest/, history/ (peers)  ←  apps/
 *
 * contract/ imports nothing of the project but itself; lib/ only contract/; ingest/ and history/
 * contract/, lib/ and themselves, never each other; apps/ (the composition roots) anything. No
 * product file outside lib/ imports a Kafka client: the rest of the code sees the log port.
 */
const ROOT = normalize(join(import.meta.dirname, '..', '..'));
const LAYERS = { contract: 0, lib: 1, ingest: 2, history: 2, apps: 3 } as const;
type Layer = keyof typeof LAYERS;
const KAFKA_CLIENTS = ['kafkajs', '@platformatic/kafka', 'node-rdkafka', '@confluentinc/kafka-javascript'];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (name === 'node_modules' || name === 'dist') return [];
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return /\.(ts|js)$/.test(name) && !name.endsWith('.d.ts') ? [path] : [];
  });
}

const layerOf = (file: string): Layer | null => {
  const top = relative(ROOT, file).split(/[\\/]/)[0]!;
  return top in LAYERS ? (top as Layer) : null;
};

/** Every module specifier a file imports or re-exports, static or dynamic. */
function importsOf(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(
    /(?:^|[\s;])(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s+['"]([^'"]+)['"]/gm,
  )) {
    out.push((m[1] ?? m[2] ?? m[3])!);
  }
  return out;
}

const files = Object.keys(LAYERS).flatMap((top) => sourceFiles(join(ROOT, top)));

describe('layers: imports only point down', () => {
  it('finds the product files', () => {
    for (const top of Object.keys(LAYERS)) expect(files.some((f) => layerOf(f) === top)).toBe(true);
  });

  it('has no import that runs upward or across the two components', () => {
    const wrong: string[] = [];
    for (const file of files) {
      const from = layerOf(file)!;
      for (const spec of importsOf(readFileSync(file, 'utf8'))) {
        if (!spec.startsWith('.')) continue;
        const target = layerOf(normalize(join(dirname(file), spec)));
        if (target === null) {
          wrong.push(`${relative(ROOT, file)} imports ${spec}, outside the product folders`);
          continue;
        }
        const up = LAYERS[target] > LAYERS[from];
        const across = LAYERS[target] === LAYERS[from] && target !== from;
        if (up || across) wrong.push(`${relative(ROOT, file)} (${from}) imports ${spec} (${target})`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('keeps Kafka clients inside lib/', () => {
    const wrong = files.filter(
      (f) => layerOf(f) !== 'lib' && importsOf(readFileSync(f, 'utf8')).some((s) => KAFKA_CLIENTS.some((k) => s === k || s.startsWith(`${k}/`))),
    );
    expect(wrong.map((f) => relative(ROOT, f))).toEqual([]);
  });

  it('the rule is checked, not assumed: it sees an upward import when there is one', () => {
    expect(importsOf(`import { x } from '../history/fold.js';\nexport { y } from "./y.js";\nconst z = await import('../apps/a.js');`)).toEqual([
      '../history/fold.js',
      './y.js',
      '../apps/a.js',
    ]);
    expect(importsOf(`import type {\n  A,\n  B,\n} from 'kafkajs';`)).toEqual(['kafkajs']);
  });
});
