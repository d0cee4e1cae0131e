import { randomBytes } from 'node:crypto';
import { TOPICS } from '../../contract/raw-event.js';
import type { LogProducer } from '../../lib/log.js';
import type { Logger } from '../../lib/logger.js';
import type { HistoryStore } from '../store/store.js';
import { tickMessage } from './tick.js';

/**
 * The sweeper: time passing changes stalls and audiences with no event (a dialogue quiet for three
 * days, someone no longer active within seven), so the fold queues each person for the next moment
 * that can happen (the store's `due` queue), and this loop, once a second, sends a tick to everyone
 * whose moment has come. One sweeper at a time holds the lease; if its process dies, another takes
 * over when the lease lapses. Ticks are at least once (sent, then taken off the queue); what they fire
 * is exactly once, because the fold marks it in the person's compare-and-set write.
 */
export interface SweeperOptions {
  store: HistoryStore;
  producer: LogProducer;
  logger: Logger;
  /** How often to look at the queue, ms (default 1000). */
  everyMs?: number;
  /** Ticks per round (default 1000); a longer queue takes more rounds, back to back. */
  batch?: number;
  clock?: () => number;
  /** Called with the number of ticks sent, per round (metrics). */
  onTicks?: (n: number) => void;
}

export interface Sweeper {
  /** Sweeps once now (tests); resolves with the ticks sent. */
  sweep(): Promise<number>;
  stop(): Promise<void>;
}

const MAX_ROUNDS = 100;

export function startSweeper(opts: SweeperOptions): Sweeper {
  const { store, producer, logger } = opts;
  const everyMs = opts.everyMs ?? 1000;
  const batch = opts.batch ?? 1000;
  const clock = opts.clock ?? Date.now;
  const owner = randomBytes(8).toString('hex');
  let stopped = false;
  let running: Promise<number> | null = null;
  let failing = false;

  const round = async (): Promise<number> => {
    // The lease outlives a few missed rounds, so a slow round does not hand the queue to another.
    if (!(await store.sweepLease(owner, everyMs * 5))) return 0;
    let sent = 0;
    for (let i = 0; i < MAX_ROUNDS && !stopped; i++) {
      const now = clock();
      const due = await store.dueTicks(now, batch);
      if (due.length === 0) break;
      await producer.send(
        TOPICS.raw,
        due.map((e) => tickMessage(e.person, now)),
      );
      await store.clearDue(due);
      sent += due.length;
      if (due.length < batch) break;
    }
    if (sent > 0) opts.onTicks?.(sent);
    return sent;
  };

  const sweep = (): Promise<number> => {
    running ??= round()
      .then((n) => {
        if (failing) logger.info({}, 'the sweeper sends ticks again');
        failing = false;
        return n;
      })
      .catch((err: unknown) => {
        // Redis or the log away: the queue keeps its entries, the next round tries again.
        if (!failing) logger.warn({ err: (err as Error).message }, 'the sweeper could not send ticks; retrying');
        failing = true;
        return 0;
      })
      .finally(() => {
        running = null;
      });
    return running;
  };

  const timer = setInterval(() => {
    if (!stopped) void sweep();
  }, everyMs);
  timer.unref();

  return {
    sweep,
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
