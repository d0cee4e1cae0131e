import { z } from 'zod';

/**
 * Durations as people write them in configuration: a whole number and a unit. Seconds are allowed
 * so that tests and demos can use rules that fire in moments; the cap keeps every sum of a time and
 * a duration far inside the range of a JavaScript number.
 */
const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 } as const;
const FORM = /^(\d{1,7})(s|m|h|d|w)$/;
export const MAX_DURATION_MS = 3650 * 86_400_000;
export const DURATION_FORM_HELP = 'a whole number and a unit, s, m, h, d or w (e.g. 30s, 15m, 12h, 3d, 2w)';

export function durationMs(s: string): number | { error: string } {
  const m = FORM.exec(s.trim());
  if (!m) return { error: `"${s.length > 40 ? `${s.slice(0, 40)}…` : s}" is not ${DURATION_FORM_HELP}` };
  const ms = Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  if (ms <= 0) return { error: 'a duration must be longer than zero' };
  if (ms > MAX_DURATION_MS) return { error: 'a duration may be at most 3650 days' };
  return ms;
}

/** A duration string in a zod schema, parsed to milliseconds. */
export const Duration = z
  .string()
  .max(16)
  .transform((s, ctx) => {
    const ms = durationMs(s);
    if (typeof ms === 'number') return ms;
    ctx.addIssue({ code: 'custom', message: ms.error });
    return z.NEVER;
  });

/** A duration in ms as configuration writes it, in the largest unit that divides it (180000 -> 3m). */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [...Object.entries(UNIT_MS)].reverse()) if (ms % size === 0) return `${ms / size}${unit}`;
  return `${ms / 1000}s`;
}
