import { afterEach, describe, expect, it } from 'vitest';
import { TOPICS } from '../../contract/raw-event.js';
import type { AudienceEvent, HistoryEvent, StallEvent, Transition } from '../../contract/transition.js';
import { verifyWebhook } from '../../history/transitions/webhook-signature.js';
import { parseWebhookTargets, type RunningWebhooks, startWebhooks, webhookGroup } from '../../history/transitions/webhooks.js';
import { webhookTargetsFromEnv } from '../../apps/shared/webhooks.js';
import { parseEnv } from '../../lib/config.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import { captureLogs } from '../support/log-capture.js';

/**
 * Which events each webhook receiver gets: by default stage transitions alone (what every receiver
 * got before stalls and audiences shared history.transitions), or the kinds its entry opts into
 * (`<url>#kinds=stalled+entered`). A record that is no event is skipped; delivery goes on.
 */
const SECRET = 'unit-webhook-secret-0123456789';
const T = 'product:sku-1';
const transition = (id: string): Transition => ({ id, person: 'ann', topic: T, from: null, to: 'intro', at: 10, channel: 'web' });
const stall = (id: string): StallEvent => ({ kind: 'stalled', id, person: 'ann', topic: T, stage: 'intro', rule: 'quiet', since: 5, at: 20 });
const audience = (id: string, kind: 'entered' | 'exited' = 'entered'): AudienceEvent => ({ kind, id, audience: 'hesitant', person: 'ann', at: 30 });

interface Request {
  url: string;
  body: string;
  events: HistoryEvent[];
}

const running: RunningWebhooks[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.stop()));
});

