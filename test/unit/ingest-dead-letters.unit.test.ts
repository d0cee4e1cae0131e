import { describe, expect, it } from 'vitest';
import { DeadLetter } from '../../contract/dead-letter.js';
import { TOPICS, type RawEvent } from '../../contract/raw-event.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import { createIngestApp } from '../../ingest/app.js';
import { createIngestMetrics, type IngestMetrics } from '../../ingest/metrics.js';
import { createSink } from '../../ingest/sink.js';
import { compileSites, SitesFile } from '../../ingest/sites.js';
import type { LogProducer } from '../../lib/log.js';
import { createLogger } from '../../lib/logger.js';
import { recordsOf } from '../support/log-records.js';

const logger = createLogger('test', 'silent');
const KEY = 'wk_dead_letters_0123';

/** Sum of a counter's samples in the Prometheus text, optionally only those whose labels contain `labels`. */
async function counter(metrics: IngestMetrics, name: string, labels = ''): Promise<number> {
  const text = await metrics.registry.metrics();
  return [...text.matchAll(new RegExp(`^${name}(\\{[^}]*\\})? (\\d+)$`, 'gm'))]
    .filter((m) => (m[1] ?? '').includes(labels))
    .reduce((s, m) => s + Number(m[2]), 0);
}

function setup(opts: { deadLettersPerSecond?: number; producer?: (log: PartitionedLog) => LogProducer; now?: () => number } = {}) {
  const log = new PartitionedLog(1);
  const metrics = createIngestMetrics();
  const app = createIngestApp({
    producer: opts.producer ? opts.producer(log) : log.producer(),
    logger,
    maxBodyBytes: 65536,
    retryAfterSeconds: 2,
    sites: compileSites(SitesFile.parse({ sites: [{ id: 'shop', writeKeys: [KEY] }] })),
    deadLettersPerSecond: opts.deadLettersPerSecond,
    metrics,
    now: opts.now,
  });
  let n = 0;
  const post = (body: string, headers: Record<string, string> = {}) =>
    app.request('/v1/collect', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const good = () => post(JSON.stringify({ site: 'shop', visitor: 'v', events: [{ id: `good-${++n}`, type: 'page', ts: Date.now(), url: '/' }] }));
  const junk = (i: number) => post(['{bad', JSON.stringify({ site: 'nowhere', visitor: 'v', events: [{}] }), 'null'][i % 3]!);
  const raw = () => recordsOf<RawEvent>(log, TOPICS.raw);
  const invalid = () => recordsOf(log, TOPICS.invalid);
  return { app, post, good, junk, raw, invalid, metrics, log };
}

describe('dead letters through a bounded path', () => {
  it('writes at most the configured rate; the rest of a flood is counted by reason, not written', async () => {
    let t = 5_000_000;
    const { junk, good, raw, invalid, metrics } = setup({ deadLettersPerSecond: 5, now: () => t });
    const statuses = [];
    for (let i = 0; i < 60; i++) {
      statuses.push((await junk(i)).status);
      if (i % 10 === 0) statuses.push((await good()).status);
    }
    // Every sender still gets its answer: 400 / 403 for junk, 202 for the real events.
    expect(statuses.filter((s) => s === 202)).toHaveLength(6);
    expect(statuses.filter((s) => s === 400 || s === 403)).toHaveLength(60);
    expect(raw()).toHaveLength(6);
    expect(invalid()).toHaveLength(5);
    expect(await counter(metrics, 'clickfold_ingest_events_rejected_total')).toBe(60);
    expect(await counter(metrics, 'clickfold_ingest_dead_letters_written_total')).toBe(5);
    expect(await counter(metrics, 'clickfold_ingest_dead_letters_sampled_out_total')).toBe(55);
    expect(await counter(metrics, 'clickfold_ingest_dead_letters_sampled_out_total', 'reason="unknown_site"')).toBe(
      20 - invalid().filter((d) => d.reason === 'unknown_site').length,
    );
    // A second later the bucket has refilled: five more.
    t += 1000;
    for (let i = 0; i < 10; i++) await junk(i);
    expect(invalid()).toHaveLength(10);
  });

  it('never lets the answer wait on a dead letter: a stuck clicks.invalid holds up neither junk nor real events', async () => {
    const { junk, good, raw, metrics } = setup({
      producer: (log) => {
        const inner = log.producer();
        // clicks.invalid never acknowledges; clicks.raw works.
        return { ...inner, send: (topic, messages) => (topic === TOPICS.invalid ? new Promise<void>(() => {}) : inner.send(topic, messages)) };
      },
    });
    const answered = await Promise.race([
      (async () => {
        const statuses = [];
        for (let i = 0; i < 1200; i++) statuses.push((await junk(i)).status, ...(i % 100 === 0 ? [(await good()).status] : []));
        return statuses;
      })(),
      new Promise<null>((r) => setTimeout(() => r(null), 10_000)),
    ]);
    expect(answered).not.toBeNull();
    expect(answered!.filter((s) => s === 202)).toHaveLength(12);
    expect(raw()).toHaveLength(12);
    // At most 1,000 wait for Kafka at a time (and 200 per second are allowed): the rest only counted.
    expect(await counter(metrics, 'clickfold_ingest_dead_letters_written_total')).toBeLessThanOrEqual(1000);
    expect(
      (await counter(metrics, 'clickfold_ingest_dead_letters_written_total')) + (await counter(metrics, 'clickfold_ingest_dead_letters_sampled_out_total')),
    ).toBe(1200);
  });

  it('counts dead letters that could not be written, and still answers the sender', async () => {
    const { junk, metrics } = setup({
      producer: (log) => {
        const inner = log.producer();
        return { ...inner, send: (topic, messages) => (topic === TOPICS.invalid ? Promise.reject(new Error('broker gone')) : inner.send(topic, messages)) };
      },
    });
    expect((await junk(0)).status).toBe(400);
    expect((await junk(1)).status).toBe(403);
    await new Promise((r) => setImmediate(r));
    expect(await counter(metrics, 'clickfold_ingest_dead_letter_failures_total')).toBe(2);
  });

  it('caps the dead letters waiting for Kafka', async () => {
    const metrics = createIngestMetrics();
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const sent: number[] = [];
    const producer: LogProducer = {
      send: async (_t, m) => {
        sent.push(m.length);
        await gate;
      },
      ready: () => true,
      close: async () => {},
    };
    const sink = createSink({ producer, logger, metrics, retryAfterSeconds: 1, deadLettersPerSecond: 1000, maxPendingDeadLetters: 3 });
    const ref = { route: '/v1/collect', rt: 1, rid: 'r' };
    for (let i = 0; i < 5; i++) sink.deadLetter(ref, [{ reason: 'malformed_json', issues: [] }]);
    expect(sent).toEqual([1, 1, 1]);
    expect(await counter(metrics, 'clickfold_ingest_dead_letters_sampled_out_total')).toBe(2);
    release();
    await sink.settled();
    sink.deadLetter(ref, [{ reason: 'malformed_json', issues: [] }]);
    expect(sent).toEqual([1, 1, 1, 1]);
  });

  it('writes the shared DeadLetter shape, with write keys and user signatures redacted', async () => {
    const { post, app, invalid } = setup();
    const sig = 'ab'.repeat(32);
    await post(`{"site":"shop","visitor":"v","user":"u-1","sig":"${sig}","events":[`);
    await post(`{"site":"shop","visitor":"v","sig":"${sig.slice(0, 40)}`); // cut inside the value
    await post(JSON.stringify({ site: 'shop', visitor: 'v', events: [{ id: 'x', type: 'identify', ts: 1, user: 'u{1}', sig }] }));
    await app.request('/v1/batch', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ writeKey: KEY, batch: [{ type: 'track', userId: 'u', event: 5, context: { clickfold: { sig } } }] }),
    });
    const letters = invalid();
    expect(letters.map((d) => d.reason)).toEqual(['malformed_json', 'malformed_json', 'invalid_event', 'invalid_event']);
    for (const d of letters) {
      expect(DeadLetter.safeParse(d).success, JSON.stringify(d)).toBe(true);
      expect(d).toMatchObject({ stage: 'ingest', route: expect.stringMatching(/^\/v1\//), rid: expect.any(String), rt: expect.any(Number) });
    }
    expect(letters[0]).toMatchObject({ detail: expect.stringContaining('not valid JSON'), payload: expect.stringContaining('"sig":"[redacted]"') });
    const text = JSON.stringify(letters);
    expect(text).not.toContain(sig.slice(0, 40));
    expect(text).not.toContain(KEY);
  });
});
