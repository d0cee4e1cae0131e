/**
 * What every measurement is handed: the services (a Kafka broker and a Redis server started by
 * bench/run.ts), a way to start measured processes (bench/proc.ts, bundled by esbuild and run by
 * plain node), the CPU roles of a measurement, and the CPU profiler of --profile.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { KafkaBroker } from '../services/kafka.js';
import type { RedisServer } from '../services/redis.js';
import { startProc, type Proc } from './lib.js';
import { summarizeProfile, type ProfileSummary } from './profile.js';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The bundle of bench/proc.ts and the prepared records. */
export const CACHE_DIR = join(ROOT, 'node_modules', '.cache', 'clickfold-bench');
/**
 * This run's own folder for the bundle and the prepared records: two benches on one machine (two
 * people measuring different parts) must not bundle over, or clean up, each other's files.
 */
export const RUN_DIR = join(CACHE_DIR, `run-${process.pid}`);

export interface Services {
  kafka: KafkaBroker;
  redis: RedisServer;
}

/** Starts a bench/proc.ts process in one of its modes (see bench/proc.ts). */
export type StartProc = (mode: string, args: Record<string, unknown>, execArgv?: string[]) => Promise<Proc>;

export interface Harness {
  services: Services;
  start: StartProc;
}

/**
 * Roles for cpuMeter: the services, plus bench processes (`late` for ones started after the meter).
 */
export const roles =
  (services: Services, extra: Record<string, Proc | undefined> = {}, late: () => Record<string, Proc | undefined> = () => ({})) =>
  () => ({
    kafka: [services.kafka.pid],
    redis: [services.redis.pid],
    ...Object.fromEntries(Object.entries({ ...extra, ...late() }).map(([k, p]) => [k, [p?.child.pid]])),
  });

/** Bundles bench/proc.ts so that plain node runs it (no TS loader in the measured processes). */
export async function bundleProc(dir = CACHE_DIR): Promise<string> {
  const outfile = join(dir, 'proc.mjs');
  await build({
    entryPoints: [join(ROOT, 'bench', 'proc.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outfile,
    logLevel: 'warning',
  });
  return outfile;
}

/** Starts processes of the bundle and keeps the running ones, for `stopAll`. */
export function launcher(bundlePath: string) {
  const procs = new Set<Proc>();
  const start: StartProc = async (mode, args, execArgv = []) => {
    const p = await startProc(bundlePath, mode, args, execArgv);
    procs.add(p);
    p.child.once('exit', () => procs.delete(p));
    return p;
  };
  return { start, stopAll: () => Promise.allSettled([...procs].map((p) => p.stop())) };
}

export interface Profiler {
  /** node flags that CPU-profile a process into the profile directory. */
  args(name: string): string[];
  /** The newest profile whose name starts with `prefix`, summarized. */
  latest(prefix: string): ProfileSummary | undefined;
}

export const PROFILE_DIR = join(ROOT, 'bench-results', 'profiles');

export function profiler(dir = PROFILE_DIR): Profiler {
  return {
    args: (name) => ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${name}-${Date.now()}.cpuprofile`],
    latest(prefix) {
      if (!existsSync(dir)) return undefined;
      const files = readdirSync(dir)
        .filter((f) => f.startsWith(prefix) && f.endsWith('.cpuprofile'))
        .map((f) => join(dir, f))
        .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
      return files[0] ? summarizeProfile(files[0], 15) : undefined;
    },
  };
}
