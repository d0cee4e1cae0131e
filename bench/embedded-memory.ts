/**
 * What `npm start` holds in memory per dialogue and per retained log record, for the README:
 * `npx tsx bench/embedded-memory.ts` (EVENTS, default 150,000, from VISITORS, default 20,000,
 * returning visitors on 300 products). Three passes, each in a process of its own (`--expose-gc`, heap measured after a
 * full collection, from after a warm-up to after the fold caught up):
 *   store      a tiny log bound, so the heap that grows is the store's (histories, indexes, links);
 *   memory     DATA_DIR=memory, unbounded: the store plus every record in memory;
 *   disk       DATA_DIR, unbounded: the store plus the records' places (the records are on disk).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startApp } from '../apps/all-in-one-app.js';
import { compileTopicMap, DEFAULT_TOPIC_MAP, foldOptionsOf } from '../history/fold/topic-map.js';
import { MemoryHistoryStore } from '../history/store/memory.js';
import { restoreStore, storeLines } from '../history/store/memory-snapshot.js';
import { chunkLines, readLatestSnapshot } from '../lib/snapshot-file.js';
import { parseEnv } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { pooledScenario } from './pooled-scenario.js';

const EVENTS = Number(process.env.EVENTS ?? 150_000);
const VISITORS = Number(process.env.VISITORS ?? 20_000);
const WARM_UP = 10_000;

interface PassResult {
  heapBytes: number;
  rssBytes: number;
  records: number;
  /** Every record kept, warm-up included, and their bytes (frames on disk, keys and values in memory). */
  recordsTotal: number;
  keptBytes: number;
  /** Ids and dialogues the measured events added (after the warm-up), and every id at the end. */
  ids: number;
  dialogues: number;
  idsTotal: number;
  diskBytes: number;
  snapshotBytes: number;
  /** Taking and loading a snapshot of 100,000 ids (the pass's people copied over), ms: the event loop waits that long. */
  captureMsPer100kIds?: number;
  restoreMsPer100kIds?: number;
}

/**
 * A snapshot's capture (synchronous, the event loop waits) and its restore at start, for a store of
 * 100,000 ids made of copies of the pass's own people.
 */
async function snapshotCost(snaps: string): Promise<{ captureMsPer100kIds: number; restoreMsPer100kIds: number }> {
  const snap = await readLatestSnapshot(snaps);
  const store = new MemoryHistoryStore(foldOptionsOf(compileTopicMap(DEFAULT_TOPIC_MAP)));
  restoreStore(store, snap!.lines);
  const people = [...store.state().people];
  const big = new MemoryHistoryStore(store.options);
  const target = big.state().people;
  for (let i = 0; target.size < 100_000; i++) for (const [id, f] of people) if (target.size < 100_000) target.set(`${id}~${i}`, { ...f });
  let t = performance.now();
  const { chunks } = chunkLines(storeLines(big));
  const captureMsPer100kIds = performance.now() - t;
  const lines = chunks.join('').split('\n').slice(0, -1);
  t = performance.now();
  restoreStore(new MemoryHistoryStore(store.options), lines);
  return { captureMsPer100kIds: Math.round(captureMsPer100kIds), restoreMsPer100kIds: Math.round(performance.now() - t) };
}

const duBytes = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true }).reduce((n, e) => {
    const p = join(dir, e.name);
    return n + (e.isDirectory() ? duBytes(p) : statSync(p).size);
  }, 0);

