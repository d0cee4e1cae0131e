import { afterEach, describe, expect, it } from 'vitest';
import type { NodeProcess } from '../../services/node-process.js';
import { sleep } from '../../services/proc.js';
import { drive, faultPlan, report, startStack, verify, type Stack, type Verdict } from './harness.js';

/**
 * Whatever fails, the final histories equal one clean pass over the events ingest acknowledged.
 * Each scenario runs on a broker and a Redis of its own, with ingest and workers as processes.
 */
const people = (tag: string, n = 40) => Array.from({ length: n }, (_, i) => `${tag}-${i}-${'x'.repeat(i % 3)}`);
const clean = (v: Verdict) => ({ lost: v.lost, countedTwice: v.countedTwice, historiesDiffer: v.mismatched, transitionsMissing: v.transitionsMissing });
const CLEAN = { lost: 0, countedTwice: 0, historiesDiffer: [], transitionsMissing: 0 };

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
    expect({ ...clean(v), transitionRepeats: v.transitionRepeats }).toEqual({ ...CLEAN, transitionRepeats: 0 });
  });
});
