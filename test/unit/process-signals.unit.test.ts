import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const FIXTURE = join(import.meta.dirname, '..', 'support', 'fixtures', 'slow-start.ts');

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
});
