import { afterEach, describe, expect, it } from 'vitest';
import { DeadLetter } from '../../contract/dead-letter.js';
import { TOPICS } from '../../contract/raw-event.js';
import type { Transition } from '../../contract/transition.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import {
  createWebhookMetrics,
  parseRetryAfter,
  readExcerpt,
  startWebhooks,
  urlLabel,
  type RunningWebhooks,
  type WebhookOptions,
} from '../../history/transitions/webhooks.js';
import type { LogProducer } from '../../lib/log.js';
import { createLogger } from '../../lib/logger.js';

/**
 * Webhook delivery against a fake `fetch`, on the embedded log: a permanent 4xx parks the request
 * on history.webhooks.parked and delivery goes on; 408, 429, 5xx and network errors are retried.
 */
const URL_ = 'http://receiver.test/hook';
const SECRET = 'unit-webhook-secret-0123456789';
const logger = createLogger('test', 'silent');

interface Call {
  delivery: string;
  ids: string[];
  at: number;
}

type Responder = (call: Call, n: number, signal: AbortSignal) => Response | Promise<Response>;

let seq = 0;
const transition = (id: string): Transition => ({
  id,
  person: `p-${id}`,
  topic: 'product:sku-1',
  from: null,
  to: 'intro',
  at: 1_700_000_000_000 + ++seq,
  channel: 'web',
});

const until = async <T>(check: () => T | undefined | Promise<T | undefined>, timeoutMs = 5000, what = 'condition'): Promise<T> => {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

const running: RunningWebhooks[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.stop()));
});

/** Webhooks on a one-partition embedded log, one transition per request, fast retries. */
async function setup(respond: Responder, extra: Omit<Partial<WebhookOptions>, 'producer'> & { producer?: LogProducer | null } = {}) {
  const log = new PartitionedLog(1);
  const calls: Call[] = [];
  const fakeFetch = (async (_url: string | URL | Request, init?: RequestInit) => {
    const headers = init!.headers as Record<string, string>;
    const body = JSON.parse(String(init!.body)) as { transitions: Transition[] };
    const call = { delivery: headers['x-clickfold-delivery']!, ids: body.transitions.map((t) => t.id), at: Date.now() };
    calls.push(call);
    return respond(call, calls.length, init!.signal!);
  }) as typeof fetch;
  const metrics = createWebhookMetrics();
  const { producer = log.producer(), ...rest } = extra;
  const webhooks = await startWebhooks(log, {
    urls: [URL_],
    secret: SECRET,
    logger,
    fetch: fakeFetch,
    metrics,
    maxBatch: 1,
    retryInitialMs: 5,
    retryMaxMs: 20,
    ...(producer ? { producer } : {}),
    ...rest,
  });
  running.push(webhooks);
  const publish = (...ids: string[]) =>
    log.append(
      TOPICS.transitions,
      ids.map((id) => ({ key: `p-${id}`, value: JSON.stringify(transition(id)) })),
    );
  const parked = () =>
    log
      .read(TOPICS.webhooksParked)
      .flat()
      .map((m) => ({ key: m.key, letter: DeadLetter.parse(JSON.parse(m.value)) }));
  const value = async (name: string, labels: Record<string, string>) => {
    const m = (await metrics.registry.getMetricsAsJSON()).find((x) => x.name === name);
    return m?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value ?? 0;
  };
  return { log, calls, publish, parked, value, metrics };
}

const answer = (status: number, body: string | null = null, headers: Record<string, string> = {}) => new Response(body, { status, headers });
const networkError = () =>
  Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }) });

