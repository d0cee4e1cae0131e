import { type AudienceEvent, type EventKind, type HistoryEvent, kindOf, type StallEvent, type Transition } from '../../contract/transition.js';

/**
 * What a listener wants. Every field narrows: an event passes when it meets each one given, and an
 * event without the field a filter names never passes it (audience events have no topic, only
 * stage transitions have `to`, only audience events have `audience`).
 */
export interface FeedFilter {
  /** Default: every kind. */
  kinds?: readonly EventKind[] | undefined;
  /** Stage transitions and stalls of this topic. */
  topic?: string | undefined;
  /** Stage transitions to this stage. */
  to?: string | undefined;
  /** Entries into and exits from this audience. */
  audience?: string | undefined;
}
/** The filter's name before stalls and audiences shared the feed. */
export type TransitionFilter = FeedFilter;

/** The events of the kinds `K`: a listener that asks only for `stage` receives Transitions. */
export type EventOf<K extends EventKind> = [EventKind] extends [K]
  ? HistoryEvent
  :
      | ('stage' extends K ? Transition : never)
      | ('stalled' extends K ? StallEvent : never)
      | ('entered' extends K ? AudienceEvent : never)
      | ('exited' extends K ? AudienceEvent : never);

export function matches(filter: FeedFilter, e: HistoryEvent): boolean {
  if (filter.kinds && !filter.kinds.includes(kindOf(e))) return false;
  if (filter.topic && !('topic' in e && e.topic === filter.topic)) return false;
  if (filter.to && !('to' in e && e.to === filter.to)) return false;
  if (filter.audience && !('audience' in e && e.audience === filter.audience)) return false;
  return true;
}

interface Listener {
  filter: FeedFilter;
  fn: (e: HistoryEvent) => void;
  onClose?: (() => void) | undefined;
}

/**
 * In-process fan-out of `history.transitions` (stage transitions, stalls, audience entries and
 * exits) to live listeners (server-sent events, the visitor API, tests). Events carry
 * deterministic ids, so a batch published again after a worker crash reaches each listener once:
 * the feed remembers the most recent ids.
 */
export class LiveFeed {
  private readonly listeners = new Set<Listener>();
  private readonly recent = new Set<string>();
  private closed = false;

  constructor(private readonly remember = 10_000) {}

  publish(events: readonly HistoryEvent[]): void {
    for (const e of events) {
      if (this.recent.has(e.id)) continue;
      this.recent.add(e.id);
      if (this.recent.size > this.remember) this.recent.delete(this.recent.values().next().value!);
      for (const l of this.listeners) {
        if (!matches(l.filter, e)) continue;
        try {
          l.fn(e);
        } catch {
          // A failing listener must not stop the others, nor the worker that publishes.
        }
      }
    }
  }

  /**
   * Returns the unsubscribe function. `onClose` runs when the feed closes (server-sent event
   * streams end then). Without `kinds` the listener receives every kind: one written for
   * transitions alone asks for `kinds: ['stage']`.
   */
  subscribe<K extends EventKind = EventKind>(
    filter: FeedFilter & { kinds?: readonly K[] | undefined },
    fn: (e: EventOf<K>) => void,
    onClose?: () => void,
  ): () => void {
    // `matches` keeps every event outside `kinds` away from `fn`, so it only ever sees EventOf<K>.
    const entry: Listener = { filter, fn: fn as (e: HistoryEvent) => void, onClose };
    if (this.closed) {
      onClose?.();
      return () => {};
    }
    this.listeners.add(entry);
    return () => this.listeners.delete(entry);
  }

  /** Ends every subscription (on shutdown: open event streams would keep the HTTP server from closing). */
  close(): void {
    this.closed = true;
    for (const l of [...this.listeners]) {
      this.listeners.delete(l);
      try {
        l.onClose?.();
      } catch {
        // as in publish
      }
    }
  }

  /** Subscribers now listening (for tests and health). */
  get size(): number {
    return this.listeners.size;
  }
}
