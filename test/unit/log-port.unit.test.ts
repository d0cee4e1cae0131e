import { describe, expect, it } from 'vitest';
import { PartitionedLog } from '../../lib/log-memory.js';
import { logContract } from '../support/log-contract.js';

/** The log port on the in-process log (the same suite runs on Kafka in test/int/log-port.int.test.ts). */
logContract('in-process log', async () => ({ log: new PartitionedLog(4), topic: 't', out: 'out' }), { waitMs: 5000 });

describe('the in-process log', () => {
  it('runs one member per group, and hands out one shared producer', async () => {
    const log = new PartitionedLog(2);
    const first = log.consumer({ topic: 't', group: 'g' });
    await first.run(async () => {});
    await expect(log.consumer({ topic: 't', group: 'g' }).run(async () => {})).rejects.toThrow(/already has a running member/);
    await first.stop();
    const next = log.consumer({ topic: 't', group: 'g' });
    await next.run(async () => {});
    expect(log.producer()).toBe(log.producer());
    await log.close();
    expect(next.health!().running).toBe(false);
  });

  it('keeps committed offsets per group and topic: another group, or another topic, starts afresh', async () => {
    const log = new PartitionedLog(1);
    log.append('a', [{ key: 'k', value: '1' }]);
    log.append('b', [{ key: 'k', value: '2' }]);
    const seen: string[] = [];
    const c = log.consumer({ topic: 'a', group: 'g' });
    await c.run(async (b) => void seen.push(...b.messages.map((m) => m.value)));
    await new Promise((r) => setTimeout(r, 20));
    await c.stop();
    expect(await c.lag!()).toEqual(new Map([[0, 0]]));
    expect(await log.consumer({ topic: 'b', group: 'g' }).lag!()).toEqual(new Map([[0, 1]]));
    expect(await log.consumer({ topic: 'a', group: 'other' }).lag!()).toEqual(new Map([[0, 1]]));
    expect(await log.consumer({ topic: 'a', group: 'other', startAt: 'end' }).lag!()).toEqual(new Map([[0, 0]]));
    expect(seen).toEqual(['1']);
  });
});