describe('webhooks: permanent refusals are parked', () => {
  it('parks a 400 with the URL, status, excerpt, delivery id and transitions, then delivers the next batch', async () => {
    const taken: string[] = [];
    const w = await setup((call) => {
      if (call.ids.includes('a')) return answer(400, '{"error":"unknown field \\"channel\\""}', { 'content-type': 'application/json' });
      taken.push(...call.ids);
      return answer(204);
    });
    w.publish('a', 'b', 'c');
    await until(() => (taken.includes('c') ? true : undefined), 5000, 'b and c delivered');

    // The refused request was sent once, never retried; the next ones went out in order.
    expect(w.calls.map((c) => c.ids)).toEqual([['a'], ['b'], ['c']]);
    const parked = w.parked();
    expect(parked).toHaveLength(1);
    const { key, letter } = parked[0]!;
    expect(key).toBe(URL_);
    expect(letter).toMatchObject({
      stage: 'webhook',
      reason: 'refused',
      url: URL_,
      status: 400,
      delivery: w.calls[0]!.delivery,
      response: '{"error":"unknown field \\"channel\\""}',
    });
    expect(letter.transitions!.map((t) => t.id)).toEqual(['a']);
    expect(letter.transitions![0]).toEqual(expect.objectContaining({ person: 'p-a', topic: 'product:sku-1', to: 'intro' }));
    expect(typeof letter.rt).toBe('number');
    expect(letter.detail).toContain('400');

    // Counters: one parked, two delivered, no retries.
    expect(await w.value('clickfold_webhook_parked_total', { url: URL_ })).toBe(1);
    expect(await w.value('clickfold_webhook_delivered_total', { url: URL_ })).toBe(2);
    expect(await w.metrics.registry.metrics()).toContain(`clickfold_webhook_parked_total{url="${URL_}"} 1`);
    expect((await w.metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'clickfold_webhook_retries_total')!.values).toEqual([]);
  });

  it.each([401, 403, 404, 405, 409, 410, 413, 415, 422, 451, 499])('parks a %i and goes on', async (status) => {
    const taken: string[] = [];
    const w = await setup((call) => {
      if (call.ids.includes('x')) return answer(status, `no (${status})`);
      taken.push(...call.ids);
      return answer(200, 'ok');
    });
    w.publish('x', 'y');
    await until(() => (taken.includes('y') ? true : undefined), 5000, 'y delivered');
    expect(w.calls).toHaveLength(2);
    expect(w.parked().map((p) => [p.letter.status, p.letter.response, p.letter.transitions!.map((t) => t.id)])).toEqual([[status, `no (${status})`, ['x']]]);
  });

  it('parks a request once the log takes it, retrying the write meanwhile, without sending it again', async () => {
    const log = new PartitionedLog(1);
    let refusals = 2;
    const flaky: LogProducer = {
      send: async (topic, messages) => {
        if (refusals-- > 0) throw new Error('log unavailable');
        log.append(topic, messages);
      },
      ready: () => true,
      close: async () => {},
    };
    const taken: string[] = [];
    const w = await setup(
      (call) => {
        if (call.ids.includes('a')) return answer(410, 'gone');
        taken.push(...call.ids);
        return answer(204);
      },
      { producer: flaky },
    );
    // The flaky producer writes to a log of its own: read what it parked there.
    w.publish('a', 'b');
    await until(() => (taken.includes('b') ? true : undefined), 5000, 'b delivered');
    expect(w.calls.map((c) => c.ids)).toEqual([['a'], ['b']]);
    const parked = log.read(TOPICS.webhooksParked).flat();
    expect(parked).toHaveLength(1);
    expect(DeadLetter.parse(JSON.parse(parked[0]!.value))).toMatchObject({ status: 410, response: 'gone' });
    expect(await w.value('clickfold_webhook_parked_total', { url: URL_ })).toBe(1);
  });

  it('without a producer, retries a permanent refusal (nothing lost) and counts it', async () => {
    const w = await setup((_call, n) => (n <= 3 ? answer(400, 'bad') : answer(204)), { producer: null });
    w.publish('a');
    await until(async () => ((await w.value('clickfold_webhook_delivered_total', { url: URL_ })) >= 1 ? true : undefined), 5000, 'the fourth attempt taken');
    expect(new Set(w.calls.map((c) => c.delivery)).size).toBe(1);
    expect(w.parked()).toEqual([]);
    expect(await w.value('clickfold_webhook_retries_total', { url: URL_, reason: 'http_4xx' })).toBe(3);
    expect(await w.value('clickfold_webhook_parked_total', { url: URL_ })).toBe(0);
    expect(await w.value('clickfold_webhook_delivered_total', { url: URL_ })).toBe(1);
  });
});

