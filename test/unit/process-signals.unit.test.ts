import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const FIXTURE = join(import.meta.dirname, '..', 'support', 'fixtures', 'slow-start.ts');
const BUSY = join(import.meta.dirname, '..', 'support', 'fixtures', 'busy-loop.ts');
const ROOT = join(import.meta.dirname, '..', '..');

describe('runProcess', () => {
  it('a SIGTERM while the process is starting stops it cleanly once started (not exit 143)', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], { env: { ...process.env, LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      // Signalled between "starting" and "started".
      if (out.includes('"msg":"starting"') && !out.includes('signalled')) {
        out += 'signalled';
        child.kill('SIGTERM');
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(code).toBe(0);
    expect(out).toContain('shutting down once started');
    // By the lines' own times: the order the lines reach the pipe is not always the order they were
    // written in (seen on Node 22).
    const at = (msg: string) => {
      const line = out.split('\n').find((l) => l.includes(`"msg":"${msg}"`));
      expect(line, msg).toBeDefined();
      return Date.parse((JSON.parse(line!.slice(line!.indexOf('{'))) as { time: string }).time);
    };
    expect(at('started')).toBeLessThanOrEqual(at('stop ran'));
  }, 30_000);

  it('a SIGTERM reaches the stop of a busy process run the way `npm run worker` runs the worker (not SIGKILLed)', async () => {
    // The command of the npm script, with the fixture in place of the worker. The `tsx` command
    // would relay the signal and SIGKILL a child that does not acknowledge it within 30 ms.
    const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    const [command, ...args] = scripts.worker!.split(' ');
    expect(args.at(-1)).toBe('apps/worker.ts');
    const child = spawn(command === 'node' ? process.execPath : command!, [...args.slice(0, -1), BUSY], {
      cwd: ROOT,
      env: { ...process.env, LOG_LEVEL: 'info', PATH: `${join(ROOT, 'node_modules', '.bin')}:${process.env.PATH}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const started = new Promise<void>((resolve) =>
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('"msg":"started"')) resolve();
      }),
    );
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    await started;
    // The loop is busy 150 ms of every 160 when the signal comes.
    await new Promise((r) => setTimeout(r, 300));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(out).toContain('stop ran');
    expect(out).toContain('stopped cleanly');
  }, 30_000);
});
