import { appendFileSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DurableLog, type DurableLogOptions } from '../../lib/log-durable.js';
import { UNBOUNDED } from '../../lib/log-retention.js';
import type { ConsumedBatch } from '../../lib/log.js';
import { eventually } from '../support/app.js';
import { logContract } from '../support/log-contract.js';

/**
 * The durable embedded log (`npm start` with a data directory): the log port's contract, and what
 * it adds: records, committed offsets and the folder's state come back after a restart (and after
 * a crash, from the newest snapshot), a torn record at the end is cut off, and the bound drops the
 * oldest segments but never a record the newest snapshot has not folded.
 */
const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'clickfold-durable-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const options = (dir: string, more: Partial<DurableLogOptions> = {}): DurableLogOptions => ({
  dir,
  partitions: 2,
  retention: UNBOUNDED,
  protect: [],
  snapshotIntervalMs: 60_000,
  ...more,
});
const open = async (dir: string, more: Partial<DurableLogOptions> = {}) => DurableLog.open(options(dir, more));

logContract('durable embedded log', async () => ({ log: (await open(tempDir(), { partitions: 4 })).log, topic: 't', out: 'out' }), { waitMs: 5000 });

/** Runs group `g` on topic `t` until `n` records were handed over; answers their values. */
async function consume(log: DurableLog, group: string, n: number, onBatch?: (b: ConsumedBatch) => void): Promise<string[]> {
  const values: string[] = [];
  const c = log.consumer({ topic: 't', group });
  await c.run(async (b) => {
    values.push(...b.messages.map((m) => m.value));
    onBatch?.(b);
  });
  await eventually(async () => (values.length >= n ? true : undefined), 5000, `${n} records`);
  await c.stop();
  return values;
}

const values = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => ({ key: `k${(from + i) % 5}`, value: `v${from + i}` }));

