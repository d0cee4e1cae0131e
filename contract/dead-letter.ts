import { z } from 'zod';
import { HistoryEvent } from './transition.js';

/**
 * One record on `clicks.invalid`: something a stage refused, with the reason, so that nothing a
 * sender did vanishes without a word. Every writer (ingest, the worker, webhook delivery) uses this
 * shape; `reason` is a short stable word that metrics count by, `detail` the human explanation.
 */
export const DeadLetterStage = z.enum(['ingest', 'worker', 'webhook']);
export type DeadLetterStage = z.infer<typeof DeadLetterStage>;

export const DeadLetter = z.object({
  stage: DeadLetterStage,
  reason: z.string().min(1).max(64),
  /** Human explanation (validation issues, the error's message); bounded. */
  detail: z.string().max(2048).optional(),
  /** ingest: the route and the request id the sender saw in X-Request-Id. */
  route: z.string().optional(),
  rid: z.string().optional(),
  site: z.string().optional(),
  /** ingest: position of the refused event in its batch. */
  index: z.number().int().optional(),
  issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  /** worker: the step that refused the record (parse, classify, budget, fold). */
  step: z.enum(['parse', 'classify', 'budget', 'fold']).optional(),
  /** worker: where the refused record sits on `clicks.raw`. */
  partition: z.number().int().optional(),
  offset: z.string().optional(),
  /** webhook: the receiver and its answer. */
  url: z.string().optional(),
  status: z.number().int().optional(),
  /**
   * webhook (these records go on `history.webhooks.parked`, not `clicks.invalid`): the delivery id
   * the receiver saw in X-Clickfold-Delivery, an excerpt of its answer's body (at most 1 KB of it
   * read, cut at a character boundary, `…` when cut), and every transition the refused request
   * carried, whole, so that they can be sent again.
   */
  delivery: z.string().optional(),
  response: z.string().max(2048).optional(),
  transitions: z.array(HistoryEvent).optional(),
  /** When the stage refused it, epoch ms (ingest: receive time). */
  rt: z.number().optional(),
  /** An excerpt of what was refused (at most a few KB; write keys redacted). */
  payload: z.string().optional(),
});
export type DeadLetter = z.infer<typeof DeadLetter>;

/** Longest excerpt of a refused input kept in a dead letter. */
export const DEAD_LETTER_EXCERPT = 2048;

/** Cuts a text to the excerpt size, marking the cut. */
export function excerptOf(s: string, max = DEAD_LETTER_EXCERPT): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}
