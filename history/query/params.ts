/**
 * The time parameters of the query API, pure: durations (`7d`) and points in time (ISO 8601,
 * epoch ms, or a duration ago). Each parser returns a number or a readable reason.
 */

const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 } as const;
export const DURATION = /^(\d{1,6})(m|h|d|w)$/;
export const DURATION_HELP = 'a duration: a whole number and a unit, m (minutes), h (hours), d (days) or w (weeks), e.g. 30m, 12h, 7d, 2w';
export const TIME_HELP = 'an ISO 8601 date or date-time (2026-06-01, 2026-06-01T09:30:00Z), epoch milliseconds, or a duration ago (7d)';

export function parseDuration(s: string): number | { error: string } {
  const m = DURATION.exec(s.trim());
  if (!m) return { error: `"${clip(s)}" is not ${DURATION_HELP}` };
  const ms = Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  return ms > 0 ? ms : { error: 'a duration must be longer than zero' };
}

const ISO = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})?)?$/;

/** A point in time; `now` turns "7d" into seven days ago. Dates without a zone are UTC. */
export function parseTime(s: string, now: number): number | { error: string } {
  const t = s.trim();
  if (/^\d{1,15}$/.test(t)) return Number(t);
  if (DURATION.test(t)) {
    const d = parseDuration(t);
    return typeof d === 'number' ? now - d : d;
  }
  if (ISO.test(t)) {
    const withZone = t.length === 10 ? `${t}T00:00:00Z` : /Z|[+-]\d{2}:\d{2}$/.test(t) ? t : `${t}Z`;
    const ms = Date.parse(withZone);
    if (Number.isFinite(ms)) return ms;
  }
  return { error: `"${clip(s)}" is not ${TIME_HELP}` };
}

const clip = (s: string) => (s.length > 40 ? `${s.slice(0, 40)}…` : s);
