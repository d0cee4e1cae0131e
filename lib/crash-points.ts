/**
 * Named points where the fault scenarios make a process die as abruptly as a power cut, to prove
 * what a crash at exactly that moment leaves behind. `CLICKFOLD_CRASH_AT=<point>[:<n>]` SIGKILLs
 * the process the n-th time (default the first) it passes `<point>`. Without the variable a pass is
 * one comparison. Read from the environment directly, not from the validated configuration: it is
 * a test instrument, not a setting.
 *
 * Points: `published` (a batch's transitions are written, its offsets not committed: in a Kafka
 * transaction, before the commit), `committed` (offsets committed, the outbox not yet cleared).
 */
export type CrashPoint = 'published' | 'committed';

const spec = /^(published|committed)(?::(\d+))?$/.exec(process.env.CLICKFOLD_CRASH_AT ?? '');
const armed = spec ? (spec[1] as CrashPoint) : undefined;
let left = spec ? Number(spec[2] ?? 1) : 0;

export function crashPoint(point: CrashPoint): void {
  if (point !== armed || --left > 0) return;
  process.stderr.write(`{"msg":"CLICKFOLD_CRASH_AT=${point}: killing this process now"}\n`);
  process.kill(process.pid, 'SIGKILL');
}
