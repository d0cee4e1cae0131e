import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { compileTopicMap } from '../../history/fold/topic-map.js';
import { loadTopicMap } from '../../history/fold/topic-map-file.js';

const run = promisify(execFile);
const cli = (...args: string[]) =>
  run(process.execPath, ['--import', 'tsx', 'apps/topic-map.ts', ...args]).then(
    (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
  );

describe('topic-map CLI and the sample map', () => {
  it('maps the README sample URLs and events with the demo map', async () => {
    const r = await cli(
      '--map',
      'history/fold/topic-maps/demo.json',
      'https://shop.example/products/sku-1',
      '/products/sku-1/specs',
      '/checkout/sku-2',
      '/about',
      '{"channel":"email","name":"Email Link Clicked","props":{"product":"sku-1"}}',
    );
    expect(r.code).toBe(0);
    expect(r.out.trim().split('\n')).toEqual([
      'ladder: intro < detail < purchase',
      'stall rule quiet-at-detail: quiet at detail for 2m (topics product:*)',
      'https://shop.example/products/sku-1  ->  product:sku-1 @ intro',
      '/products/sku-1/specs  ->  product:sku-1 @ detail',
      '/checkout/sku-2  ->  product:sku-2 @ purchase',
      '/about  ->  (no rule: kept in Kafka, not in the history)',
      '{"channel":"email","name":"Email Link Clicked","props":{"product":"sku-1"}}  ->  product:sku-1 @ detail',
    ]);
  });

  it('says when a topic is refused or a hint ignored', async () => {
    const r = await cli(`/products/${'x'.repeat(200)}`, '{"type":"click","url":"/products/sku-1","topic":"anything"}');
    expect(r.code).toBe(0);
    expect(r.out.trim().split('\n').slice(1)).toEqual([
      `/products/${'x'.repeat(200)}  ->  refused (topic_too_long): the topic has 208 characters, more than 128`,
      '{"type":"click","url":"/products/sku-1","topic":"anything"}  ->  product:sku-1 @ intro  (data-topic ignored: no rule produces it, not in hintTopics)',
    ]);
  });

  it('rejects a bad map with the file, the line and the reason, and exit code 2', async () => {
    const file = join(tmpdir(), `bad-map-${process.pid}.json`);
    writeFileSync(file, '{\n  "ladder": ["a", "b"],\n  "rules": [\n    { "url": "/x/:id", "topic": "x:{id}", "stage": "c" }\n  ]\n}\n');
    const r = await cli('--map', file, '/x/1');
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${file}:4: rules.0.stage: "c" is not on the ladder (a < b)`);
  });

  it("tries a site's own rules before the shared ones", async () => {
    const map = compileTopicMap(await loadTopicMap('history/fold/topic-maps/demo.json'));
    expect(map.classify({ site: 'plans', channel: 'web', type: 'page', url: '/plans/pro/compare' })).toEqual({ topic: 'plan:pro', stage: 1 });
    expect(map.classify({ site: 'demo', channel: 'web', type: 'page', url: '/plans/pro/compare' })).toBeNull();
    expect(map.classify({ site: 'plans', channel: 'web', type: 'page', url: '/products/sku-1' })).toEqual({ topic: 'product:sku-1', stage: 0 });
    expect(map.classify({ site: '__proto__', channel: 'web', type: 'page', url: '/products/sku-1' })).toEqual({ topic: 'product:sku-1', stage: 0 });
  });
});
