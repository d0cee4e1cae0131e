import { RANK_EPOCH, TAU_MS } from './rank-key.js';
import type { TimeWindow } from './store.js';

/**
 * Windowed stage counts at any size: beside each stage index, the number of its members per hour of
 * last activity (h = ⌊last / 1 h⌋, UTC hours since 1970). The index itself is ordered by the needs
 * ranking K = last + δ(w), δ up to about 11 days, so a window on the last activity is no range of it;
 * these counters are. They are kept in the same atomic step as the index (the index update: a member
 * added, moved to another hour or stage, removed, erased), so a windowed count is a sum of counters.
 * The price is the granularity: a window counts the whole UTC hours it touches (`hourWindow`), since
 * members of an edge hour could only be told apart by decoding all of them. Pure.
 *
 * Size: one counter per stage and hour in which some member of it was last active (at most 24 a day
 * per stage; a counter that drops to 0 is deleted). Members never age out of a stage index (a quiet
 * dialogue stays at its stage until the person's dialogue cap or an erase drops it), so neither do
 * their hours: at most 8,784 counters per stage and year of history.
 */

export const HOUR_MS = 3_600_000;

/** The hour (since 1970, UTC) of an epoch-ms instant. */
export const hourOf = (t: number): number => Math.floor(t / HOUR_MS);

/** The hours a window counts, inclusive; null when it holds none (since after until). Open ends stay infinite. */
export function hourWindow(window: TimeWindow): { from: number; to: number } | null {
  const from = window.since === undefined ? -Infinity : hourOf(window.since);
  const to = window.until === undefined ? Infinity : hourOf(window.until);
  return from > to ? null : { from, to };
}

/** The window a count actually covers: [first ms of since's hour, last ms of until's hour]. */
export function countedWindow(window: TimeWindow): TimeWindow {
  return {
    since: window.since === undefined ? undefined : hourOf(window.since) * HOUR_MS,
    until: window.until === undefined ? undefined : (hourOf(window.until) + 1) * HOUR_MS - 1,
  };
}

/** The sum of the counters (hour → members) whose hour lies in the window's hours. */
export function sumHours(counters: Iterable<readonly [number | string, number | string]>, window: TimeWindow): number {
  const range = hourWindow(window);
  if (!range) return 0;
  let n = 0;
  for (const [h, c] of counters) {
    const hour = Number(h);
    if (hour >= range.from && hour <= range.to) n += Number(c);
  }
  return n;
}

/** Moves one member between counters (undefined: not counted there), deleting a counter at 0. */
export function moveCount(counters: Map<number, number>, from: number | undefined, to: number | undefined): void {
  if (from === to) return;
  if (from !== undefined) {
    const n = (counters.get(from) ?? 0) - 1;
    if (n > 0) counters.set(from, n);
    else counters.delete(from);
  }
  if (to !== undefined) counters.set(to, (counters.get(to) ?? 0) + 1);
}

/**
 * Lua helpers for the scripts (redis-scripts.ts). A topic keeps one hash of counters for all its
 * stages (one key per topic, not per stage: a key costs more than a field, and topics are many and
 * often small), each field the integer `hour · stages + stage`, which Redis stores as an integer.
 * `hourOfScore(score)`: the hour of the last activity an index score holds; `hourField(hour, stage,
 * stages)`; `uncount(key, field)`. δ(w) is computed as rank-key.ts's table is built, in doubles; the
 * integration suite checks that Lua and JavaScript agree on every w. The increment and the decrement
 * of a member go through the same function, so the counters stay consistent whatever it answers.
 */
export const LUA_HOURS = `
local function hourOfScore(score)
  local s = tonumber(score)
  local k = math.floor(s / 4096)
  local w = s - k * 4096
  local d = 0
  if w > 0 then d = math.floor(${TAU_MS.toPrecision(17)} * math.log(math.log(1 + w) / math.log(2))) end
  return math.floor((k + ${RANK_EPOCH} - d) / ${HOUR_MS})
end
local function hourField(hour, stage, stages)
  return string.format('%d', hour * stages + stage)
end
local function uncount(key, field)
  if redis.call('HINCRBY', key, field, -1) <= 0 then redis.call('HDEL', key, field) end
end
`;
