import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { Transition } from '../../contract/transition.js';
import type { LiveFeed, TransitionFilter } from './live-feed.js';

/**
 * `GET /v1/transitions/stream`: live transitions as server-sent events.
 *
 *   event: ready        once, when the subscription is in place (data: the filter)
 *   event: transition   id: the transition id; data: the transition as JSON
 *   : keep-alive        a comment every KEEP_ALIVE_MS, so proxies keep the connection
 *
 * A client that falls MAX_QUEUED transitions behind is disconnected (EventSource reconnects by
 * itself) rather than buffered without bound. The stream ends when the feed closes (shutdown).
 */
const KEEP_ALIVE_MS = 20_000;
const MAX_QUEUED = 1000;

export function streamTransitions(c: Context, feed: LiveFeed, filter: TransitionFilter): Response {
  c.header('cache-control', 'no-store');
  c.header('x-accel-buffering', 'no');
  return streamSSE(c, async (stream) => {
    const queue: Transition[] = [];
    let done = false;
    let wake: (() => void) | null = null;
    const poke = () => {
      const w = wake;
      wake = null;
      w?.();
    };
    const unsubscribe = feed.subscribe(
      filter,
      (t) => {
        if (queue.length >= MAX_QUEUED) done = true;
        else queue.push(t);
        poke();
      },
      () => {
        done = true;
        poke();
      },
    );
    stream.onAbort(() => {
      done = true;
      poke();
    });
    try {
      await stream.writeSSE({ event: 'ready', data: JSON.stringify({ topic: filter.topic ?? null, to: filter.to ?? null }), retry: 3000 });
      while (!done && !stream.aborted) {
        while (queue.length > 0 && !done) {
          const t = queue.shift()!;
          // The worker never makes an id with a line break (topics are normalised), but a record on
          // history.transitions may come from elsewhere: one line break would end the event early.
          await stream.writeSSE({ event: 'transition', id: /[\r\n]/.test(t.id) ? undefined : t.id, data: JSON.stringify(t) });
        }
        if (done) break;
        let timer: NodeJS.Timeout | undefined;
        const woken = await new Promise<boolean>((resolve) => {
          wake = () => resolve(true);
          timer = setTimeout(() => resolve(false), KEEP_ALIVE_MS);
        });
        clearTimeout(timer);
        wake = null;
        if (!woken && !done) await stream.write(': keep-alive\n\n');
      }
    } finally {
      unsubscribe();
    }
  });
}
