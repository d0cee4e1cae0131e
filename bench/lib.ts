/**
 * Helpers of the benchmark runner: statistics, CPU accounting per process (so every figure says
 * how busy the machine was and with what), child processes, and an open-loop paced load generator.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import type { LoopDelay, ProcMessage } from './proc.js';

export interface Spread {
  min: number;
  median: number;
  max: number;
  runs: number;
}

export function spread(values: number[]): Spread {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { min: s[0] ?? NaN, median: median ?? NaN, max: s[s.length - 1] ?? NaN, runs: s.length };
}

/** The p-th percentile (0-100) of sorted values, nearest rank. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export const now = () => performance.timeOrigin + performance.now();

// ---------------------------------------------------------------------------------------------
// CPU accounting from /proc: who used the two cores during a measurement.

const TICK = 100; // USER_HZ on Linux

function readStat(pid: number): { ppid: number; ticks: number; comm: string } | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = s.lastIndexOf(')');
    const comm = s.slice(s.indexOf('(') + 1, close);
    const f = s.slice(close + 2).split(' ');
    // Fields after the name: state(0) ppid(1) ... utime(11) stime(12)
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]), comm };
  } catch {
    return null;
  }
}

type Snapshot = Map<number, { ppid: number; ticks: number; comm: string }>;

function snapshot(): Snapshot {
  const m: Snapshot = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = readStat(Number(name));
    if (st) m.set(Number(name), st);
  }
  return m;
}

export interface CpuReport {
  seconds: number;
  /** Percent of one core, by role (ours) and for everything else on the machine. */
  byRole: Record<string, number>;
  others: number;
  /** The busiest other processes, "comm pid: %". */
  topOthers: string[];
  loadavg1: number;
}

/**
 * Starts measuring CPU time; `stop()` returns percent-of-one-core per role. `roles` maps a role
 * name to the pids (and their descendants) that belong to it; the bench process itself is "bench".
 */
export function cpuMeter(roles: () => Record<string, (number | undefined)[]>) {
  const before = snapshot();
  const t0 = now();
  return {
    stop(): CpuReport {
      const after = snapshot();
      const seconds = (now() - t0) / 1000;
      const roleOf = new Map<number, string>();
      for (const [role, pids] of Object.entries({ bench: [process.pid], ...roles() })) for (const p of pids) if (p) roleOf.set(p, role);
      const find = (pid: number): string | undefined => {
        for (let p = pid, depth = 0; p > 1 && depth < 10; depth++) {
          const r = roleOf.get(p);
          if (r) return r;
          p = after.get(p)?.ppid ?? before.get(p)?.ppid ?? 0;
        }
        return undefined;
      };
      const byRole: Record<string, number> = {};
      const others: [string, number][] = [];
      let otherTicks = 0;
      for (const [pid, a] of after) {
        const d = a.ticks - (before.get(pid)?.ticks ?? 0);
        if (d <= 0) continue;
        const role = find(pid);
        if (role) byRole[role] = (byRole[role] ?? 0) + d;
        else {
          otherTicks += d;
          others.push([`${a.comm} ${pid}`, d]);
        }
      }
      const pct = (ticks: number) => Math.round((ticks / TICK / seconds) * 1000) / 10;
      return {
        seconds,
        byRole: Object.fromEntries(Object.entries(byRole).map(([k, v]) => [k, pct(v)])),
        others: pct(otherTicks),
        topOthers: others
          .sort((a, b) => b[1] - a[1])
          .slice(0, 3)
          .filter(([, t]) => pct(t) >= 2)
          .map(([n, t]) => `${n}: ${pct(t)}%`),
        loadavg1: loadavg()[0]!,
      };
    },
  };
}

export function machine() {
  const c = cpus();
  let os = '';
  try {
    os = /PRETTY_NAME="([^"]+)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? '';
  } catch {
    /* not Linux */
  }
  return {
    nproc: c.length,
    cpuModel: c[0]?.model ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    freeMemoryGiB: Math.round((freemem() / 2 ** 30) * 10) / 10,
    node: process.version,
    os,
    loadavg: loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

// ---------------------------------------------------------------------------------------------
// Child processes (bench/proc.ts, bundled).

export interface Proc {
  child: ChildProcess;
  port: number | undefined;
  /** Resolves with the child's `result` message. */
  result: Promise<unknown>;
  onMessage(f: (m: ProcMessage) => void): void;
  stop(): Promise<unknown>;
}

/** Starts a phase of a measured process: its event-loop delay histogram begins anew. */
export function resetLoopDelay(p: Proc): void {
  p.child.send({ type: 'loop-reset' });
}

/** The event-loop delay a measured process saw since its last reset (bench/proc.ts `loop`). */
export function loopDelayOf(p: Proc): Promise<LoopDelay | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), 5000);
    p.onMessage((m) => {
      if (m.type !== 'loop') return;
      clearTimeout(timer);
      resolve(m.loop);
    });
    p.child.send({ type: 'loop' });
  });
}

