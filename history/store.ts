import type { FoldOutcome } from './fold-batch.js';
import type { FoldOptions } from './fold.js';
import type { BatchRecord } from './person-batch.js';
import type { PersonView } from './views.js';

/**
 * Where folded histories live. Two implementations, one contract suite:
 * `RedisHistoryStore` (real stack) and `MemoryHistoryStore` (embedded `npm start`).
 */
export interface HistoryStore {
  readonly options: FoldOptions;
  /**
   * Folds one consumed batch from one partition. Atomic per person, idempotent per record offset
   * (a redelivered record is skipped) and per event id (a client retry counts once). Resolves only
   * once the result is durable in the store, with the transitions to publish; call `published()`
   * once they are.
   */
  foldBatch(partition: string, records: readonly BatchRecord[]): Promise<FoldOutcome>;
  /** A person's history; a visitor id merged into a known person answers with that person. */
  getPerson(person: string): Promise<PersonView | null>;
  /** People at `stage` of `topic` (index lookup, not a scan), most recently active first. */
  atStage(topic: string, stage: string, limit: number): Promise<string[]>;
  /** Removes the person and every visitor id linked to them from every key and index. */
  erase(person: string): Promise<boolean>;
  close(): Promise<void>;
}

export const DEFAULT_SEEN_SIZE = 32;

/** Key layout, shared by every component that touches Redis. The `{...}` hash tag keeps a person's keys in one cluster slot. */
export const keys = {
  person: (ns: string, person: string) => `${ns}h:{${person}}`,
  /** Recent event fingerprints; expires, since client retries come within minutes. */
  seen: (ns: string, person: string) => `${ns}r:{${person}}`,
  /** Visitor ids merged into the person. */
  linked: (ns: string, person: string) => `${ns}l:{${person}}`,
  /** Transitions written but not yet published, per partition; normally absent. */
  outbox: (ns: string, person: string) => `${ns}x:{${person}}`,
  stageIndex: (ns: string, topic: string, stage: string) => `${ns}ix:{${topic}}:${stage}`,
  topics: (ns: string) => `${ns}topics`,
};
