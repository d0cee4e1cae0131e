import { randomBytes } from 'node:crypto';
import type { Logger } from '../../lib/logger.js';
import { computeModelSteps, type CrmModel } from '../crm/model.js';
import type { HistoryStore } from '../store/store.js';

/**
 * The CRM model job: every `everyMs`, the worker holding the lease samples up to `sample` purchasers,
 * computes the RFM quintiles and fits BG/NBD + Gamma-Gamma (history/crm/model.ts), and stores the
 * result; every other worker reads it from the store on the same schedule. The fit runs on the
 * worker's event loop (about 2 s at 20,000 purchasers, up to 4 s where the model fits badly: README
 * "Lifetime value and RFM by quantiles"), so it runs rarely and in one worker at a time; that worker's
 * folds wait meanwhile, nothing is lost. (A worker thread would need the TypeScript loader in it.)
 */
export interface CrmModelJobOptions {
  store: HistoryStore;
  logger: Logger;
  /** Between two computations, ms (CRM_MODEL_INTERVAL_S). */
  everyMs: number;
  /** Purchasers sampled (CRM_MODEL_SAMPLE). */
  sample: number;
  clock?: () => number;
  /** No timer (tests call `run`). */
  manual?: boolean;
}

export interface CrmModelJob {
  /** The model this process uses: the last it computed or read. */
  current(): CrmModel | null;
  /** One round now: computes when this process holds the lease, else reads; resolves with the model in force. */
  run(): Promise<CrmModel | null>;
  stop(): Promise<void>;
}

/** How long the fit may hold the event loop before it lets folds, probes and signals through. */
const SLICE_MS = 10;

/**
 * Runs a computation written as steps a slice at a time: after each slice of about SLICE_MS, a
 * turn of the event loop. A fit of seconds then never holds a fold, a probe or a SIGTERM for longer
 * than a slice (the npm scripts' tsx wrapper kills a child that does not answer a signal within
 * 30 ms). Undefined when `stopped` says to give up.
 */
async function inSlices<T>(steps: Generator<void, T>, stopped: () => boolean): Promise<T | undefined> {
  let until = performance.now() + SLICE_MS;
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (performance.now() < until) continue;
    await new Promise((resolve) => setImmediate(resolve));
    if (stopped()) return undefined;
    until = performance.now() + SLICE_MS;
  }
}

export function startCrmModelJob(opts: CrmModelJobOptions): CrmModelJob {
  const { store, logger, everyMs, sample } = opts;
  const clock = opts.clock ?? Date.now;
  const owner = randomBytes(8).toString('hex');
  let model: CrmModel | null = null;
  let running: Promise<CrmModel | null> | null = null;
  let stopped = false;

  const round = async (): Promise<CrmModel | null> => {
    const stored = await store.crmModel();
    if (stored) model = stored;
    // Held across two intervals, so a computation that runs long does not hand over mid-way.
    const now = clock();
    if (!(await store.crmLease(owner, everyMs * 2 + 60_000))) return model;
    if (stored && now - stored.computedAt < everyMs * 0.9) return model;
    const { total, sample: drawn } = await store.purchasers(sample);
    const next = await inSlices(
      computeModelSteps(
        drawn.map((d) => d.rfm),
        now,
        total,
      ),
      () => stopped,
    );
    if (!next) return model;
    await store.setCrmModel(next);
    model = next;
    logger.info(
      { n: next.n, purchasers: total, quantiles: next.thresholds !== null, ltv: next.ltv !== null, tookMs: next.tookMs, excluded: next.excluded },
      'CRM model computed',
    );
    return model;
  };

  const run = (): Promise<CrmModel | null> => {
    running ??= round()
      .catch((err: unknown) => {
        logger.warn({ err: (err as Error).message }, 'the CRM model could not be computed; the previous one stays');
        return model;
      })
      .finally(() => {
        running = null;
      });
    return running;
  };

  const timer = opts.manual
    ? null
    : setInterval(() => {
        if (!stopped) void run();
      }, everyMs);
  timer?.unref();
  // A first look soon after start, so a restarted worker does not wait a whole interval for the model.
  const first = opts.manual ? null : setTimeout(() => void run(), 1000);
  first?.unref();

  return {
    current: () => model,
    run,
    stop: async () => {
      stopped = true;
      if (timer) clearInterval(timer);
      if (first) clearTimeout(first);
      await running;
    },
  };
}
