/**
 * A real, throw-away redis-server on a free 127.0.0.1 port, for tests,
 * benchmarks and `npm run stack`. Nothing is persisted (--save "" --appendonly no).
 *
 *   const redis = await RedisServer.start();
 *   redis.url               // "redis://127.0.0.1:PORT"
 *   await redis.stop();     // SHUTDOWN NOSAVE, then SIGTERM, then SIGKILL
 *   await redis.start();    // same port (empty data: nothing is persisted)
 *   await redis.destroy();  // stop + remove the temp dir
 *
 * Cluster mode later: start N of these with
 * `extraArgs: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf']`
 * and join them (redis-cli --cluster create / CLUSTER MEET + ADDSLOTS).
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { debug, freePorts, isAlive, ServiceProcess, sleep, tailFile, terminate, track, waitForExit } from './proc.js';

export interface RedisServerOptions {
  /** Working dir (logs, and nodes.conf in cluster mode). Default: a fresh temp dir, removed by destroy(). */
  dataDir?: string;
  /** Default: a free port. */
  port?: number;
  /** Extra redis-server arguments, e.g. ['--maxmemory', '256mb'] or cluster flags. */
  extraArgs?: string[];
  /** redis-server binary. Default: $REDIS_SERVER or `redis-server` on PATH. */
  binary?: string;
  /** How long start() waits for PING. Default 20s. */
  startTimeoutMs?: number;
}

function redisBinary(opts: RedisServerOptions): string {
  const bin = opts.binary ?? process.env.REDIS_SERVER ?? 'redis-server';
  const res = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  if (res.error || res.status !== 0) {
    throw new Error(
      `redis-server not found (${bin}: ${res.error?.message ?? `exit ${res.status}`}). Run 'npm run services:install' (installs Debian's redis-server).`,
    );
  }
  return bin;
}

/**
 * Send one inline command and read the first reply line (RESP simple string /
 * error / integer). Resolves '' if the server closed the connection without a
 * reply (what SHUTDOWN does).
 */
export function redisCommand(port: number, command: string, timeoutMs = 2_000, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port });
    let buf = '';
    const done = (err: Error | null, value = '') => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => done(new Error(`redis ${host}:${port}: no reply to ${command} in ${timeoutMs} ms`)), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${command}\r\n`));
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\r\n');
      if (nl >= 0) done(null, buf.slice(0, nl));
    });
    sock.on('error', (e) => done(e));
    sock.on('close', () => done(null, buf));
  });
}

export class RedisServer extends ServiceProcess {
  readonly host = '127.0.0.1';
  readonly port: number;
  /** "redis://127.0.0.1:PORT", for ioredis. */
  readonly url: string;
  readonly logFile: string;

  private readonly opts: RedisServerOptions;
  private readonly binary: string;

  protected constructor(opts: RedisServerOptions, binary: string, dataDir: string, ownsDataDir: boolean, port: number) {
    super(dataDir, ownsDataDir);
    this.opts = opts;
    this.binary = binary;
    this.port = port;
    this.url = `redis://${this.host}:${port}`;
    this.logFile = join(dataDir, 'redis.log');
  }

  static async start(opts: RedisServerOptions = {}): Promise<RedisServer> {
    const binary = redisBinary(opts);
    const port = opts.port ?? (await freePorts(1))[0]!;
    const ownsDataDir = !opts.dataDir;
    const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'clickfold-redis-'));
    mkdirSync(dataDir, { recursive: true });
    const server = new RedisServer(opts, binary, dataDir, ownsDataDir, port);
    try {
      await server.start();
    } catch (e) {
      await server.stop().catch(() => {});
      if (ownsDataDir) rmSync(dataDir, { recursive: true, force: true });
      throw e;
    }
    return server;
  }

  protected async doStart(): Promise<void> {
    const args = [
      '--port',
      String(this.port),
      '--bind',
      this.host,
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      this.dataDir,
      '--daemonize',
      'no',
      '--logfile',
      this.logFile,
      '--loglevel',
      'notice',
      ...(this.opts.extraArgs ?? []),
    ];
    // Anything redis prints before its logfile is open (bad args) lands here.
    const out = openSync(join(this.dataDir, 'stdout.log'), 'a');
    try {
      this.child = spawn(this.binary, args, { cwd: this.dataDir, detached: true, stdio: ['ignore', out, out] });
    } finally {
      closeSync(out);
    }
    const child = this.child;
    child.on('error', () => {});
    child.unref();
    track(child);

    const timeoutMs = this.opts.startTimeoutMs ?? 20_000;
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < deadline) {
      if (!isAlive(child)) {
        throw new Error(`redis-server exited during startup (code ${child.exitCode}, signal ${child.signalCode}).\n${this.logTail()}`);
      }
      try {
        const reply = await redisCommand(this.port, 'PING', 1_000);
        if (reply === '+PONG') {
          debug(`redis ${this.url}: pid ${child.pid} ready`);
          return;
        }
        last = new Error(`PING answered ${JSON.stringify(reply)}`);
      } catch (e) {
        last = e;
      }
      await sleep(50);
    }
    await terminate(child, 5_000);
    throw new Error(`redis-server on port ${this.port} did not answer PING within ${timeoutMs} ms (${(last as Error)?.message ?? last}).\n${this.logTail()}`);
  }

  /** SHUTDOWN NOSAVE, then SIGTERM/SIGKILL if it lingers. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.starting) await this.starting.catch(() => {});
    const child = this.child;
    if (isAlive(child)) {
      try {
        child.kill('SIGCONT'); // in case pause()d
        await redisCommand(this.port, 'SHUTDOWN NOSAVE', 2_000);
      } catch {
        /* fall through to signals */
      }
      if (!(await waitForExit(child, 3_000))) await terminate(child, graceMs);
      debug(`redis ${this.url}: pid ${child.pid} stopped`);
    }
    this.child = undefined;
  }

  logTail(lines = 30): string {
    const log = tailFile(this.logFile, lines);
    const out = tailFile(join(this.dataDir, 'stdout.log'), 10);
    return [log && `--- ${this.logFile} (tail) ---\n${log}`, out && `--- stdout (tail) ---\n${out}`].filter(Boolean).join('\n') || '(no redis log yet)';
  }
}
