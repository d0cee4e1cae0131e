import type { Transition } from '../../contract/transition.js';

export type TransitionFilter = { topic?: string | undefined; to?: string | undefined };

/**
 * In-process fan-out of transitions to live listeners (server-sent events, webhooks, tests).
 * Transitions carry deterministic ids, so a batch published again after a worker crash reaches
 * each listener once: the feed remembers the most recent ids.
 */
export class LiveFeed {
  private readonly listeners = new Set<{ filter: TransitionFilter; fn: (t: Transition) => void; onClose?: (() => void) | undefined }>();
  private readonly recent = new Set<string>();
  private closed = false;

  constructor(private readonly remember = 10_000) {}

  publish(transitions: readonly Transition[]): void {
    for (const t of transitions) {
      if (this.recent.has(t.id)) continue;
      this.recent.add(t.id);
      if (this.recent.size > this.remember) this.recent.delete(this.recent.values().next().value!);
      for (const l of this.listeners) {
        if (l.filter.topic && l.filter.topic !== t.topic) continue;
        if (l.filter.to && l.filter.to !== t.to) continue;
        try {
          l.fn(t);
        } catch {
          // A failing listener must not stop the others, nor the worker that publishes.
        }
      }
    }
  }

  /** Returns the unsubscribe function. `onClose` runs when the feed closes (server-sent event streams end then). */
  subscribe(filter: TransitionFilter, fn: (t: Transition) => void, onClose?: () => void): () => void {
    const entry = { filter, fn, onClose };
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
