import { afterEach, describe, expect, it } from 'vitest';
import { PartitionedLog } from '../../lib/log-memory.js';
import type { ConsumedBatch, LogConsumer } from '../../lib/log.js';
import { eventually } from '../support/app.js';
import { captureLogs } from '../support/log-capture.js';

/**
 * The embedded consumer: a handler that throws is an infrastructure failure; the same batch comes
 * again with a growing pause, nothing is committed past it, the other partitions go on, health()
 * says so, the warnings do not flood, and stop() does not wait out a pause.
 */
const TOPIC = 't';
const keyOn = (log: PartitionedLog, partition: number) => {
  for (let i = 0; ; i++) if (log.partitionOf(`k${i}`) === partition) return `k${i}`;
};

let consumer: LogConsumer | undefined;
afterEach(async () => {
  await consumer?.stop();
  consumer = undefined;
});

describe('the embedded consumer', () => {
  it('retries the same batch with a growing pause, commits nothing past it, and reports the failure until it gets through', async () => {
    const log = new PartitionedLog(1);
    const { logger, lines } = captureLogs();
    log.append(TOPIC, [
      { key: 'a', value: '1' },
      { key: 'a', value: '2' },
    ]);
    const attempts: { at: number; offsets: string[] }[] = [];
    const failUntil = 5;
    consumer = log.consumer({ topic: TOPIC, group: 'g', logger, retry: { initialMs: 20, maxMs: 160, logEvery: 3 } });
    await consumer.run(async (b) => {
      attempts.push({ at: performance.now(), offsets: b.messages.map((m) => m.offset) });
      if (attempts.length <= failUntil) throw new Error('Redis is away');
    });

    await eventually(async () => (attempts.length >= 3 ? true : undefined), 5000, 'three attempts');
    const h = consumer.health!();
    expect(h).toMatchObject({ running: true, failing: true, attempts: expect.any(Number) });
    expect(h.lastError).toMatch(/Redis is away/);
    expect(h.since).toBeLessThanOrEqual(Date.now());
    expect(await consumer.lag!()).toEqual(new Map([[0, 2]]));

    await eventually(async () => (attempts.length === failUntil + 1 && !consumer!.health!().failing ? true : undefined), 5000, 'the recovery');
    // The same batch every time: nothing was committed past it.
    expect(attempts.every((a) => a.offsets.join() === '0,1')).toBe(true);
    // Equal jitter: each pause is at least half its ceiling (20, 40, 80, 160 ms), so it grows (the
    // cap and the jitter's range are checked without timers in worker-ops.unit.test.ts).
    const gaps = attempts.slice(1).map((a, i) => a.at - attempts[i]!.at);
    for (const [i, floor] of [10, 20, 40, 80].entries()) expect(gaps[i]).toBeGreaterThanOrEqual(floor - 2);
    expect(await consumer.lag!()).toEqual(new Map([[0, 0]]));
    expect(consumer.health!()).toMatchObject({ running: true, failing: false, attempts: 0 });

    // Warned on the first failure and every third, not on each; the recovery is logged.
    const warns = lines.filter((l) => l.level === 40);
    expect(warns.map((w) => w.attempt)).toEqual([1, 3]);
    expect(warns[0]).toMatchObject({ topic: TOPIC, partition: 0, err: 'Redis is away' });
    expect(lines.some((l) => l.level === 30 && l.attempts === failUntil && /getting through again/.test(l.msg))).toBe(true);
  });

  it('logs again when the reason changes', async () => {
    const log = new PartitionedLog(1);
    const { logger, lines } = captureLogs();
    log.append(TOPIC, [{ key: 'a', value: '1' }]);
    let n = 0;
    consumer = log.consumer({ topic: TOPIC, group: 'g', logger, retry: { initialMs: 5, maxMs: 5, logEvery: 100 } });
    await consumer.run(async () => {
      n++;
      if (n <= 2) throw new Error('Kafka is away');
      if (n <= 4) throw new Error('Redis is out of memory');
    });
    await eventually(async () => (n >= 5 ? true : undefined), 5000, 'five attempts');
    expect(lines.filter((l) => l.level === 40).map((l) => [l.attempt, l.err])).toEqual([
      [1, 'Kafka is away'],
      [3, 'Redis is out of memory'],
    ]);
  });

  it('keeps folding the other partitions while one is failing', async () => {
    const log = new PartitionedLog(2);
    const [k0, k1] = [keyOn(log, 0), keyOn(log, 1)];
    const seen: ConsumedBatch[] = [];
    consumer = log.consumer({ topic: TOPIC, group: 'g', retry: { initialMs: 50, maxMs: 50 } });
    await consumer.run(async (b) => {
      if (b.partition === 0) throw new Error('partition 0 cannot be written');
      seen.push(b);
    });
    log.append(TOPIC, [
      { key: k0, value: 'x' },
      { key: k1, value: 'y' },
    ]);
    await eventually(async () => (seen.length > 0 ? true : undefined), 5000, 'partition 1');
    log.append(TOPIC, [{ key: k1, value: 'z' }]);
    await eventually(async () => (seen.length > 1 ? true : undefined), 5000, 'partition 1 again');
    expect(seen.flatMap((b) => b.messages.map((m) => m.value))).toEqual(['y', 'z']);
    expect(await consumer.lag!()).toEqual(
      new Map([
        [0, 1],
        [1, 0],
      ]),
    );
    expect(consumer.health!().failing).toBe(true);
  });

  it('stops at once during a long pause, and a failure caused by the stop is not reported', async () => {
    const log = new PartitionedLog(1);
    const { logger, lines } = captureLogs();
    log.append(TOPIC, [{ key: 'a', value: '1' }]);
    let calls = 0;
    let stopping = false;
    const c = log.consumer({ topic: TOPIC, group: 'g', logger, retry: { initialMs: 60_000, maxMs: 60_000 } });
    await c.run(async () => {
      calls++;
      if (calls === 1) throw new Error('first failure');
      await new Promise((r) => setTimeout(r, 20));
      if (stopping) throw new Error('stopping');
    });
    await eventually(async () => (calls === 1 && c.health!().failing ? true : undefined), 5000, 'the first failure');
    const t = performance.now();
    await c.stop();
    expect(performance.now() - t).toBeLessThan(500);
    expect(calls).toBe(1);
    expect(c.health!()).toMatchObject({ running: false, failing: false });

    // A handler that throws because it is being stopped: not an infrastructure failure.
    const { logger: logger2, lines: lines2 } = captureLogs();
    const log2 = new PartitionedLog(1);
    log2.append(TOPIC, [{ key: 'a', value: '1' }]);
    let entered!: () => void;
    const inHandler = new Promise<void>((r) => (entered = r));
    const c2 = log2.consumer({ topic: TOPIC, group: 'g', logger: logger2 });
    await c2.run(async () => {
      entered();
      await new Promise((r) => setTimeout(r, 30));
      throw new Error('stopping');
    });
    await inHandler;
    stopping = true;
    await c2.stop();
    expect(lines2.filter((l) => l.level >= 40)).toEqual([]);
    expect(await c2.lag!()).toEqual(new Map([[0, 1]]));
    expect(lines.filter((l) => l.level === 40)).toHaveLength(1);
  });

  it('reports lag per partition: records appended minus records committed', async () => {
    const log = new PartitionedLog(3);
    const keys = [0, 1, 2].map((p) => keyOn(log, p));
    log.append(TOPIC, [
      { key: keys[0]!, value: 'a' },
      { key: keys[0]!, value: 'b' },
      { key: keys[2]!, value: 'c' },
    ]);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    consumer = log.consumer({ topic: TOPIC, group: 'g' });
    expect(await consumer.lag!()).toEqual(
      new Map([
        [0, 2],
        [1, 0],
        [2, 1],
      ]),
    );
    let folded = 0;
    await consumer.run(async (b) => {
      await gate;
      folded += b.messages.length;
    });
    // While the handler waits, nothing is committed.
    await new Promise((r) => setTimeout(r, 20));
    expect(await consumer.lag!()).toEqual(
      new Map([
        [0, 2],
        [1, 0],
        [2, 1],
      ]),
    );
    release();
    await eventually(async () => (folded === 3 ? true : undefined), 5000, 'the fold');
    await eventually(async () => ([...(await consumer!.lag!()).values()].every((n) => n === 0) ? true : undefined), 5000, 'lag 0');
  });
});
