import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOPICS } from '../../contract/raw-event.js';
import { kafkaBrokers } from '../support/services.js';

/**
 * The standalone ingest process (`npx tsx apps/ingest.ts`) against the run's Kafka: its /metrics
 * counts what was sent, and SIGTERM under load loses nothing it acknowledged.
 */
const RUN = randomUUID().slice(0, 8);
const SITE = `ops-${RUN}`;
const WRITE_KEY = `wk_ops_${RUN}_secret`;

interface Child {
  proc: ChildProcessWithoutNullStreams;
  url: string;
  logs: Record<string, unknown>[];
  exited: Promise<number | null>;
}

async function startIngest(): Promise<Child> {
  const dir = mkdtempSync(join(tmpdir(), 'clickfold-ingest-'));
  const sitesFile = join(dir, 'sites.json');
  writeFileSync(sitesFile, JSON.stringify({ sites: [{ id: SITE, origins: ['*'], writeKeys: [WRITE_KEY] }] }));
  // As a supervisor should run it: npx's exec wrapper dies on SIGTERM without passing it on (the
  // process would be orphaned), and tsx's CLI SIGKILLs a child that is busy for 30 ms when relaying one.
  const proc = spawn(process.execPath, ['--import', 'tsx', 'apps/ingest.ts'], {
    env: {
      ...process.env,
      KAFKA_BROKERS: kafkaBrokers(),
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      INGEST_SITES: sitesFile,
      KAFKA_PARTITIONS: '3',
      INGEST_SHUTDOWN_GRACE_MS: '10000',
      TRUST_PROXY: '1',
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`ingest did not start:\n${stderr}`)), 60_000);
    proc.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        logs.push(entry);
        if (entry.msg === 'ingest is listening') {
          clearTimeout(timer);
          resolve(entry.url as string);
        }
      }
    });
    void exited.then((code) => reject(new Error(`ingest exited with ${code} before listening:\n${stderr}`)));
  });
  return { proc, url, logs, exited };
}

/** Reads clicks.raw from the beginning until every id in `ids` was seen (records of this run's site only). */
async function rawIdsOnKafka(ids: Set<string>): Promise<Map<string, number>> {
  const kafka = new Kafka({ clientId: `ops-reader-${RUN}`, brokers: kafkaBrokers().split(','), logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: `ops-reader-${randomUUID()}`, maxWaitTimeInMs: 100 });
  const seen = new Map<string, number>();
  let missing = ids.size;
  await consumer.connect();
  await consumer.subscribe({ topic: TOPICS.raw, fromBeginning: true });
  const done = new Promise<void>((resolve) => {
    void consumer.run({
      eachMessage: async ({ message }) => {
        // Other files may have written anything to the shared topic, junk included.
        let r: { id: string; site: string } | null;
        try {
          r = JSON.parse(message.value?.toString() ?? '') as { id: string; site: string } | null;
        } catch {
          return;
        }
        if (r?.site !== SITE) return;
        const n = (seen.get(r.id) ?? 0) + 1;
        seen.set(r.id, n);
        if (n === 1 && ids.has(r.id) && --missing === 0) resolve();
      },
    });
  });
  try {
    await Promise.race([done, new Promise((r) => setTimeout(r, 60_000))]);
  } finally {
    await consumer.disconnect();
  }
  return seen;
}

/** Prometheus text exposition format 0.0.4, strictly: comments, then `name{labels} value`. */
function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const typed = new Set<string>();
  const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
  const sample = new RegExp(`^(${NAME})(\\{(?:${LABEL}(?:,${LABEL})*)?\\})? (-?(?:\\d+(?:\\.\\d+)?(?:e[+-]?\\d+)?|\\+Inf|-Inf|NaN))(?: -?\\d+)?$`);
  const lines = text.split('\n');
  expect(lines.at(-1)).toBe('');
  for (const line of lines.slice(0, -1)) {
    if (line === '') continue; // the format allows empty lines
    const type = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line);
    if (type) {
      typed.add(type[1]!);
      continue;
    }
    if (new RegExp(`^# HELP ${NAME} .*$`).test(line)) continue;
    const m = sample.exec(line);
    if (!m) throw new Error(`not a Prometheus line: ${JSON.stringify(line)}`);
    const family = m[1]!.replace(/_(bucket|sum|count)$/, '');
    expect(typed.has(m[1]!) || typed.has(family), `# TYPE before ${m[1]}`).toBe(true);
    samples.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]));
  }
  return samples;
}

