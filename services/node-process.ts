import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './proc.js';

/**
 * One of the project's own Node processes (ingest, a worker, the API) run from its TypeScript
 * source, its output kept in a log file, for the fault tests and the soak run: start it, wait
 * until it says it is ready, crash it or stop it as an orchestrator would.
 */
export class NodeProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<number | null> | undefined;
  readonly log: string;

  constructor(
    readonly name: string,
    private readonly script: string,
    private readonly env: Record<string, string>,
    dir: string,
  ) {
    this.log = join(dir, `${name}.log`);
  }

  /** Starts the process and resolves once its log says `ready`. */
  async start(ready: RegExp, timeoutMs = 60_000): Promise<void> {
    const out = createWriteStream(this.log, { flags: 'a' });
    const child = spawn(process.execPath, ['--import', 'tsx', this.script], {
      cwd: REPO_ROOT,
      env: { ...process.env, LOG_LEVEL: 'info', ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    let seen = '';
    let isReady = false;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name} not ready after ${timeoutMs} ms; see ${this.log}`)), timeoutMs);
      // Also the output after `ready` goes to the log through this one listener (a second one wrote every line twice).
      const onData = (chunk: Buffer) => {
        out.write(chunk);
        if (isReady) return;
        seen = (seen + chunk.toString()).slice(-4096);
        if (ready.test(seen)) {
          isReady = true;
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', (c: Buffer) => out.write(c));
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited with ${code} before it was ready; see ${this.log}`));
      });
    }).catch((err) => {
      child.kill('SIGKILL');
      throw err;
    });
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves with the exit code (null after a signal) once the process has ended by itself or was stopped. */
  whenExited(): Promise<number | null> {
    if (!this.exited) return Promise.reject(new Error(`${this.name} was never started`));
    return this.exited;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    if (!this.running) return Promise.resolve(this.child?.exitCode ?? null);
    this.child!.kill(signal);
    return this.exited!;
  }

  /** SIGTERM, as an orchestrator stops a process; SIGKILL if it does not exit in time. */
  async stop(graceMs = 30_000): Promise<number | null> {
    if (!this.running) return this.child?.exitCode ?? null;
    const code = this.kill('SIGTERM');
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), graceMs);
    try {
      return await code;
    } finally {
      clearTimeout(timer);
    }
  }
}
