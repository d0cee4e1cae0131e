import { describe, expect, it } from 'vitest';
import { TOPICS } from '../../contract/raw-event.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import { createIngestApp } from '../../ingest/app.js';
import { createLogger } from '../../lib/logger.js';
import { recordsOf } from '../support/log-records.js';

function setup(maxBodyBytes = 64 * 1024) {
  const log = new PartitionedLog(2);
  const app = createIngestApp({ producer: log.producer(), logger: createLogger('test', 'silent'), maxBodyBytes, retryAfterSeconds: 3 });
  const send = (body: string, type = 'application/json') =>
    app.request('/v1/collect', {
      method: 'POST',
      headers: { 'content-type': type, 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36' },
      body,
    });
  const raw = () => recordsOf(log, TOPICS.raw);
  const invalid = () => recordsOf(log, TOPICS.invalid);
  return { send, raw, invalid };
}

const good = (id = 'e1', extra: Record<string, unknown> = {}) =>
  JSON.stringify({ site: 'demo', visitor: 'v1', session: 's1', events: [{ id, type: 'page', ts: Date.now(), url: 'https://x.example/products/a' }], ...extra });

describe('POST /v1/collect', () => {
  it('accepts a batch as JSON and as sendBeacon text/plain, enriched and keyed by person', async () => {
    const { send, raw } = setup();
    expect((await send(good('a'))).status).toBe(202);
    const beacon = await send(good('b'), 'text/plain;charset=UTF-8');
    expect(beacon.status).toBe(202);
    expect(await beacon.json()).toEqual({ accepted: 1 });
    const records = raw();
    expect(records.map((r) => r.id)).toEqual(['a', 'b']);
    expect(records[0]).toMatchObject({
      v: 1,
      site: 'demo',
      person: 'v1',
      visitor: 'v1',
      channel: 'web',
      type: 'page',
      ua: { b: 'Chrome 126', o: 'Linux', d: 'desktop' },
    });
    expect(typeof records[0]!.rt).toBe('number');
  });

  it('answers 400 with the reason for malformed JSON, and keeps serving', async () => {
    const { send, invalid } = setup();
    for (const body of ['{bad', '', '{"site":"demo","visitor":"v1","events":[{"id":"x"', 'null', '[]', '"str"']) {
      const res = await send(body);
      expect(res.status, body).toBe(400);
      const json = (await res.json()) as { error: { code: string; message: string } };
      expect(['malformed_json', 'invalid_batch']).toContain(json.error.code);
      expect(json.error.message.length).toBeGreaterThan(5);
    }
    expect((await send(good())).status).toBe(202);
    expect(invalid().length).toBe(6);
  });

  it('names the field and the reason for missing fields and wrong types', async () => {
    const { send } = setup();
    const res = await send(JSON.stringify({ site: 'demo', events: [] }));
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; issues: { path: string; message: string }[] } };
    expect(body.error.code).toBe('invalid_batch');
    expect(body.error.issues.map((i) => i.path)).toEqual(expect.arrayContaining(['visitor', 'events']));

    const typed = await send(JSON.stringify({ site: 'demo', visitor: 'v', events: [{ id: 'e', type: 'page', ts: 'yesterday', url: 5 }] }));
    const issues = ((await typed.json()) as { error: { issues: { path: string; message: string }[] } }).error.issues;
    expect(issues).toEqual(
      expect.arrayContaining([
        { path: 'events.0.ts', message: expect.stringContaining('expected number') },
        { path: 'events.0.url', message: expect.stringContaining('expected string') },
      ]),
    );
  });

  it('accepts the good events of a mixed batch and reports the bad ones by index, with dead letters', async () => {
    const { send, raw, invalid } = setup();
    const res = await send(
      JSON.stringify({
        site: 'demo',
        visitor: 'v1',
        events: [
          { id: 'ok1', type: 'page', ts: Date.now(), url: '/products/a' },
          { id: 'bad', type: 'teleport', ts: Date.now() },
          { id: 'ok2', type: 'click', ts: Date.now(), el: { tag: 'button' } },
        ],
      }),
    );
    expect(res.status).toBe(400);
    const body = (await res.json()) as { accepted: number; rejected: number[]; error: { issues: { path: string }[] } };
    expect(body.accepted).toBe(2);
    expect(body.rejected).toEqual([1]);
    expect(body.error.issues[0]!.path).toMatch(/^events\.1/);
    expect(raw().map((r) => r.id)).toEqual(['ok1', 'ok2']);
    expect(invalid()).toMatchObject([{ stage: 'ingest', site: 'demo', reason: 'invalid_event', issues: [{ path: expect.stringMatching(/^events\.1/) }] }]);
  });

  it('answers 413 for an oversized body and 415 for another media type', async () => {
    const { send, raw } = setup(2048);
    const big = JSON.stringify({ site: 'demo', visitor: 'v', events: [{ id: 'e', type: 'page', ts: 1, url: `/${'x'.repeat(4000)}` }] });
    const res = await send(big);
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ error: { code: 'body_too_large' } });
    const form = await send('a=b', 'application/x-www-form-urlencoded');
    expect(form.status).toBe(415);
    expect(raw()).toEqual([]);
  });

  it('refuses __proto__ and constructor keys in properties and keeps hostile strings as data', async () => {
    const { send, raw } = setup();
    const proto = await send(`{"site":"demo","visitor":"v","events":[{"id":"p1","type":"track","name":"x","ts":1,"props":{"__proto__":{"polluted":true}}}]}`);
    expect(proto.status).toBe(400);
    const ctor = await send(`{"site":"demo","visitor":"v","events":[{"id":"p2","type":"track","name":"x","ts":1,"props":{"constructor":"y"}}]}`);
    expect(ctor.status).toBe(400);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();

    const hostile = '<script>alert(1)</script>\u0000\u202e"\'; DROP TABLE x;--';
    const ok = await send(
      JSON.stringify({ site: 'demo', visitor: 'v', events: [{ id: 'h1', type: 'track', name: hostile, ts: Date.now(), props: { q: hostile } }] }),
    );
    expect(ok.status).toBe(202);
    expect(raw()[0]).toMatchObject({ name: hostile, props: { q: hostile } });
    // Ids are restricted to a safe alphabet: they become Redis keys and log keys.
    const badId = await send(JSON.stringify({ site: 'demo', visitor: 'v{x}\n', events: [{ id: 'e', type: 'page', ts: 1, url: '/' }] }));
    expect(badId.status).toBe(400);
  });

  it('answers 503 with Retry-After when the log cannot take the events', async () => {
    const app = createIngestApp({
      producer: {
        send: async () => {
          const { LogUnavailableError } = await import('../../lib/log.js');
          throw new LogUnavailableError('down');
        },
        ready: () => false,
        close: async () => {},
      },
      logger: createLogger('test', 'silent'),
      maxBodyBytes: 65536,
      retryAfterSeconds: 7,
    });
    const res = await app.request('/v1/collect', { method: 'POST', headers: { 'content-type': 'application/json' }, body: good() });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('7');
    expect((await app.request('/readyz')).status).toBe(503);
  });
});