let n = 0;
const collectBody = (events: number, site = SITE) => ({
  site,
  visitor: `v-${RUN}-${n % 7}`,
  events: Array.from({ length: events }, () => ({ id: `${RUN}-${++n}`, type: 'page', ts: Date.now(), url: `/products/sku-${n % 5}` })),
});
const post = (url: string, path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

describe('apps/ingest.ts as a process', () => {
  let child: Child;
  beforeAll(async () => {
    child = await startIngest();
  }, 90_000);
  afterAll(() => {
    if (child && child.proc.exitCode === null) child.proc.kill('SIGKILL');
  });

  it('serves health, readiness and /metrics whose counters match the traffic sent', async () => {
    expect((await fetch(`${child.url}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${child.url}/readyz`)).json()).toEqual({ ready: true });

    for (let i = 0; i < 5; i++) expect((await post(child.url, '/v1/collect', collectBody(4))).status).toBe(202);
    for (let i = 0; i < 3; i++) expect((await post(child.url, '/v1/collect', '{"site":')).status).toBe(400);
    for (let i = 0; i < 2; i++) expect((await post(child.url, '/v1/collect', collectBody(1, `nowhere-${RUN}`))).status).toBe(403);
    const batch = {
      batch: [
        ...[1, 2, 3].map((i) => ({
          type: 'track',
          userId: `u-${RUN}`,
          event: 'Call Completed',
          messageId: `${RUN}-seg-${i}`,
          properties: { product: 'sku-1' },
        })),
        { type: 'track', userId: `u-${RUN}`, messageId: `${RUN}-seg-bad` },
      ],
    };
    const seg = await post(child.url, '/v1/batch', batch, { authorization: `Basic ${Buffer.from(`${WRITE_KEY}:`).toString('base64')}` });
    expect(seg.status).toBe(400);
    expect(await seg.json()).toMatchObject({ accepted: 3, rejected: [3] });
    expect((await fetch(`${child.url}/v1/email/open?site=${SITE}&user=u-${RUN}&campaign=c`)).status).toBe(200);

    const res = await fetch(`${child.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const m = parsePrometheus(await res.text());
    const get = (k: string) => m.get(k) ?? 0;
    expect(get('clickfold_ingest_events_accepted_total{route="/v1/collect"}')).toBe(20);
    expect(get('clickfold_ingest_events_accepted_total{route="/v1/batch"}')).toBe(3);
    expect(get('clickfold_ingest_events_accepted_total{route="/v1/email/open"}')).toBe(1);
    expect(get('clickfold_ingest_events_rejected_total{route="/v1/collect",reason="malformed_json"}')).toBe(3);
    expect(get('clickfold_ingest_events_rejected_total{route="/v1/collect",reason="unknown_site"}')).toBe(2);
    expect(get('clickfold_ingest_events_rejected_total{route="/v1/batch",reason="invalid_event"}')).toBe(1);
    expect(get('clickfold_ingest_requests_total{route="/v1/collect",status="202"}')).toBe(5);
    expect(get('clickfold_ingest_requests_total{route="/v1/collect",status="400"}')).toBe(3);
    expect(get('clickfold_ingest_requests_total{route="/v1/collect",status="403"}')).toBe(2);
    expect(get('clickfold_ingest_requests_total{route="/v1/batch",status="400"}')).toBe(1);
    expect(get('clickfold_ingest_requests_total{route="/v1/email/open",status="200"}')).toBe(1);
    expect(get('clickfold_ingest_requests_in_flight{route="/v1/collect"}')).toBe(0);
    // One produce per accepting request; one dead-letter write per rejecting request.
    expect(get('clickfold_ingest_produce_duration_seconds_count{topic="clicks.raw"}')).toBe(7);
    expect(get('clickfold_ingest_produce_duration_seconds_count{topic="clicks.invalid"}')).toBe(6);
    expect(get('clickfold_ingest_produce_duration_seconds_bucket{le="+Inf",topic="clicks.raw"}')).toBe(7);
    expect(get('clickfold_ingest_dead_letter_failures_total')).toBe(0);
    // Far below INGEST_DEAD_LETTERS_PER_SECOND: every refusal written, none only counted.
    expect(get('clickfold_ingest_dead_letters_written_total{reason="malformed_json"}')).toBe(3);
    expect(get('clickfold_ingest_dead_letters_written_total{reason="unknown_site"}')).toBe(2);
    expect(get('clickfold_ingest_dead_letters_written_total{reason="invalid_event"}')).toBe(1);
    expect([...m.keys()].filter((k) => k.startsWith('clickfold_ingest_dead_letters_sampled_out_total{'))).toEqual([]);
    // TRUST_PROXY=1 (the test is its own proxy): every X-Forwarded-For above was fine or absent.
    expect(get('clickfold_ingest_forwarded_for_fallbacks_total')).toBe(0);
    expect(m.has('process_cpu_user_seconds_total')).toBe(true);
  });

  it('reads the client address behind TRUST_PROXY hops and falls back on a garbled chain', async () => {
    expect(child.logs.find((l) => l.msg === 'ingest is listening')).toMatchObject({ trustedProxies: 1, deadLettersPerSecond: 200 });
    // Just this counter (the strict format check is the test above; prom-client's event-loop gauges can read `Nan` right after a scrape).
    const fallbacks = async () =>
      Number(/^clickfold_ingest_forwarded_for_fallbacks_total (\d+)$/m.exec(await (await fetch(`${child.url}/metrics`)).text())?.[1]);
    const before = await fallbacks();
    expect((await post(child.url, '/v1/collect', collectBody(1), { 'x-forwarded-for': 'forged, 203.0.113.9' })).status).toBe(202);
    expect(await fallbacks()).toBe(before);
    expect((await post(child.url, '/v1/collect', collectBody(1), { 'x-forwarded-for': '203.0.113.9, unknown' })).status).toBe(202);
    expect(await fallbacks()).toBe(before + 1);
  });

  it('on SIGTERM under load stops accepting, flushes, exits 0, and every acknowledged event is on clicks.raw', async () => {
    const acked = new Set<string>();
    let acks = 0;
    let stop = false;
    let signalled = false;
    const worker = async () => {
      while (!stop) {
        const body = collectBody(10);
        try {
          const res = await post(child.url, '/v1/collect', body);
          if (res.status === 202) {
            for (const e of body.events) acked.add(e.id);
            acks++;
          } else {
            await res.arrayBuffer();
            // Before the signal every answer is a 202; after it a 503 is allowed, nothing else.
            expect(signalled && res.status === 503, `status ${res.status}`).toBe(true);
          }
        } catch {
          // Connection refused or closed: the server is gone, or going.
          if (signalled) stop = true;
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    while (acks < 150) await new Promise((r) => setTimeout(r, 10));
    signalled = true;
    const ackedAtSignal = acks;
    child.proc.kill('SIGTERM');
    const code = await Promise.race([child.exited, new Promise((r) => setTimeout(() => r('timeout'), 60_000))]);
    stop = true;
    await Promise.all(workers);

    expect(code).toBe(0);
    expect(child.logs.some((l) => l.msg === 'stopped cleanly')).toBe(true);
    expect(acks).toBeGreaterThanOrEqual(ackedAtSignal);
    const seen = await rawIdsOnKafka(acked);
    const lost = [...acked].filter((id) => !seen.has(id));
    expect(lost).toEqual([]);
    expect(seen.size).toBeGreaterThanOrEqual(acked.size);
  }, 180_000);
});