const until = async <T>(check: () => T | undefined, what: string, timeoutMs = 5000): Promise<T> => {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

async function setup(urls: string[], respond: (r: Request) => Response = () => new Response(null, { status: 204 })) {
  const log = new PartitionedLog(2);
  const requests: Request[] = [];
  const fakeFetch = (async (url: string | URL | Request, init?: RequestInit) => {
    const body = String(init!.body);
    const r = { url: String(url), body, events: (JSON.parse(body) as { transitions: HistoryEvent[] }).transitions };
    expect(verifyWebhook(SECRET, (init!.headers as Record<string, string>)['x-clickfold-signature'], body).ok).toBe(true);
    requests.push(r);
    return respond(r);
  }) as typeof fetch;
  const { logger, lines } = captureLogs('warn');
  const webhooks = await startWebhooks(log, { urls, secret: SECRET, logger, fetch: fakeFetch, producer: log.producer(), retryInitialMs: 5, retryMaxMs: 20 });
  running.push(webhooks);
  const append = (...values: (HistoryEvent | string)[]) =>
    log.append(
      TOPICS.transitions,
      values.map((v) => ({ key: 'ann', value: typeof v === 'string' ? v : JSON.stringify(v) })),
    );
  const received = (url: string) => requests.filter((r) => r.url === url).flatMap((r) => r.events);
  return { log, requests, append, received, lines };
}

describe('webhooks: kinds per receiver', () => {
  const DEFAULT = 'http://receiver.test/default';
  const STALLS = 'http://receiver.test/stalls';
  const MIXED = 'http://receiver.test/mixed';

  it('gives a default receiver stage transitions alone, one with kinds=stalled the stall alone, each as published', async () => {
    const w = await setup([DEFAULT, `${STALLS}#kinds=stalled`, `${MIXED}#kinds=stage+entered+exited`]);
    w.append(transition('t1'), stall('s1'), audience('a1'), audience('a2', 'exited'), transition('t2'));
    await until(() => (w.received(MIXED).length >= 4 && w.received(DEFAULT).length >= 2 && w.received(STALLS).length >= 1 ? true : undefined), 'deliveries');
    await new Promise((r) => setTimeout(r, 50));
    expect(w.received(DEFAULT)).toEqual([transition('t1'), transition('t2')]);
    expect(w.received(STALLS)).toEqual([stall('s1')]);
    expect(w.received(MIXED)).toEqual([transition('t1'), audience('a1'), audience('a2', 'exited'), transition('t2')]);
    // The fragment is configuration: never part of the request's URL.
    expect(w.requests.every((r) => !r.url.includes('#'))).toBe(true);
    // A default receiver's body is byte for byte what it was before kinds existed.
    const first = w.requests.find((r) => r.url === DEFAULT)!;
    expect(first.body).toBe(JSON.stringify({ transitions: first.events }));
    expect(first.body).not.toContain('"kind"');
  });

  it('skips a record that is no event (hostile or from elsewhere), logs it, and delivers the rest', async () => {
    const w = await setup([DEFAULT, `${STALLS}#kinds=stalled`]);
    w.append(
      '{"not":"an event"}',
      transition('t1'),
      'garbage\u0000\n',
      JSON.stringify({ ...stall('s0'), since: 'a while' }),
      JSON.stringify({ kind: 'stalled', id: 'forged' }),
      stall('s1'),
      '',
      transition('t2'),
    );
    await until(() => (w.received(DEFAULT).length >= 2 && w.received(STALLS).length >= 1 ? true : undefined), 'deliveries past the bad records');
    await new Promise((r) => setTimeout(r, 50));
    expect(w.received(DEFAULT).map((e) => e.id)).toEqual(['t1', 't2']);
    expect(w.received(STALLS).map((e) => e.id)).toEqual(['s1']);
    // Each of the two receivers' readers said so, once per bad record.
    expect(w.lines.filter((l) => String(l.msg).startsWith('skipping a record on history.transitions'))).toHaveLength(2 * 5);
  });

  it('parks a refused request of stalls whole, with its events as sent', async () => {
    const w = await setup([`${STALLS}#kinds=stalled`], (r) =>
      r.events.some((e) => e.id === 's1') ? new Response('no stalls here', { status: 422 }) : new Response(null, { status: 204 }),
    );
    w.append(stall('s1'));
    const parked = await until(() => {
      const found = w.log.read(TOPICS.webhooksParked).flat();
      return found.length > 0 ? found : undefined;
    }, 'the parked request');
    const letter = JSON.parse(parked[0]!.value) as { url: string; status: number; transitions: HistoryEvent[] };
    expect(letter).toMatchObject({ url: STALLS, status: 422, transitions: [stall('s1')] });
    expect(parked[0]!.key).toBe(STALLS);
    w.append(stall('s2'));
    await until(() => (w.received(STALLS).some((e) => e.id === 's2') ? true : undefined), 'the next stall');
  });

  it('names the consumer group after the URL alone: changing a receiver’s kinds keeps its place in the log', () => {
    const [plain, opted] = parseWebhookTargets(['http://a.test/hook', 'http://b.test/hook#kinds=stage+stalled']);
    expect(plain).toEqual({ url: 'http://a.test/hook', kinds: ['stage'] });
    expect(opted).toEqual({ url: 'http://b.test/hook', kinds: ['stage', 'stalled'] });
    expect(webhookGroup('g', opted!.url)).toBe(webhookGroup('g', 'http://b.test/hook'));
    // The URL is kept as written (no trailing slash added): the group of a receiver configured before kinds is unchanged.
    expect(parseWebhookTargets(['http://a.test'])[0]!.url).toBe('http://a.test');
  });
});

describe('webhook configuration (WEBHOOK_URLS)', () => {
  const env = (urls: string) => parseEnv({ WEBHOOK_URLS: urls, WEBHOOK_SECRET: SECRET });

  it('reads kinds per entry, stage alone by default, each kind once', () => {
    expect(webhookTargetsFromEnv(env('https://crm.test/in, https://ops.test/hook#kinds=stalled+exited+stalled'))).toEqual([
      { url: 'https://crm.test/in', kinds: ['stage'] },
      { url: 'https://ops.test/hook', kinds: ['stalled', 'exited'] },
    ]);
    expect(webhookTargetsFromEnv(env(''))).toEqual([]);
  });

  it.each([
    ['https://a.test/h#kinds=stalled+teleported', /entry 1 \(https:\/\/a\.test\/h\): kinds\.1: /],
    ['https://a.test/h#kinds=', /the only fragment a webhook URL may carry is #kinds=/],
    ['https://a.test/h#kinds=stage,https://b.test/h#section', /entry 2 \(https:\/\/b\.test\/h\): the only fragment/],
    ['https://a.test/h#KINDS=stage', /the only fragment/],
    ['https://a.test/h,https://a.test/h#kinds=stalled', /entry 2 \(https:\/\/a\.test\/h\): this URL is configured more than once/],
  ])('refuses %s at start, naming the entry', (urls, message) => {
    expect(() => webhookTargetsFromEnv(env(urls))).toThrow(message);
  });

  it('never repeats the credentials a URL holds in its error', () => {
    expect(() => webhookTargetsFromEnv(env('https://user:s3cret@a.test/h?token=abc#kinds=nope'))).toThrow(/invalid configuration/);
    try {
      webhookTargetsFromEnv(env('https://user:s3cret@a.test/h?token=abc#kinds=nope'));
    } catch (err) {
      expect(String(err)).not.toMatch(/s3cret|token=abc/);
    }
  });

  it('refuses a bad entry before any consumer starts', async () => {
    const log = new PartitionedLog(1);
    const { logger } = captureLogs();
    await expect(startWebhooks(log, { urls: ['http://a.test/h#kinds=everything'], secret: SECRET, logger })).rejects.toThrow(/WEBHOOK_URLS|webhook URLs/);
  });
});
