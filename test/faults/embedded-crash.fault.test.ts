import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TOPICS } from '../../contract/raw-event.js';
import type { Transition } from '../../contract/transition.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { restoreStore } from '../../history/store/memory-snapshot.js';
import { DurableLog } from '../../lib/log-durable.js';
import { UNBOUNDED } from '../../lib/log-retention.js';
import { NodeProcess } from '../../services/node-process.js';
import { freePorts, sleep } from '../../services/proc.js';
import { compareHistories, drive, expected, faultPlan, FOLD, report } from './harness.js';

/**
 * `npm start` with a data directory, killed with SIGKILL twice while clients keep sending, and
 * started again on the same directory each time: every event it answered 202 is folded exactly
 * once, and the histories equal one clean pass of the pure fold over those events.
 */
const PARTITIONS = '6';
const people = Array.from({ length: 120 }, (_, i) => `crash-${i}-${'y'.repeat(i % 3)}`);

describe.sequential('the all-in-one process on its data directory', () => {
  let dir: string | undefined;
  let app: NodeProcess | undefined;
  afterEach(async () => {
    await app?.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('SIGKILLed mid-stream and restarted: nothing answered 202 is lost or counted twice', async () => {
    const d = (dir = mkdtempSync(join(tmpdir(), 'clickfold-embedded-crash-')));
    const data = join(d, 'data');
    const [port] = await freePorts(1);
    const start = async () => {
      app = new NodeProcess(
        'all-in-one',
        'apps/all-in-one.ts',
        { DATA_DIR: data, PORT: String(port), KAFKA_PARTITIONS: PARTITIONS, EMBEDDED_SNAPSHOT_INTERVAL_S: '1' },
        d,
      );
      await app.start(/clickfold is running/);
    };
    await start();
    const restarts: string[] = [];
    let startedAt = Date.now();
    let lastAckAt = 0;
    /**
     * Resolves once the running process has written a snapshot since it started. A process that has
     * taken nothing since it started (the clients were done before the kill, and the snapshot it
     * loaded held everything) writes none, as nothing changed: the snapshot it loaded is behind it.
     */
    const snapshotSinceStart = async () => {
      const dir = join(data, 'snapshots');
      for (let i = 0; i < 100; i++) {
        if (existsSync(dir) && readdirSync(dir).some((f) => f.endsWith('.snap') && statSync(join(dir, f)).mtimeMs > startedAt)) return;
        if (i >= 30 && lastAckAt < startedAt && restarts.length > 0) return;
        await sleep(100);
      }
      // What the next reader of a failure needs: the snapshots there are and what the process said.
      const snaps = existsSync(dir)
        ? readdirSync(dir).map((f) => `${f} (mtime ${Math.round(statSync(join(dir, f)).mtimeMs - startedAt)} ms after the start)`)
        : [];
      const said = existsSync(app!.log) ? readFileSync(app!.log, 'utf8').trim().split('\n').slice(-15).join('\n') : '';
      throw new Error(`no snapshot within 10 s of the start; last ack ${lastAckAt - startedAt} ms after it; snapshots: ${snaps.join(', ') || 'none'}\n${said}`);
    };
    const crash = (share: number, name: string): [number, string, () => Promise<void>] => [
      share,
      name,
      async () => {
        // Killed with a snapshot behind it and records after it: the restart loads the one and folds the others again.
        await snapshotSinceStart();
        await app!.kill('SIGKILL');
        startedAt = Date.now();
        await start();
        restarts.push(name);
      },
    ];
    // Snapshots every second: each restart loads one and folds again what came after it.
    const plan = faultPlan([crash(0.3, 'first SIGKILL'), crash(0.7, 'second SIGKILL')]);
    const url = `http://127.0.0.1:${port}`;
    // Few clients at a time, so that events are still flowing when the snapshots come and the kills.
    // A pause between a client's batches keeps the stream going for seconds: without it the clients
    // could be done within the first snapshot interval, and the kills would come after the stream.
    const d1 = await drive(url, people, {
      concurrency: 3,
      pauseMs: 40,
      onProgress: (share) => {
        lastAckAt = Date.now();
        plan.onProgress(share);
      },
    });
    expect(await plan.done()).toEqual(['first SIGKILL', 'second SIGKILL']);

    // Folded: every person's history as the query API answers it, until it matches (or time is up).
    const want = await expected(d1.acked);
    const viaApi = async (p: string) => {
      const res = await fetch(`${url}/v1/people/${encodeURIComponent(p)}`);
      return res.status === 200 ? ((await res.json()) as { dialogues: unknown[] }) : null;
    };
    const until = Date.now() + 60_000;
    for (;;) {
      const pending = [];
      for (const p of people) {
        const [got, exp] = await Promise.all([viaApi(p), want.store.getPerson(p)]);
        if ((got?.dialogues.length ?? 0) !== (exp?.dialogues.length ?? 0)) pending.push(p);
      }
      if (pending.length === 0 || Date.now() > until) break;
      await sleep(300);
    }
    // A clean stop writes the last snapshot: what a restart loads.
    expect(await app!.stop()).toBe(0);

    const { log, restored } = await DurableLog.open({
      dir: data,
      partitions: Number(PARTITIONS),
      retention: UNBOUNDED,
      protect: [],
      snapshotIntervalMs: 60_000,
    });
    const store = new MemoryHistoryStore(FOLD);
    restoreStore(store, restored!.lines);
    const histories = await compareHistories(people, (p) => store.getPerson(p), want.store);
    // Every transition a clean pass makes is on history.transitions; one folded again after a crash comes again with its id.
    const published = log
      .read(TOPICS.transitions)
      .flat()
      .map((m) => (JSON.parse(m.value) as Transition).id);
    await log.close();
    const seen = new Set(published);
    const verdict = {
      events: [...d1.acked.values()].reduce((n, e) => n + e.length, 0),
      lost: histories.lost,
      countedTwice: histories.twice,
      transitionsExpected: want.transitions.length,
      transitionsMissing: want.transitions.filter((t) => !seen.has(t.id)).length,
      transitionRepeats: published.length - seen.size,
      mismatched: histories.mismatched,
    };
    report('the all-in-one process SIGKILLed twice (DATA_DIR)', verdict, d1);
    expect(restarts).toHaveLength(2);
    expect({
      lost: verdict.lost,
      countedTwice: verdict.countedTwice,
      historiesDiffer: verdict.mismatched,
      transitionsMissing: verdict.transitionsMissing,
    }).toEqual({
      lost: 0,
      countedTwice: 0,
      historiesDiffer: [],
      transitionsMissing: 0,
    });
  });
});