describe('the durable embedded log', () => {
  it('keeps records, offsets and committed offsets across a clean restart', async () => {
    const dir = tempDir();
    const first = await open(dir);
    await first.log.producer().send('t', values(0, 10));
    expect(await consume(first.log, 'g', 10)).toHaveLength(10);
    const ends = await first.log.offsets('t', 'end');
    await first.log.close();

    const again = await open(dir);
    expect(await again.log.offsets('t', 'end')).toEqual(ends);
    expect(
      again.log
        .read('t')
        .flat()
        .map((m) => m.value)
        .sort(),
    ).toEqual(
      values(0, 10)
        .map((v) => v.value)
        .sort(),
    );
    await again.log.producer().send('t', values(10, 12));
    // The group goes on where it committed: only the new records.
    expect((await consume(again.log, 'g', 2)).sort()).toEqual(['v10', 'v11']);
    await again.log.close();
  });

  it('after a crash, groups go on from the newest snapshot, with the state taken at the same instant', async () => {
    const dir = tempDir();
    const { log } = await open(dir);
    let folded: string[] = [];
    log.snapshotWith(() => folded.map((v) => JSON.stringify(v)));
    await log.producer().send('t', values(0, 6));
    folded = await consume(log, 'g', 6);
    await log.snapshot('test');
    // Folded after the snapshot, then the process dies: no close(), no last snapshot.
    await log.producer().send('t', values(6, 9));
    folded.push(...(await consume(log, 'g', 3)));
    expect(folded).toHaveLength(9);
    (log as unknown as { segments: { close(): void }; unlock(): void }).segments.close();
    (log as unknown as { unlock(): void }).unlock();

    const { log: after, restored } = await open(dir);
    const state = restored!.lines.map((l) => JSON.parse(l) as string);
    expect(state.sort()).toEqual(values(0, 6).map((v) => v.value));
    // What the restored state lacks comes again, exactly that.
    expect((await consume(after, 'g', 3)).sort()).toEqual(['v6', 'v7', 'v8']);
    await after.close();
  });

  it('cuts off a torn record at the end of the newest segment and goes on from the record before it', async () => {
    const dir = tempDir();
    const { log } = await open(dir, { partitions: 1 });
    await log.producer().send('t', values(0, 3));
    await log.close();
    const segDir = join(dir, 'log');
    const newest = join(segDir, readdirSync(segDir).sort().at(-1)!);
    const before = statSync(newest).size;
    // A record cut short by a power loss: a length, part of a CRC, nothing else.
    appendFileSync(newest, Buffer.from([200, 0, 0, 0, 1, 2]));

    const { log: after } = await open(dir, { partitions: 1 });
    expect(statSync(newest).size).toBe(before);
    await after.producer().send('t', values(3, 4));
    expect(after.read('t')[0]!.map((m) => [m.offset, m.value])).toEqual([
      ['0', 'v0'],
      ['1', 'v1'],
      ['2', 'v2'],
      ['3', 'v3'],
    ]);
    await after.close();
  });

  it('refuses a damaged record in an older segment instead of dropping what follows', async () => {
    const dir = tempDir();
    const { log } = await open(dir, { partitions: 1, maxSegmentBytes: 1 });
    for (let i = 0; i < 3; i++) await log.producer().send('t', values(i, i + 1));
    await log.close();
    const segDir = join(dir, 'log');
    const oldest = join(segDir, readdirSync(segDir).sort()[0]!);
    writeFileSync(oldest, Buffer.alloc(statSync(oldest).size, 7));
    await expect(open(dir, { partitions: 1 })).rejects.toThrow(/damaged .*move it/);
  });

  it('past its bound drops the oldest segments, but never what the newest snapshot has not folded', async () => {
    const dir = tempDir();
    const retention = { maxEvents: 40, maxBytes: Infinity, maxAgeMs: Infinity };
    const { log } = await open(dir, { partitions: 1, retention, protect: [{ group: 'worker', topic: 't' }] });
    log.snapshotWith(() => []);
    for (let i = 0; i < 100; i += 5) await log.producer().send('t', values(i, i + 5));
    // No snapshot has folded anything: all 100 stay, past the bound.
    expect(log.stats().kept.events).toBe(100);
    expect(await consume(log, 'worker', 100)).toHaveLength(100);
    // Folded, but the snapshot on disk does not say so yet: the next append takes one, then drops.
    await log.producer().send('t', values(100, 101));
    await eventually(async () => (log.stats().kept.events <= 40 ? true : undefined), 5000, 'the drop');
    const kept = log.read('t')[0]!;
    expect(kept.at(-1)!.offset).toBe('100');
    expect(Number(kept[0]!.offset)).toBeGreaterThan(50);
    const segments = readdirSync(join(dir, 'log')).length;
    await log.close();

    // The offsets go on after a restart, although the first records are gone.
    const { log: after } = await open(dir, { partitions: 1, retention, protect: [{ group: 'worker', topic: 't' }] });
    expect(readdirSync(join(dir, 'log')).length).toBe(segments);
    expect((await after.offsets('t', 'beginning')).get(0)).toBe(kept[0]!.offset);
    await after.producer().send('t', values(101, 102));
    // The worker had folded up to v99: it goes on from v100, which was kept.
    expect(await consume(after, 'worker', 2)).toEqual(['v100', 'v101']);
    expect(after.read('t')[0]!.at(-1)!.offset).toBe('101');
    await after.close();
  });

  it('one process per directory, and the partition count it was written with', async () => {
    const dir = tempDir();
    const { log } = await open(dir);
    // Another live process's lock (the test runner's parent) is refused; this process's own is taken over.
    writeFileSync(join(dir, 'LOCK'), String(process.ppid));
    await expect(open(dir)).rejects.toThrow(/in use by process/);
    writeFileSync(join(dir, 'LOCK'), String(process.pid));
    await log.close();
    await expect(open(dir, { partitions: 3 })).rejects.toThrow(/KAFKA_PARTITIONS=2/);
  });
});
