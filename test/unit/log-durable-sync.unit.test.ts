import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { DurableLog } from '../../lib/log-durable.js';
import { UNBOUNDED } from '../../lib/log-retention.js';

/**
 * The durable embedded log answers a send (ingest's 202) only once its records are on the disk, and
 * concurrent sends share one fdatasync (group commit). fdatasync is held back here to see both.
 */
const sync = vi.hoisted(() => {
  let open = (): void => {};
  const state = { calls: 0, gate: Promise.resolve(), hold: () => (state.gate = new Promise<void>((r) => (open = r))), release: () => open() };
  return state;
});
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  return {
    ...fs,
    fdatasync: (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      sync.calls++;
      void sync.gate.then(() => fs.fdatasync(fd, cb));
    },
  };
});

const dir = mkdtempSync(join(tmpdir(), 'clickfold-durable-sync-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the durable embedded log on the disk', () => {
  it('answers sends once an fdatasync covers them, one fdatasync for the sends made while the previous one ran', async () => {
    const { log } = await DurableLog.open({ dir, partitions: 4, retention: UNBOUNDED, protect: [], snapshotIntervalMs: 60_000 });
    const producer = log.producer();
    sync.hold();
    sync.calls = 0;
    const answered: number[] = [];
    const first = producer.send('t', [{ key: 'k0', value: 'v0' }]).then(() => answered.push(0));
    await new Promise((r) => setTimeout(r, 20));
    // Forty more while the first one's fdatasync is on its way.
    const more = Array.from({ length: 40 }, (_, i) => producer.send('t', [{ key: `k${i + 1}`, value: `v${i + 1}` }]).then(() => answered.push(i + 1)));
    await new Promise((r) => setTimeout(r, 20));
    expect(answered).toEqual([]);
    expect(sync.calls).toBe(1);
    // Appended already: a consumer of the process could read them; only the answer waits.
    expect(log.read('t').flat()).toHaveLength(41);

    sync.release();
    await first;
    await Promise.all(more);
    expect(answered).toHaveLength(41);
    // The first send's, then one for the forty.
    expect(sync.calls).toBe(2);
    await log.close();
  });
});
