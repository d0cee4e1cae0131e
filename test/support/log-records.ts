import type { PartitionedLog } from '../../lib/log-memory.js';

/** Every record of a topic of the in-process log, parsed, partition by partition. */
export const recordsOf = <T = Record<string, unknown>>(log: PartitionedLog, topic: string): T[] =>
  log
    .read(topic)
    .flat()
    .map((m) => JSON.parse(m.value) as T);
