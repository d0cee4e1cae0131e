import { describe, expect, it } from 'vitest';
import { countedWindow, HOUR_MS, hourOf, hourWindow, moveCount, sumHours } from '../../history/store/hour-counts.js';

const T0 = Date.UTC(2026, 5, 1);
const H = HOUR_MS;

describe('hour counters of last activity (hour-counts.ts)', () => {
  it('puts an instant in its UTC hour, also before 1970', () => {
    expect(hourOf(T0)).toBe(T0 / H);
    expect(hourOf(T0 + H - 1)).toBe(T0 / H);
    expect(hourOf(T0 - 1)).toBe(T0 / H - 1);
    expect(hourOf(-1)).toBe(-1);
  });

  it('widens a window to the whole hours it touches; open ends stay open; a reversed window holds nothing', () => {
    expect(hourWindow({ since: T0 + 5, until: T0 + 2 * H + 7 })).toEqual({ from: T0 / H, to: T0 / H + 2 });
    expect(hourWindow({})).toEqual({ from: -Infinity, to: Infinity });
    expect(hourWindow({ since: T0 + H, until: T0 })).toBeNull();
    // Within one hour, since > until by the millisecond is still a reversed window.
    expect(hourWindow({ since: T0 + 10, until: T0 + 5 })).toEqual({ from: T0 / H, to: T0 / H });
    expect(countedWindow({ since: T0 + 5, until: T0 + 2 * H + 7 })).toEqual({ since: T0, until: T0 + 3 * H - 1 });
    expect(countedWindow({ since: T0 })).toEqual({ since: T0, until: undefined });
  });

  it('sums the counters whose hour is in the window (fields as Redis answers them: strings)', () => {
    const h0 = T0 / H;
    const counters: [string, string][] = [
      [String(h0 - 1), '4'],
      [String(h0), '2'],
      [String(h0 + 1), '3'],
      [String(h0 + 30), '1'],
    ];
    expect(sumHours(counters, {})).toBe(10);
    expect(sumHours(counters, { since: T0 + 17 })).toBe(6);
    expect(sumHours(counters, { since: T0, until: T0 + H })).toBe(5);
    expect(sumHours(counters, { until: T0 - 1 })).toBe(4);
    expect(sumHours(counters, { since: T0 + 100 * H })).toBe(0);
    expect(sumHours(counters, { since: T0 + H, until: T0 })).toBe(0);
    expect(sumHours(counters, { since: -8.64e15, until: 8.64e15 })).toBe(10);
  });

  it('moves a member between hours, deleting a counter that reaches 0', () => {
    const c = new Map<number, number>();
    moveCount(c, undefined, 5);
    moveCount(c, undefined, 5);
    moveCount(c, 5, 6);
    expect([...c]).toEqual([
      [5, 1],
      [6, 1],
    ]);
    moveCount(c, 6, 6);
    moveCount(c, 5, undefined);
    expect([...c]).toEqual([[6, 1]]);
    moveCount(c, 6, undefined);
    expect(c.size).toBe(0);
  });
});
