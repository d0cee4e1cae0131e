import { z } from 'zod';
import { Duration } from './duration.js';

/**
 * A stall rule of the topic map (`"stalls": [...]`): a dialogue that has stood at `stage` with no
 * activity for `after` has gone quiet (the abandoned cart), and the system says so once
 * (history/stalls/rules.ts, contract/transition.ts StallEvent).
 */
export const STALL_RULE_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;
export const MAX_STALL_RULES = 32;

export const StallRule = z
  .object({
    name: z.string().regex(STALL_RULE_NAME, 'a rule name: lower-case letters, digits, - and _, at most 64'),
    /** The stage the dialogue stands at (its highest stage reached). */
    stage: z.string().min(1).max(32),
    /** Quiet for this long: 30s, 15m, 12h, 3d. */
    after: Duration,
    /** Only dialogues about these topics: exact, `prefix*`, or `*` (the default). */
    topics: z
      .string()
      .min(1)
      .max(128)
      .refine((t) => !t.slice(0, -1).includes('*'), { message: 'topics is exact, or a prefix ending in * (product:*), or *' })
      .optional(),
  })
  .strict();
export type StallRule = z.input<typeof StallRule>;
export type ParsedStallRule = z.output<typeof StallRule>;
