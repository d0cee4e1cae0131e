import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOPICS } from '../../contract/raw-event.js';
import type { Transition } from '../../contract/transition.js';
import { kafkaBrokers, redisUrl } from '../support/services.js';

/**
 * The standalone query API process (`npx tsx apps/api.ts`) on the run's Kafka and Redis:
 * it refuses to start without API_KEYS; with a key it serves the API and the dashboard, and its
 * live feed comes from a kafkajs consumer on history.transitions; SIGTERM ends open streams and exits 0.
 */
const KEY = `api-main-key-${randomUUID()}`;

interface Child {
  proc: ChildProcessWithoutNullStreams;
  stderr: () => string;
  exited: Promise<number | null>;
}

function spawnApi(env: Record<string, string>): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'apps/api.ts'], {
    env: {
      ...process.env,
      KAFKA_BROKERS: kafkaBrokers(),
      REDIS_URL: redisUrl(),
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      KAFKA_PARTITIONS: '3',
      API_KEYS: '',
      API_READ_KEYS: '',
      ...env,
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, stderr: () => stderr, exited };
}

function listening(child: Child): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`the API did not start:\n${child.stderr()}`)), 60_000);
    child.proc.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      for (const line of buf.split('\n')) {
        try {
          const entry = JSON.parse(line) as { msg?: string; url?: string };
          if (entry.msg === 'query API is listening' && entry.url) {
            clearTimeout(timer);
            resolve(entry.url);
          }
        } catch {
          // a partial line
        }
      }
    });
    void child.exited.then((code) => reject(new Error(`the API exited with ${code}:\n${child.stderr()}`)));
  });
}

describe('apps/api.ts as a process', () => {
  it('refuses to start on the real stack without API_KEYS, saying why', async () => {
    const child = spawnApi({});
    expect(await child.exited).toBe(1);
    expect(child.stderr()).toContain('API_KEYS is not set: the query API on the real stack needs at least one key');
  });

  describe('with a key', () => {
    let child: Child;
    let url: string;
    const auth = { authorization: `Bearer ${KEY}` };
    beforeAll(async () => {
      child = spawnApi({ API_KEYS: KEY, REDIS_PREFIX: `api-main-${randomUUID().slice(0, 8)}:`, KAFKA_GROUP_ID: `api-main-${randomUUID().slice(0, 8)}` });
      url = await listening(child);
    });
    afterAll(async () => {
      if (child && child.proc.exitCode === null) {
        child.proc.kill('SIGKILL');
        await child.exited;
      }
    });

    it('serves the API behind the key, and the dashboard page', async () => {
      expect((await fetch(`${url}/v1/topics`)).status).toBe(401);
      const topics = await fetch(`${url}/v1/topics`, { headers: auth });
      expect(topics.status).toBe(200);
      expect(await topics.json()).toEqual({ ladder: ['intro', 'detail', 'purchase'], topics: [] });
      const page = await fetch(`${url}/dashboard`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<h1>Customer interest</h1>');
      expect((await fetch(`${url}/dashboard/app.js`)).status).toBe(200);
    });

    it('streams what the workers publish on history.transitions, and ends the stream on SIGTERM', async () => {
      const ac = new AbortController();
      const res = await fetch(`${url}/v1/transitions/stream?topic=product:api-main`, { headers: auth, signal: ac.signal });
      expect(res.status).toBe(200);
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      let text = '';
      const until = async (needle: string) => {
        const timeout = setTimeout(() => void reader.cancel(), 20_000);
        try {
          while (!text.includes(needle)) {
            const { value, done } = await reader.read();
            if (done) return false;
            text += value;
          }
          return true;
        } finally {
          clearTimeout(timeout);
        }
      };
      expect(await until('event: ready')).toBe(true);

      // A worker elsewhere publishes a transition.
      const t: Transition = {
        id: `p|product:api-main|x|detail|${randomUUID()}`,
        person: 'p-api-main',
        topic: 'product:api-main',
        from: 'intro',
        to: 'detail',
        at: Date.now(),
        channel: 'web',
      };
      const kafka = new Kafka({ clientId: 'test-api-main', brokers: kafkaBrokers().split(','), logLevel: logLevel.NOTHING });
      const producer = kafka.producer();
      await producer.connect();
      await producer.send({
        topic: TOPICS.transitions,
        messages: [
          { key: t.person, value: JSON.stringify({ ...t, id: `${t.id}-other`, topic: 'product:other' }) },
          { key: t.person, value: JSON.stringify(t) },
        ],
      });
      await producer.disconnect();

      expect(await until(`id: ${t.id}`), text).toBe(true);
      expect(text).toContain(`data: ${JSON.stringify(t)}`);
      expect(text).not.toContain('product:other');

      // SIGTERM: the open stream ends, the process exits cleanly.
      child.proc.kill('SIGTERM');
      expect(await until('never-sent')).toBe(false);
      expect(await child.exited).toBe(0);
      ac.abort();
    });
  });
});
