/**
 * Figures of the benchmark and how they are shown: the progress log on stderr, the table on
 * stdout, CPU notes. Pure functions; the runner (bench/run.ts) keeps the list of figures.
 */
import type { CpuReport, Spread } from './lib.js';

/** One row of the table and of `figures` in bench-results/<timestamp>.json. */
export interface Figure {
  key: string;
  what: string;
  unit: string;
  value: Spread | number | string;
  /** The target as printed (bench/targets.ts `targetText`). */
  target?: string;
  ok?: boolean;
  note?: string;
}

/** The figures of a measurement, by name (a name may hold several figures, in order). */
export type Figures = Record<string, Figure | Figure[] | undefined>;

/** A measurement's figures in the order they were taken. */
export function figureList(figures: Figures): Figure[] {
  return Object.values(figures).flatMap((f) => (f === undefined ? [] : Array.isArray(f) ? f : [f]));
}

export const log = (msg: string) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);
export const round = (x: number, d = 0) => Math.round(x * 10 ** d) / 10 ** d;

export function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString('en-US');
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

/** The progress line of a figure (stderr). */
export function logFigure(f: Figure) {
  const v = typeof f.value === 'object' ? `median ${fmt(f.value.median)} (min ${fmt(f.value.min)}, max ${fmt(f.value.max)})` : String(f.value);
  log(`${f.what}: ${v} ${f.unit}${f.ok === undefined ? '' : f.ok ? '  [meets target]' : '  [MISSES target]'}`);
}

/** CPU microseconds per event of one role during a measurement. */
export function cpuPerEvent(c: CpuReport, role: string, eventsPerSecond: number): number {
  return round((((c.byRole[role] ?? NaN) / 100) * 1e6) / eventsPerSecond, 1);
}

export function cpuNote(c: CpuReport): string {
  const roles = Object.entries(c.byRole)
    .sort((a, b) => b[1] - a[1])
    .map(([r, p]) => `${r} ${Math.round(p)}%`)
    .join(', ');
  return `cpu: ${roles}; others ${Math.round(c.others)}%${c.topOthers.length ? ` (${c.topOthers.join(', ')})` : ''}`;
}

/** The element in the middle (of a measurement's runs: the CPU report shown in its note). */
export const middle = <T>(xs: T[]): T => xs[xs.length >> 1]!;

/** The table `npm run bench` prints: one row per figure, then the notes. */
export function table(figures: Figure[]): string {
  const rows = figures.map((f) => {
    const v = typeof f.value === 'object' ? fmt(f.value.median) : typeof f.value === 'number' ? fmt(f.value) : f.value;
    const range = typeof f.value === 'object' ? `${fmt(f.value.min)} – ${fmt(f.value.max)} (${f.value.runs} runs)` : '';
    const verdict = f.ok === undefined ? '' : f.ok ? 'ok' : 'MISS';
    return [f.what, `${v} ${f.unit}`.trim(), range, f.target ? `${f.target} ${f.unit}`.trim() : '', verdict];
  });
  const head = ['measurement', 'median / value', 'min – max', 'target', ''];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join(' | ');
  const out = [line(head), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map(line)];
  const notes = figures.filter((f) => f.note).map((f) => `  - ${f.what.split(',')[0]}: ${f.note}`);
  return `${out.join('\n')}\n\nnotes:\n${notes.join('\n')}`;
}