export async function startProc(bundle: string, mode: string, args: Record<string, unknown>, execArgv: string[] = []): Promise<Proc> {
  const child = fork(bundle, [mode, JSON.stringify(args)], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const listeners: ((m: ProcMessage) => void)[] = [];
  let resolveResult!: (v: unknown) => void;
  let rejectResult!: (e: Error) => void;
  const result = new Promise<unknown>((res, rej) => {
    resolveResult = res;
    rejectResult = rej;
  });
  result.catch(() => {});
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.once('exit', (code) => rejectResult(new Error(`bench ${mode} process exited (code ${code}) before its result`)));
  const ready = new Promise<number | undefined>((resolve, reject) => {
    child.on('message', (m: ProcMessage) => {
      if (m.type === 'ready') resolve(m.port);
      else if (m.type === 'result') resolveResult(m.result);
      else if (m.type === 'error') {
        const e = new Error(`bench ${mode} process failed: ${m.message}`);
        reject(e);
        rejectResult(e);
      }
      for (const l of listeners) l(m);
    });
    child.once('exit', (code) => reject(new Error(`bench ${mode} process exited (code ${code}) before it was ready`)));
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.send({ type: 'stop' });
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    }
    return result.catch(() => undefined);
  };
  ready.catch(() => {});
  // Modes that only compute (raw, fold) report a result and exit without 'ready'.
  const port = ['raw', 'fold', 'parts'].includes(mode) ? undefined : await ready;
  return { child, port, result, onMessage: (f) => listeners.push(f), stop };
}

// ---------------------------------------------------------------------------------------------
// Open-loop paced load: requests at evenly spaced intended times, latency measured from the
// intended time (so a stalled server is not hidden by a stalled generator: no coordinated
// omission) and from the actual send.

export interface PacedResult {
  rate: number;
  seconds: number;
  sent: number;
  statuses: Record<string, number>;
  errors: number;
  /** Milliseconds from the intended send time to the end of the response. */
  latency: { p50: number; p90: number; p99: number; max: number };
  /** Milliseconds from the actual write to the end of the response. */
  serviceTime: { p50: number; p99: number };
  /** Largest lag of the generator behind schedule, ms (large: the generator was starved). */
  maxScheduleLagMs: number;
}

export interface PacedRequest {
  body: string;
  headers: Record<string, string>;
  /** Called with the intended send time and the time the response ended. */
  onDone?: (status: number, intendedAt: number, endedAt: number) => void;
}

export async function pacedLoad(opts: {
  port: number;
  path: string;
  rate: number;
  seconds: number;
  connections: number;
  next: (i: number) => PacedRequest;
}): Promise<PacedResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: opts.connections });
  const latencies: number[] = [];
  const service: number[] = [];
  const statuses: Record<string, number> = {};
  let errors = 0;
  let sent = 0;
  let inFlight = 0;
  let maxLag = 0;
  const total = Math.round(opts.rate * opts.seconds);
  const interval = 1000 / opts.rate;
  const start = now() + 5;

  await new Promise<void>((finish) => {
    const fire = (i: number, intended: number) => {
      const req = opts.next(i);
      const body = Buffer.from(req.body);
      const sentAt = now();
      inFlight++;
      const r = request(
        {
          agent,
          host: '127.0.0.1',
          port: opts.port,
          method: 'POST',
          path: opts.path,
          headers: { ...req.headers, 'content-length': String(body.length) },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            const end = now();
            const code = String(res.statusCode);
            statuses[code] = (statuses[code] ?? 0) + 1;
            latencies.push(end - intended);
            service.push(end - sentAt);
            req.onDone?.(res.statusCode ?? 0, intended, end);
            if (--inFlight === 0 && sent === total) finish();
          });
        },
      );
      r.on('error', () => {
        errors++;
        if (--inFlight === 0 && sent === total) finish();
      });
      r.end(body);
    };
    const tick = () => {
      const t = now();
      const due = Math.min(total, Math.floor((t - start) / interval) + 1);
      while (sent < due) {
        const intended = start + sent * interval;
        maxLag = Math.max(maxLag, t - intended);
        fire(sent, intended);
        sent++;
      }
      if (sent < total) setTimeout(tick, Math.max(0, Math.min(interval, start + sent * interval - now())));
      else if (inFlight === 0) finish();
    };
    setTimeout(tick, 5);
  });
  agent.destroy();
  latencies.sort((a, b) => a - b);
  service.sort((a, b) => a - b);
  const r2 = (x: number) => Math.round(x * 100) / 100;
  return {
    rate: opts.rate,
    seconds: opts.seconds,
    sent,
    statuses,
    errors,
    latency: {
      p50: r2(percentile(latencies, 50)),
      p90: r2(percentile(latencies, 90)),
      p99: r2(percentile(latencies, 99)),
      max: r2(latencies[latencies.length - 1] ?? NaN),
    },
    serviceTime: { p50: r2(percentile(service, 50)), p99: r2(percentile(service, 99)) },
    maxScheduleLagMs: r2(maxLag),
  };
}

/** The audience of the app's `--audience` runs (click to `entered`): buyers of any product. */
export const BENCH_AUDIENCE = 'bench-buyers';