describe('webhooks: transient failures are retried', () => {
  const cases: [string, string, () => Response][] = [
    ['408', 'http_408', () => answer(408, 'timeout')],
    ['429', 'http_429', () => answer(429, 'slow down')],
    ['500', 'http_5xx', () => answer(500, 'boom')],
    ['503', 'http_5xx', () => answer(503)],
    ['302', 'http_3xx', () => answer(302, null, { location: 'http://elsewhere.test/' })],
    [
      'network error',
      'network',
      () => {
        throw networkError();
      },
    ],
  ];
  it.each(cases)('retries a %s with the same delivery id until a 2xx, parking nothing', async (_what, reason, fail) => {
    const w = await setup((_call, n) => (n <= 3 ? fail() : answer(204)));
    w.publish('a', 'b');
    await until(async () => ((await w.value('clickfold_webhook_delivered_total', { url: URL_ })) >= 2 ? true : undefined), 5000, 'a retried and b delivered');
    expect(w.calls.map((c) => c.ids)).toEqual([['a'], ['a'], ['a'], ['a'], ['b']]);
    expect(new Set(w.calls.slice(0, 4).map((c) => c.delivery)).size).toBe(1);
    expect(w.parked()).toEqual([]);
    expect(await w.value('clickfold_webhook_retries_total', { url: URL_, reason })).toBe(3);
    expect(await w.value('clickfold_webhook_delivered_total', { url: URL_ })).toBe(2);
    expect(await w.value('clickfold_webhook_parked_total', { url: URL_ })).toBe(0);
  });

  it('retries a request that gets no answer in time', async () => {
    // The first attempt hangs until the deliverer's timeout aborts it (as fetch does).
    const w = await setup(
      (_call, n, signal) => (n === 1 ? new Promise<Response>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))) : answer(204)),
      { timeoutMs: 50 },
    );
    w.publish('a');
    await until(() => (w.calls.length >= 2 ? true : undefined), 5000, 'the second attempt');
    expect(w.calls[1]!.delivery).toBe(w.calls[0]!.delivery);
    expect(w.calls[1]!.at - w.calls[0]!.at).toBeGreaterThanOrEqual(45);
    expect(await w.value('clickfold_webhook_retries_total', { url: URL_, reason: 'timeout' })).toBe(1);
    expect(w.parked()).toEqual([]);
  });

  it("honours a 429's Retry-After, up to the retry cap", async () => {
    // Retry-After: 1 s, cap 300 ms: waits the cap (not the 5 ms backoff, not the full second).
    const capped = await setup((_c, n) => (n === 1 ? answer(429, null, { 'retry-after': '1' }) : answer(204)), { retryMaxMs: 300 });
    capped.publish('a');
    await until(() => (capped.calls.length >= 2 ? true : undefined), 5000, 'the second attempt');
    const gap = capped.calls[1]!.at - capped.calls[0]!.at;
    expect(gap).toBeGreaterThanOrEqual(280);
    expect(gap).toBeLessThan(900);

    // Retry-After as an HTTP date 1 s ahead, cap 5 s: waits about that second.
    const dated = await setup((_c, n) => (n === 1 ? answer(429, null, { 'retry-after': new Date(Date.now() + 1500).toUTCString() }) : answer(204)), {
      retryMaxMs: 5000,
    });
    dated.publish('b');
    await until(() => (dated.calls.length >= 2 ? true : undefined), 5000, 'the second attempt');
    expect(dated.calls[1]!.at - dated.calls[0]!.at).toBeGreaterThanOrEqual(450);
  });
});

describe('webhooks: the parked excerpt is bounded', () => {
  it('reads at most about 1 KB of a huge refusal body, never the whole of it', async () => {
    let pulled = 0;
    const endless = () =>
      new ReadableStream<Uint8Array>({
        pull(c) {
          // An endless body: reading it whole would never end.
          pulled += 300;
          c.enqueue(new TextEncoder().encode('x'.repeat(300)));
        },
      });
    const taken: string[] = [];
    const w = await setup((call) => {
      if (call.ids.includes('a')) return new Response(endless(), { status: 413 });
      taken.push(...call.ids);
      return answer(204);
    });
    w.publish('a', 'b');
    await until(() => (taken.includes('b') ? true : undefined), 5000, 'b delivered');
    const parked = w.parked();
    expect(parked).toHaveLength(1);
    const letter: DeadLetter = parked[0]!.letter;
    expect(letter.status).toBe(413);
    expect(letter.response).toBe(`${'x'.repeat(1024)}…`);
    expect(pulled).toBeLessThanOrEqual(1024 + 3 * 300);
  });

  it('cuts at a character boundary and marks only a cut', async () => {
    const utf8 = await readExcerpt(new Response('é'.repeat(1000)));
    expect(utf8).toBe(`${'é'.repeat(512)}…`);
    const odd = await readExcerpt(new Response(`x${'é'.repeat(1000)}`));
    expect(odd).toBe(`x${'é'.repeat(511)}…`);
    expect(odd).not.toContain('\uFFFD');
    expect(await readExcerpt(new Response('y'.repeat(1024)))).toBe('y'.repeat(1024));
    expect(await readExcerpt(new Response('y'.repeat(1025)))).toBe(`${'y'.repeat(1024)}…`);
    expect(await readExcerpt(new Response(null, { status: 404 }))).toBe('');
    expect(await readExcerpt(new Response('short', { status: 404 }), 3)).toBe('sho…');
  });
});

describe('webhooks: helpers', () => {
  it('reads Retry-After as seconds or an HTTP date', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
    expect(parseRetryAfter('-5', now)).toBeUndefined();
  });

  it('labels metrics with the URL without credentials, query or fragment', () => {
    expect(urlLabel('https://user:pw@hooks.example.com/in/clickfold?token=s3cret#x')).toBe('https://hooks.example.com/in/clickfold');
    expect(urlLabel(URL_)).toBe(URL_);
  });
});
