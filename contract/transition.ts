import { z } from 'zod';

/**
 * A dialogue reached a higher stage: the "instant need detection" signal, on Kafka topic
 * `history.transitions` and on the live feed. `from` is null when a dialogue starts.
 * `id` is deterministic (person, topic, dialogue start, stage), so consumers can drop repeats.
 */
export const Transition = z.object({
  id: z.string(),
  person: z.string(),
  topic: z.string(),
  from: z.string().nullable(),
  to: z.string(),
  at: z.number(),
  channel: z.string(),
});
export type Transition = z.infer<typeof Transition>;
