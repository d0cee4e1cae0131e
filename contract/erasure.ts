import { z } from 'zod';
import { PERSON_ID } from './raw-event.js';

const Id = z.string().regex(PERSON_ID, 'an id of 1 to 128 letters, digits and . _ : @ + - | = ~ ! $ *');

/**
 * One record on Kafka topic `history.erasures`: an id erased by `DELETE /v1/people/:person`, keyed by
 * the id. The topic is compacted (the latest erasure of each id is what counts) and kept a little
 * longer than `clicks.raw` (lib/retention.ts), so an erasure outlives every raw record it covers.
 *
 * Whoever reads `clicks.raw` (the worker, a replay into a fresh namespace) skips the records of `id`
 * that ingest received (`rt`) at or before `at`: an erased person is never folded again, and events
 * after the erasure (the person came back) fold as a new history.
 */
export const ErasureRecord = z.object({
  v: z.literal(1),
  /** The id this record erases; also the record's key. */
  id: Id,
  /** The person the request named, resolved (a visitor merged into a known user names the user). */
  person: Id,
  /** Every id erased with it: the person and the visitor ids linked to them. */
  ids: z.array(Id).min(1).max(10_000),
  /** Erasure time, epoch ms (the API's clock). */
  at: z.number().int().positive(),
});
export type ErasureRecord = z.infer<typeof ErasureRecord>;
