import type { z } from 'zod';
import { CollectBatch, CollectEvent } from '../contract/collect.js';
import type { Issue } from '../lib/http-errors.js';

/** Zod issues as dotted paths in our envelope; our events nest, so a flat error map would lose detail. */
export function toIssues(error: z.ZodError, prefix: (string | number)[] = []): Issue[] {
  return error.issues.slice(0, 20).map((i) => ({
    path: [...prefix, ...i.path].map(String).join('.') || '(body)',
    message: i.message,
  }));
}

export type BatchCheck =
  | { ok: false; issues: Issue[] }
  | { ok: true; batch: CollectBatch; events: IndexedEvent[]; rejected: { index: number; issues: Issue[]; event: unknown }[] };

/** A valid event with its position in the batch (answers and dead letters name events by index). */
export interface IndexedEvent {
  index: number;
  event: CollectEvent;
}

/**
 * The envelope must be valid as a whole; events are judged one by one, so one bad event does not
 * cost the good ones of the same batch.
 */
export function checkBatch(body: unknown): BatchCheck {
  const envelope = CollectBatch.safeParse(body);
  if (!envelope.success) return { ok: false, issues: toIssues(envelope.error) };
  const events: IndexedEvent[] = [];
  const rejected: { index: number; issues: Issue[]; event: unknown }[] = [];
  envelope.data.events.forEach((raw, index) => {
    const r = CollectEvent.safeParse(raw);
    if (r.success) events.push({ index, event: r.data });
    else rejected.push({ index, issues: toIssues(r.error, ['events', index]), event: raw });
  });
  return { ok: true, batch: envelope.data, events, rejected };
}