async function pass(kind: string): Promise<PassResult> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  const dir = kind === 'disk' ? mkdtempSync(join(tmpdir(), 'clickfold-memory-')) : undefined;
  const unbounded = { EMBEDDED_LOG_MAX_EVENTS: '1000000000', EMBEDDED_LOG_MAX_MB: '1000000' };
  const env = parseEnv({
    PORT: '0',
    LOG_LEVEL: 'silent',
    INGEST_DEAD_LETTERS_PER_SECOND: '0',
    ...(kind === 'store' ? { DATA_DIR: 'memory', EMBEDDED_LOG_MAX_EVENTS: '1000' } : { DATA_DIR: dir ?? 'memory', ...unbounded }),
  });
  const app = await startApp(env, DEFAULT_TOPIC_MAP, createLogger('memory', 'silent'));
  const scenario = pooledScenario({ seed: 5, visitors: VISITORS });
  const send = async (n: number) => {
    for (let sent = 0; sent < n; ) {
      const batch = [];
      for (let i = 0; i < 50; i++) {
        const b = scenario.nextBatch(Date.now());
        sent += b.body.events.length;
        batch.push(
          app.app.request('/v1/collect', {
            method: 'POST',
            headers: { 'content-type': 'text/plain', 'user-agent': b.userAgent },
            body: JSON.stringify(b.body),
          }),
        );
      }
      await Promise.all(batch);
    }
    for (;;) {
      const lag = [...(await app.worker.consumer.lag!()).values()].reduce((a, b) => a + b, 0);
      if (lag === 0) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const settle = async () => {
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 50));
    }
    return process.memoryUsage();
  };
  const gauge = async (name: string) => {
    const metrics = await (await app.app.request('/metrics')).text();
    return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1] ?? Number.NaN);
  };
  await send(WARM_UP);
  const idsBefore = await gauge('clickfold_embedded_store_ids');
  const dialoguesBefore = await gauge('clickfold_embedded_store_dialogues');
  const before = await settle();
  const recordsBefore = app.backends.log!.records.size().events;
  await send(EVENTS);
  const after = await settle();
  const result: PassResult = {
    heapBytes: after.heapUsed - before.heapUsed,
    rssBytes: after.rss - before.rss,
    records: app.backends.log!.records.size().events - recordsBefore,
    ids: (await gauge('clickfold_embedded_store_ids')) - idsBefore,
    dialogues: (await gauge('clickfold_embedded_store_dialogues')) - dialoguesBefore,
    idsTotal: await gauge('clickfold_embedded_store_ids'),
    recordsTotal: app.backends.log!.records.size().events,
    keptBytes: app.backends.log!.records.size().bytes,
    diskBytes: dir ? duBytes(join(dir, 'log')) : 0,
    snapshotBytes: 0,
  };
  await app.stop();
  if (dir) {
    const snaps = join(dir, 'snapshots');
    result.snapshotBytes = Math.max(...readdirSync(snaps).map((f) => statSync(join(snaps, f)).size));
    Object.assign(result, await snapshotCost(snaps));
    rmSync(dir, { recursive: true, force: true });
  }
  return result;
}

const arg = process.argv.indexOf('--pass');
if (arg > 0) {
  console.log(JSON.stringify(await pass(process.argv[arg + 1]!)));
} else {
  const self = fileURLToPath(import.meta.url);
  const run = (kind: string): PassResult => {
    const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', self, '--pass', kind], { encoding: 'utf8', env: process.env });
    if (r.status !== 0) throw new Error(`pass ${kind} failed: ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as PassResult;
  };
  const store = run('store');
  const memory = run('memory');
  const disk = run('disk');
  const perRecord = (p: PassResult) => Math.round((p.heapBytes - store.heapBytes) / (p.records - store.records));
  const figures = {
    events: EVENTS,
    visitors: VISITORS,
    ids: store.idsTotal,
    idsAdded: store.ids,
    dialoguesAdded: store.dialogues,
    storeHeapBytesPerDialogue: Math.round(store.heapBytes / store.dialogues),
    storeHeapBytesPerId: Math.round(store.heapBytes / store.ids),
    recordsPerEvent: Number((memory.records / EVENTS).toFixed(3)),
    heapBytesPerRecordInMemory: perRecord(memory),
    heapBytesPerRecordOnDisk: perRecord(disk),
    diskBytesPerRecord: Math.round(disk.diskBytes / disk.recordsTotal),
    snapshotBytesPerId: Math.round(disk.snapshotBytes / disk.idsTotal),
    rssBytesPerRecordInMemory: Math.round((memory.rssBytes - store.rssBytes) / (memory.records - store.records)),
    snapshotCaptureMsPer100kIds: disk.captureMsPer100kIds,
    snapshotRestoreMsPer100kIds: disk.restoreMsPer100kIds,
  };
  console.log(JSON.stringify({ store, memory, disk, figures }, null, 2));
}
