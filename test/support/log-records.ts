import { type RawEvent, TOPICS } from '../../contract/raw-event.js';
import type { PartitionedLog } from '../../lib/log-memory.js';

/** Every record of a topic of the in-process log, parsed, partition by partition. */
export const recordsOf = <T = Record<string, unknown>>(log: PartitionedLog, topic: string): T[] =>
  log
    .read(topic)
    .flat()
    .map((m) => JSON.parse(m.value) as T);

/** The raw records on `clicks.raw` of the in-process log, each with its key (the person). */
export const rawRecordsOf = (log: PartitionedLog): (RawEvent & { key: string | null })[] =>
  log
    .read(TOPICS.raw)
    .flat()
    .map((m) => ({ key: m.key, ...(JSON.parse(m.value) as RawEvent) }));
