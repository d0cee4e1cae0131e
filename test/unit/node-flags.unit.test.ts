import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { INGEST_NODE_FLAGS } from '../../apps/shared/node-flags.js';

const ROOT = join(import.meta.dirname, '..', '..');
const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;

describe('the ingest process’s V8 flags', () => {
  it('are the ones `npm run ingest` runs with, and the ones the README tells a supervisor to use', () => {
    expect(scripts.ingest).toBe(`node ${INGEST_NODE_FLAGS.join(' ')} --import tsx apps/ingest.ts`);
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    expect(readme).toContain(`node ${INGEST_NODE_FLAGS.join(' ')} --import tsx apps/ingest.ts`);
    expect(readme).not.toMatch(/node --import tsx apps\/ingest\.ts/);
  });
});
