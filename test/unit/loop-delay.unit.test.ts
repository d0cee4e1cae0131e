import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { delaySamples, registerLoopDelay } from '../../lib/loop-delay.js';

describe('event-loop delay histogram (lib/loop-delay.ts)', () => {
  it('turns a monitor’s percentile table into (delay, samples) pairs that add up to its count', () => {
    const percentiles = new Map([
      [0, 1e6],
      [50, 2e6],
      [90, 10e6],
      [99, 40e6],
      [100, 80e6],
    ]);
    const pairs = delaySamples({ count: 200, percentiles });
    expect(pairs).toEqual([
      [0.002, 100],
      [0.01, 80],
      [0.04, 18],
      [0.08, 2],
    ]);
    expect(pairs.reduce((n, [, k]) => n + k, 0)).toBe(200);
    expect(delaySamples({ count: 0, percentiles: new Map() })).toEqual([]);
  });

  it('is served as clickfold_event_loop_delay_seconds, once per registry', async () => {
    const registry = new Registry();
    expect(registerLoopDelay(registry)).toBe(registerLoopDelay(registry));
    const text = await registry.metrics();
    expect(text).toContain('# TYPE clickfold_event_loop_delay_seconds histogram');
    expect(text).toContain('clickfold_event_loop_delay_seconds_bucket{le="0.025"}');
  });
});
