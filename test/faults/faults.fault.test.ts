import { afterEach, describe, expect, it } from 'vitest';
import type { NodeProcess } from '../../services/node-process.js';
import { sleep } from '../../services/proc.js';
import { drive, faultPlan, merged, report, startStack, verify, type Stack, type Verdict } from './harness.js';

/**
 * Whatever fails, the final histories equal one clean pass over the events ingest acknowledged.
 * Each scenario runs on a broker and a Redis of its own, with ingest and workers as processes.
 */
const people = (tag: string, n = 40) => Array.from({ length: n }, (_, i) => `${tag}-${i}-${'x'.repeat(i % 3)}`);
const clean = (v: Verdict) => ({
  lost: v.lost,
  countedTwice: v.countedTwice,
  historiesDiffer: v.mismatched,
  transitionsMissing: v.transitionsMissing,
  transitionsPublishedAgain: v.transitionRepeats,
});
/** The workers run with WORKER_TRANSACTIONS=true (harness.ts): no transition is published twice either. */
const CLEAN = { lost: 0, countedTwice: 0, historiesDiffer: [], transitionsMissing: 0, transitionsPublishedAgain: 0 };

describe.sequential('faults', () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.destroy();
    stack = undefined;
  });

  it('a worker killed with SIGKILL mid-stream, then restarted', async () => {
    const s = (stack = await startStack());
    const w1 = await s.worker('worker-1');
    const plan = faultPlan([
      [0.4, 'SIGKILL worker-1', async () => void (await w1.kill('SIGKILL'))],
      [0.45, 'start worker-2', async () => void (await s.worker('worker-2'))],
    ]);
    const d = await drive(s.ingestUrl, people('kill'), { onProgress: plan.onProgress });
    expect(await plan.done()).toEqual(['SIGKILL worker-1', 'start worker-2']);
    const v = await verify(s, d.acked);
    report('SIGKILL of a worker', v, d);
    expect(clean(v)).toEqual(CLEAN);
  });

  it('two and three workers joining and leaving the group while events flow', async () => {
    const s = (stack = await startStack());
    const workers: NodeProcess[] = [await s.worker('worker-1')];
    const exits: (number | null)[] = [];
    const plan = faultPlan([
      [0.15, 'worker-2 joins', async () => void workers.push(await s.worker('worker-2'))],
      [0.35, 'worker-3 joins', async () => void workers.push(await s.worker('worker-3'))],
      [0.55, 'worker-1 leaves', async () => void exits.push(await workers[0]!.stop())],
      [0.75, 'worker-2 leaves', async () => void exits.push(await workers[1]!.stop())],
    ]);
    const d = await drive(s.ingestUrl, people('rebalance'), { onProgress: plan.onProgress });
    expect(await plan.done()).toHaveLength(4);
    expect(exits).toEqual([0, 0]);
    const v = await verify(s, d.acked);
    report('rebalances (1 -> 2 -> 3 -> 2 -> 1 workers)', v, d);
    expect(clean(v)).toEqual(CLEAN);
  });

  /** Stops a service for a while as clients keep sending, then checks nothing was lost or doubled. */
  async function outage(tag: string, down: (s: Stack) => { name: string; service: { stop(): Promise<void>; start(): Promise<void> }; ms: number }) {
    const s = (stack = await startStack());
    await s.worker('worker-1');
    const { name, service, ms } = down(s);
    const plan = faultPlan([
      [
        0.3,
        name,
        async () => {
          await service.stop();
          await sleep(ms);
          await service.start();
        },
      ],
    ]);
    const d = await drive(s.ingestUrl, people(tag), { onProgress: plan.onProgress });
    expect(await plan.done()).toHaveLength(1);
    const v = await verify(s, d.acked, 120_000);
    return { d, v };
  }

  it('a broker restart while clients keep sending: ingest answers 503, clients retry', async () => {
    const { d, v } = await outage('broker', (s) => ({ name: 'broker down for 3 s', service: s.broker, ms: 3000 }));
    report('broker restart', v, d);
    expect(d.refused).toBeGreaterThan(0);
    expect(clean(v)).toEqual(CLEAN);
  });

  it('a Redis restart while the worker folds: it waits and resumes, committing nothing past Redis', async () => {
    const { d, v } = await outage('redis', (s) => ({ name: 'Redis down for 2 s', service: s.redis, ms: 2000 }));
    report('Redis restart', v, d);
    expect(clean(v)).toEqual(CLEAN);
  });

  it('every batch sent twice (the client never saw the 202)', async () => {
    const s = (stack = await startStack());
    await s.worker('worker-1');
    const d = await drive(s.ingestUrl, people('dup'), { resendAcked: true });
    const v = await verify(s, d.acked);
    report('duplicate sends', v, d);
    expect(d.resent).toBeGreaterThan(0);
    expect(clean(v)).toEqual(CLEAN);
  });

  /**
   * A worker that dies at a crash point (lib/crash-points.ts) of its 3rd batch with transitions, the
   * worker that takes its partitions over, and a second round of events from the same people once
   * it has: whatever the crash left behind for them (an outbox) is met again.
   */
  async function crashAt(tag: string, point: 'published' | 'committed', env: Record<string, string> = {}) {
    const s = (stack = await startStack());
    const w1 = await s.worker('worker-1', { ...env, CLICKFOLD_CRASH_AT: `${point}:3` });
    // Exits by itself at the crash point; the next worker starts at once, like a supervisor's restart.
    const w2 = w1.whenExited().then(() => s.worker('worker-2', env));
    const first = await drive(s.ingestUrl, people(tag));
    expect(await w1.whenExited()).toBeNull(); // killed by a signal, not an exit
    await w2;
    const d = merged(first, await drive(s.ingestUrl, people(tag), { round: 1 }));
    const v = await verify(s, d.acked);
    return { d, v };
  }

  it('a worker killed between publishing a batch and committing it: the transaction is aborted, nothing published twice', async () => {
    const { d, v } = await crashAt('between', 'published');
    report('SIGKILL between publishing and committing (transactions on)', v, d);
    expect(clean(v)).toEqual(CLEAN);
  });

  it('a worker killed after committing a batch, before clearing its outbox: the outbox is not published again', async () => {
    const { d, v } = await crashAt('after', 'committed');
    report('SIGKILL after committing, before clearing the outbox (transactions on)', v, d);
    expect(clean(v)).toEqual(CLEAN);
  });

  it('without transactions, the same kill publishes transitions again (at least once), and loses nothing', async () => {
    const { d, v } = await crashAt('plain', 'published', { WORKER_TRANSACTIONS: 'false' });
    report('SIGKILL between publishing and committing (WORKER_TRANSACTIONS=false)', v, d);
    // The window the transactions close: the scenario must reach it to prove anything above.
    expect(v.transitionRepeats).toBeGreaterThan(0);
    expect({ ...clean(v), transitionsPublishedAgain: 0 }).toEqual(CLEAN);
  });
});
