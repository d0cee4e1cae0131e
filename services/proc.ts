/**
 * Shared plumbing for the local services (Kafka, Redis): free ports, child
 * process bookkeeping so that no JVM / redis-server outlives the Node process
 * that started it, and small helpers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repo root (services/..). */
export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
export const SERVICES_DIR = join(REPO_ROOT, 'services');

/** Where downloaded artefacts (the Kafka jars) live: never inside the repo. */
export function cacheDir(): string {
  return process.env.CLICKFOLD_CACHE || join(process.env.HOME || homedir(), '.cache', 'clickfold');
}

/** Lifecycle tracing to stderr when CLICKFOLD_SERVICES_DEBUG is set. */
export function debug(msg: string): void {
  if (process.env.CLICKFOLD_SERVICES_DEBUG) console.error(`[services ${new Date().toISOString().slice(11, 23)} pid=${process.pid}] ${msg}`);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Distinct free TCP ports on 127.0.0.1, found by binding port 0. All sockets
 * are held open together so the ports differ, then released.
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const srv = createServer();
          srv.unref();
          srv.once('error', reject);
          srv.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => resolve(srv));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

/** Last `lines` lines of a (possibly large, possibly missing) text file. */
export function tailFile(path: string, lines = 40, maxBytes = 64 * 1024): string {
  if (!existsSync(path)) return '';
  const size = statSync(path).size;
  const len = Math.min(size, maxBytes);
  const buf = Buffer.alloc(len);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, buf, 0, len, size - len);
  } finally {
    closeSync(fd);
  }
  return buf
    .toString('utf8')
    .split('\n')
    .slice(-lines - 1)
    .join('\n')
    .trimEnd();
}

export function readIfExists(path: string): string | undefined {
  return existsSync(path) ? readFileSync(path, 'utf8') : undefined;
}

/** Resolves true once `child` has exited, false if `ms` passed first. */
export function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, ms);
    const onExit = () => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

export function isAlive(child: ChildProcess | undefined): child is ChildProcess & { exitCode: null } {
  return !!child && child.exitCode === null && child.signalCode === null;
}

/**
 * Stop a child: optional polite step (e.g. SHUTDOWN over the wire), then
 * SIGTERM, wait up to `graceMs`, then SIGKILL. A SIGSTOPped child is
 * SIGCONTed first so it can act on the SIGTERM.
 */
export async function terminate(child: ChildProcess | undefined, graceMs = 20_000): Promise<void> {
  if (!isAlive(child)) return;
  try {
    child.kill('SIGCONT');
    child.kill('SIGTERM');
  } catch {
    /* already gone */
  }
  if (await waitForExit(child, graceMs)) return;
  try {
    child.kill('SIGKILL');
  } catch {
    /* already gone */
  }
  await waitForExit(child, 5_000);
}

// ---------------------------------------------------------------------------
// Orphan prevention.
//
// 1. Every tracked child gets SIGTERM (after SIGCONT) from a process 'exit'
//    handler, and from SIGINT/SIGTERM/SIGHUP handlers when nobody else
//    handles those signals (then the signal is re-raised so the process still
//    dies as it would have).
// 2. Every tracked child also gets a tiny detached watchdog (bash) that
//    SIGTERMs it, then SIGKILLs it 20s later, if the Node process disappears
//    without running any handler (SIGKILL, crash of a vitest worker...).
// ---------------------------------------------------------------------------

const tracked = new Map<ChildProcess, ChildProcess | undefined>();
let handlersInstalled = false;

function killTrackedNow(): void {
  for (const child of tracked.keys()) {
    if (!isAlive(child)) continue;
    try {
      child.kill('SIGCONT');
      child.kill('SIGTERM');
    } catch {
      /* ignore */
    }
  }
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', killTrackedNow);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = () => {
      // Someone else (e.g. services/stack.ts, a test runner) handles this
      // signal and is responsible for a clean stop; 'exit' is our backstop.
      if (process.listenerCount(sig) > 1) return;
      killTrackedNow();
      process.removeListener(sig, handler);
      process.kill(process.pid, sig);
    };
    process.on(sig, handler);
  }
}

const WATCHDOG = `# clickfold-watchdog: stops the child when its Node parent is gone
parent="$1"; child="$2"
alive() { kill -0 "$1" 2>/dev/null && ! grep -qE '^[0-9]+ \\(.*\\) Z' "/proc/$1/stat" 2>/dev/null; }
while alive "$parent" && alive "$child"; do sleep 1; done
alive "$child" || exit 0
kill -CONT "$child" 2>/dev/null; kill -TERM "$child" 2>/dev/null
for _ in $(seq 1 40); do alive "$child" || exit 0; sleep 0.5; done
kill -KILL "$child" 2>/dev/null
exit 0
`;

/** Register a long-running child for cleanup; returns an untrack function. */
export function track(child: ChildProcess): () => void {
  installHandlers();
  let watchdog: ChildProcess | undefined;
  if (child.pid) {
    try {
      watchdog = spawn('bash', ['-c', WATCHDOG, 'clickfold-watchdog', String(process.pid), String(child.pid)], {
        detached: true,
        stdio: 'ignore',
      });
      watchdog.on('error', () => {});
      watchdog.unref();
    } catch {
      watchdog = undefined;
    }
  }
  tracked.set(child, watchdog);
  const untrack = () => {
    const wd = tracked.get(child);
    tracked.delete(child);
    if (isAlive(wd)) {
      try {
        wd.kill('SIGTERM');
      } catch {
        /* ignore */
      }
    }
  };
  child.once('exit', untrack);
  return untrack;
}

/**
 * The lifecycle a local service shares, whatever it is: crash it, freeze it, restart it, remove
 * it. Subclasses own how it starts and how it stops gracefully.
 */
export abstract class ServiceProcess {
  protected child: ChildProcess | undefined;
  protected starting: Promise<void> | undefined;

  protected constructor(
    readonly dataDir: string,
    protected readonly ownsDataDir: boolean,
  ) {}

  /** Starts the process and resolves once it serves requests. */
  protected abstract doStart(): Promise<void>;

  /** (Re)start on the same ports and data dir. No-op when already running. */
  async start(): Promise<void> {
    if (this.starting) return this.starting;
    if (this.running) return;
    this.starting = this.doStart().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }
  abstract stop(graceMs?: number): Promise<void>;

  get running(): boolean {
    return isAlive(this.child);
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  /** Crash it: send `signal` (default SIGKILL) and wait for the exit. For fault tests. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!isAlive(child)) return;
    child.kill(signal);
    await waitForExit(child, 20_000);
    this.child = undefined;
  }

  /** Freeze it (SIGSTOP): connections stay open but nothing answers. */
  pause(): void {
    if (isAlive(this.child)) this.child.kill('SIGSTOP');
  }

  /** Undo pause() (SIGCONT). */
  resume(): void {
    if (isAlive(this.child)) this.child.kill('SIGCONT');
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** stop() and remove the data dir if this object created it. */
  async destroy(): Promise<void> {
    await this.stop();
    if (this.ownsDataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}
