import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import { EVENT_KINDS, type EventKind, type HistoryEvent, kindOf } from '../../contract/transition.js';
import type { FeedFilter, LiveFeed } from './live-feed.js';

/**
 * `GET /v1/transitions/stream`: the live events of `history.transitions` as server-sent events.
 *
 *   event: ready        once, when the subscription is in place (data: the filter)
 *   event: transition   a stage transition (id: its id; data: it as JSON)
 *   event: stalled      a stall (id, data: the same)
 *   event: entered      an audience entry (id, data: the same)
 *   event: exited       an audience exit (id, data: the same)
 *   : keep-alive        a comment every KEEP_ALIVE_MS, so proxies keep the connection
 *
 * Stage transitions keep the event name they always had, so EventSource clients that listen for
 * `transition` go on as before and never see the other kinds (a listener per event name).
 * A client that falls MAX_QUEUED events behind is disconnected (EventSource reconnects by itself)
 * rather than buffered without bound. The stream ends when the feed closes (shutdown).
 */
const KEEP_ALIVE_MS = 20_000;
const MAX_QUEUED = 1000;

/** The SSE event name of each kind. */
export const SSE_EVENT: Record<EventKind, string> = { stage: 'transition', stalled: 'stalled', entered: 'entered', exited: 'exited' };

export function streamTransitions(c: Context, feed: LiveFeed, filter: FeedFilter): Response {
  c.header('cache-control', 'no-store');
  c.header('x-accel-buffering', 'no');
  return streamSSE(c, async (stream) => {
    const queue: HistoryEvent[] = [];
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
      const ready = { topic: filter.topic ?? null, to: filter.to ?? null, audience: filter.audience ?? null, kinds: filter.kinds ?? EVENT_KINDS };
      await stream.writeSSE({ event: 'ready', data: JSON.stringify(ready), retry: 3000 });
      while (!done && !stream.aborted) {
        while (queue.length > 0 && !done) {
          const e = queue.shift()!;
          // The worker never makes an id with a line break (topics are normalised), but a record on
          // history.transitions may come from elsewhere: one line break would end the event early.
          await stream.writeSSE({ event: SSE_EVENT[kindOf(e)], id: /[\r\n]/.test(e.id) ? undefined : e.id, data: JSON.stringify(e) });
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
