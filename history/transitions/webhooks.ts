import { createHash, randomUUID } from 'node:crypto';
import { Counter, Registry } from 'prom-client';
import { z } from 'zod';
import { DeadLetter } from '../../contract/dead-letter.js';
import { TOPICS } from '../../contract/raw-event.js';
import { EVENT_KINDS, type EventKind, type HistoryEvent, kindOf } from '../../contract/transition.js';
import { type Log, type LogProducer, pause } from '../../lib/log.js';
import type { Logger } from '../../lib/logger.js';
import { parseHistoryEvent, transitionLog } from './log.js';
import { SIGNATURE_HEADER, signWebhook } from './webhook-signature.js';

/**
 * Webhooks: the events of `history.transitions` each receiver asked for, POSTed as JSON to its
 * URL, signed (webhook-signature.ts).
 *
 *   POST <url>
 *   content-type: application/json
 *   x-clickfold-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
 *   x-clickfold-delivery: <uuid, the same on every retry of this request>
 *   {"transitions": [<event as published>, …]}   (up to 100, in log order)
 *
 * A receiver takes the kinds it was configured with (`WebhookTarget.kinds`), by default `stage`
 * alone: stage transitions `{"id", "person", "topic", "from", "to", "at", "channel"}` (no `kind`),
 * exactly what every receiver got before stalls and audiences shared the topic. One that opts in
 * also gets stalls `{"kind": "stalled", "id", "person", "topic", "stage", "rule", "since", "at"}`
 * and audience changes `{"kind": "entered"|"exited", "id", "audience", "person", "at"}`, in the
 * same array (the envelope keeps the topic's name): an element's `kind` says which it is.
 *
 * Each URL has a consumer of its own on `history.transitions` (on Kafka, consumer group
 * `<KAFKA_GROUP_ID>-webhook-<hash of the URL>`), so a receiver that is down holds back only its own
 * deliveries, and the fold never waits for any. A request is retried until the receiver answers
 * 2xx, with a pause that doubles from 250 ms up to WEBHOOK_RETRY_MAX_MS (a 429's Retry-After is
 * honoured up to that cap); only then is the log offset committed. So each event reaches each
 * receiver once while nothing crashes, also after the receiver was down for hours. After a crash
 * (of this process, or a receiver that took a request but answered too late), or when an API
 * process joins or leaves the group in the middle of a delivery, a request may come again:
 * receivers drop repeats by event id.
 *
 * A receiver that refuses a request for good (any 4xx but 408 and 429) would block its URL forever
 * if that request were retried: it is parked instead, as a DeadLetter record (stage `webhook`,
 * reason `refused`, with the URL, the status, the delivery id, an excerpt of the answer's body and
 * the events, under `transitions`) on `history.webhooks.parked`, keyed by URL; once the log
 * acknowledged it the offset is committed and delivery goes on. 3xx, 408, 429, 5xx, timeouts and network errors are
 * retried. Without a producer (`WebhookOptions.producer`) nothing is parked: a refused request is
 * retried like a 5xx, and a warning says so.
 *
 * A new URL starts with the events from when it was first configured. Its consumer group is named
 * after the URL alone, so changing its kinds keeps its place in the log.
 */

/** A receiver: where to POST, and which kinds of events it takes. */
export const WebhookTarget = z.object({
  url: z
    .string()
    .regex(/^https?:\/\/[^\s#]+$/, 'an http:// or https:// URL')
    .refine((u) => URL.canParse(u), 'not a URL'),
  kinds: z
    .array(z.enum(EVENT_KINDS))
    .min(1, 'name at least one kind')
    .default(['stage'])
    .transform((k) => [...new Set(k)]),
});
export type WebhookTarget = z.infer<typeof WebhookTarget>;

/**
 * One entry of WEBHOOK_URLS: `<url>`, or `<url>#kinds=<kind>+<kind>…` (kinds among stage, stalled,
 * entered, exited). A fragment is never sent in a request, so it is free to carry the receiver's
 * own settings; the URL is kept byte for byte as written, since its consumer group is named
 * after it (a receiver configured before kinds existed keeps its group, and its place in the log).
 */
export const WebhookEntry = z
  .string()
  .trim()
  .transform((entry, ctx) => {
    const hash = entry.indexOf('#');
    if (hash < 0) return { url: entry };
    const m = /^kinds=([a-z]+(?:\+[a-z]+)*)$/.exec(entry.slice(hash + 1));
    if (!m) {
      ctx.addIssue({ code: 'custom', message: `the only fragment a webhook URL may carry is #kinds=<kind>+<kind>… (kinds: ${EVENT_KINDS.join(', ')})` });
      return z.NEVER;
    }
    return { url: entry.slice(0, hash), kinds: m[1]!.split('+') };
  })
  .pipe(WebhookTarget);

/** Every receiver, each URL once (two entries of one URL would share, and split, its consumer group). */
export const WebhookTargets = z.array(WebhookTarget).superRefine((targets, ctx) => {
  const seen = new Set<string>();
  targets.forEach((t, i) => {
    if (seen.has(t.url)) ctx.addIssue({ code: 'custom', path: [i], message: 'this URL is configured more than once' });
    seen.add(t.url);
  });
});

/**
 * The receivers, validated: throws naming each bad entry by position and URL label (never the
 * credentials a URL may hold).
 */
export function parseWebhookTargets(entries: readonly (string | WebhookTarget)[], name = 'webhook URLs'): WebhookTarget[] {
  const problems: string[] = [];
  const problem = (at: number, message: string) => {
    const entry = entries[at]!;
    problems.push(`  ${name} entry ${at + 1} (${urlLabel(typeof entry === 'string' ? entry : entry.url)}): ${message}`);
  };
  // Entry by entry, so that a bad one is told by what is wrong with it.
  const targets = entries.flatMap((entry, at) => {
    const r = typeof entry === 'string' ? WebhookEntry.safeParse(entry) : WebhookTarget.safeParse(entry);
    if (r.success) return [r.data];
    for (const i of r.error.issues) problem(at, i.path.length > 0 ? `${i.path.join('.')}: ${i.message}` : i.message);
    return [];
  });
  if (problems.length === 0) {
    const r = WebhookTargets.safeParse(targets);
    if (r.success) return r.data;
    for (const i of r.error.issues) problem(Number(i.path[0]), i.message);
  }
  throw new Error(`invalid configuration:\n${problems.join('\n')}`);
}

export interface WebhookOptions {
  /** The receivers: targets, or entries as WEBHOOK_URLS writes them (`<url>[#kinds=<kind>+…]`); validated at start. */
  urls: readonly (string | WebhookTarget)[];
  secret: string;
  logger: Logger;
  /** Writes parked requests to `history.webhooks.parked`. Without it a refused request is retried forever. */
  producer?: LogProducer;
  /** Counters (createWebhookMetrics); without them, counters on a registry nobody reads. */
  metrics?: WebhookMetrics;
  /** Longest pause between attempts, ms. */
  retryMaxMs?: number;
  retryInitialMs?: number;
  /** Events per request. */
  maxBatch?: number;
  /** Per request. */
  timeoutMs?: number;
  /** Prefix of the consumer groups (one per URL). */
  groupPrefix?: string;
  fetch?: typeof fetch;
  now?: () => number;
}

export interface RunningWebhooks {
  stop(): Promise<void>;
}

/** Bytes of a refusing answer's body read for the parked record's excerpt; the rest is never read. */
export const PARKED_RESPONSE_BYTES = 1024;

/**
 * Webhook counters, per URL (the URLs come from the configuration, so the labels are bounded; the
 * label is the URL without user info, query and fragment, which may hold credentials). Counted in
 * requests (of up to `maxBatch` events).
 */
export interface WebhookMetrics {
  readonly registry: Registry;
  /** Requests the receiver took (2xx). */
  readonly delivered: Counter<'url'>;
  /** Requests the receiver refused for good, written to `history.webhooks.parked`. */
  readonly parked: Counter<'url'>;
  /** Failed attempts that will be tried again, by reason (`http_5xx`, `http_429`, `http_408`, `http_3xx`, `http_4xx` when nothing can be parked, `timeout`, `network`). */
  readonly retries: Counter<'url' | 'reason'>;
}

/** The webhook counters, registered on `registry` (a fresh one by default). Call once per registry. */
export function createWebhookMetrics(registry: Registry = new Registry()): WebhookMetrics {
  const registers = [registry];
  return {
    registry,
    delivered: new Counter({
      name: 'clickfold_webhook_delivered_total',
      help: 'Webhook requests the receiver took (2xx), per URL',
      labelNames: ['url'],
      registers,
    }),
    parked: new Counter({
      name: 'clickfold_webhook_parked_total',
      help: 'Webhook requests the receiver refused for good (4xx but 408/429), parked on history.webhooks.parked, per URL',
      labelNames: ['url'],
      registers,
    }),
    retries: new Counter({
      name: 'clickfold_webhook_retries_total',
      help: 'Failed webhook attempts that are tried again, per URL and reason',
      labelNames: ['url', 'reason'],
      registers,
    }),
  };
}

/** The URL as a metric label: without user info, query and fragment. */
export function urlLabel(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    u.search = '';
    u.hash = '';
    return u.toString();
  } catch {
    return url.replace(/[?#].*$/, '');
  }
}

/** The consumer group of one URL: stable across restarts, different for every URL. */
export const webhookGroup = (prefix: string, url: string) => `${prefix}-webhook-${createHash('sha256').update(url).digest('hex').slice(0, 12)}`;

/** A permanent refusal: any 4xx but 408 Request Timeout and 429 Too Many Requests. */
export const isPermanentRefusal = (status: number) => status >= 400 && status < 500 && status !== 408 && status !== 429;

/** Retry-After (delay-seconds or an HTTP date) in ms from `now`, or undefined when absent or unreadable. */
export function parseRetryAfter(header: string | null | undefined, now: number): number | undefined {
  const s = header?.trim();
  if (!s) return undefined;
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  // An HTTP date names its day and month (Date.parse alone would take "1.5" or "-5" for dates).
  if (!/[a-z]{3}/i.test(s)) return undefined;
  const at = Date.parse(s);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * The first `max` bytes of a response body as text, `…` appended when there was more. Reads the
 * stream only until it holds more than `max` bytes (at most one chunk beyond), then cancels it:
 * a huge or endless answer is never read whole. An incomplete UTF-8 sequence at the cut is dropped.
 */
export async function readExcerpt(res: Response, max = PARKED_RESPONSE_BYTES): Promise<string> {
  const reader = res.body?.getReader();
  if (!reader) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  let ended = false;
  try {
    while (size <= max) {
      const { done, value } = await reader.read();
      if (done) {
        ended = true;
        break;
      }
      chunks.push(value);
      size += value.byteLength;
    }
  } catch {
    // The body broke off (or timed out): keep what came.
  } finally {
    reader.cancel().catch(() => {});
  }
  const bytes = new Uint8Array(Math.min(size, max));
  let at = 0;
  for (const c of chunks) {
    if (at >= bytes.length) break;
    const part = c.subarray(0, bytes.length - at);
    bytes.set(part, at);
    at += part.byteLength;
  }
  const cut = size > max || !ended;
  // `stream: true` holds back a multi-byte character the cut split in two.
  const text = new TextDecoder('utf-8').decode(bytes, { stream: cut });
  return cut ? `${text}…` : text;
}

type Attempt =
  | { kind: 'ok'; status: number }
  /** Refused for good: park. */
  | { kind: 'refused'; status: number; excerpt: string }
  | { kind: 'retry'; why: string; reason: string; retryAfterMs?: number };

/** What became of a batch: taken (2xx), parked (refused for good), or left uncommitted (stopping). */
export type DeliveryOutcome = 'delivered' | 'parked' | 'stopped';

export interface DeliveryControl {
  signal: AbortSignal;
  heartbeat(): Promise<void>;
  stopped(): boolean;
}

/** Delivers batches to one URL, retrying each until a 2xx, or parking it on a permanent refusal. */
export class WebhookDeliverer {
  private readonly fetch: typeof fetch;
  private readonly now: () => number;
  private readonly retryMaxMs: number;
  private readonly retryInitialMs: number;
  private readonly timeoutMs: number;
  private readonly metrics: WebhookMetrics;
  private readonly label: string;

  constructor(
    readonly url: string,
    private readonly opts: WebhookOptions,
  ) {
    this.fetch = opts.fetch ?? fetch;
    this.now = opts.now ?? Date.now;
    this.retryMaxMs = opts.retryMaxMs ?? 60_000;
    this.retryInitialMs = Math.min(opts.retryInitialMs ?? 250, this.retryMaxMs);
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.metrics = opts.metrics ?? createWebhookMetrics();
    this.label = urlLabel(url);
  }

  /** One attempt: taken, refused for good (with an excerpt of the answer), or to be retried. */
  private async attempt(body: string, delivery: string, signal: AbortSignal): Promise<Attempt> {
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'clickfold-webhooks/1',
      [SIGNATURE_HEADER]: signWebhook(this.opts.secret, body, Math.floor(this.now() / 1000)),
      'x-clickfold-delivery': delivery,
    };
    try {
      const res = await this.fetch(this.url, {
        method: 'POST',
        headers,
        body,
        redirect: 'manual',
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.timeoutMs)]),
      });
      const status = res.status;
      if (status >= 200 && status < 300) {
        await res.body?.cancel().catch(() => {});
        return { kind: 'ok', status };
      }
      if (isPermanentRefusal(status) && this.opts.producer) return { kind: 'refused', status, excerpt: await readExcerpt(res) };
      await res.body?.cancel().catch(() => {});
      const reason = status === 408 || status === 429 ? `http_${status}` : `http_${Math.floor(status / 100)}xx`;
      const retryAfterMs = status === 429 ? parseRetryAfter(res.headers.get('retry-after'), this.now()) : undefined;
      return { kind: 'retry', why: `HTTP ${status}`, reason, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
    } catch (err) {
      const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
      if (e.name === 'TimeoutError') return { kind: 'retry', why: `no answer within ${this.timeoutMs} ms`, reason: 'timeout' };
      return { kind: 'retry', why: e.cause?.code ?? e.cause?.message ?? e.message ?? String(err), reason: 'network' };
    }
  }

  /** Waits about `ms` in slices, keeping the Kafka group membership alive; returns early when stopping. */
  private async wait(ms: number, ctl: DeliveryControl): Promise<void> {
    const until = Date.now() + ms;
    while (Date.now() < until && !ctl.signal.aborted && !ctl.stopped()) {
      await pause(Math.min(2000, until - Date.now()), ctl.signal);
      await ctl.heartbeat().catch(() => {});
    }
  }

  /**
   * Sends `events` until the receiver takes them or refuses them for good. Resolves
   * `delivered` once it answered 2xx, `parked` once a permanent refusal is on
   * `history.webhooks.parked`, `stopped` if `stopped()` turned true first (stop or rebalance: the
   * batch stays uncommitted).
   */
  async deliver(events: readonly HistoryEvent[], ctl: DeliveryControl): Promise<DeliveryOutcome> {
    const body = JSON.stringify({ transitions: events });
    const delivery = randomUUID();
    const log = this.opts.logger;
    let pause = this.retryInitialMs;
    for (let attempt = 1; ; attempt++) {
      if (ctl.stopped() || ctl.signal.aborted) return 'stopped';
      const r = await this.attempt(body, delivery, ctl.signal);
      if (r.kind === 'ok') {
        this.metrics.delivered.inc({ url: this.label });
        if (attempt > 1) log.info({ url: this.url, attempts: attempt, events: events.length }, 'webhook delivered after retries');
        return 'delivered';
      }
      if (r.kind === 'refused') return (await this.park(events, delivery, r, attempt, ctl)) ? 'parked' : 'stopped';
      if (ctl.signal.aborted) return 'stopped';
      // A permanent refusal comes here only without a producer: nowhere to park it.
      if (r.reason === 'http_4xx' && (attempt === 1 || attempt % 10 === 0)) {
        log.error(
          { url: this.url, attempt, answer: r.why, delivery },
          'webhook receiver refused a request for good, and no producer is configured to park it: retrying, which holds back this URL',
        );
      }
      this.metrics.retries.inc({ url: this.label, reason: r.reason });
      // A 429's Retry-After is honoured up to the cap, never waiting less than the backoff.
      const backoff = pause * (0.8 + Math.random() * 0.4);
      const waitMs = r.retryAfterMs === undefined ? backoff : Math.max(backoff, Math.min(r.retryAfterMs, this.retryMaxMs));
      if (attempt === 1 || attempt % 10 === 0)
        log.warn({ url: this.url, attempt, reason: r.why, retryInMs: Math.round(waitMs) }, 'webhook delivery failed; retrying');
      await this.wait(waitMs, ctl);
      pause = Math.min(pause * 2, this.retryMaxMs);
    }
  }

  /**
   * Writes the refused request to `history.webhooks.parked`, retrying the write (with the same
   * backoff) while the log does not take it. True once written; false if stopping first, the batch
   * then stays uncommitted and is sent again later.
   */
  private async park(
    events: readonly HistoryEvent[],
    delivery: string,
    r: { status: number; excerpt: string },
    attempts: number,
    ctl: DeliveryControl,
  ): Promise<boolean> {
    const producer = this.opts.producer!;
    const log = this.opts.logger;
    // The events go in as they were sent (each one already passed HistoryEvent when read), not
    // through DeadLetter's `transitions` schema, which knows stage transitions alone.
    const letter = {
      ...DeadLetter.parse({
        stage: 'webhook',
        reason: 'refused',
        detail: `the receiver answered HTTP ${r.status} (permanent) on attempt ${attempts}; the request was parked and delivery went on`,
        url: this.url,
        status: r.status,
        delivery,
        response: r.excerpt,
        rt: this.now(),
      } satisfies DeadLetter),
      transitions: [...events],
    };
    const message = { key: this.url, value: JSON.stringify(letter) };
    let pause = this.retryInitialMs;
    for (let attempt = 1; ; attempt++) {
      try {
        // Tried once even while stopping: the receiver has answered, and the chunk is committed after it.
        await producer.send(TOPICS.webhooksParked, [message]);
        this.metrics.parked.inc({ url: this.label });
        log.warn(
          { url: this.url, status: r.status, delivery, events: events.length, response: r.excerpt.slice(0, 200) },
          'webhook receiver refused a request for good: parked it on history.webhooks.parked, going on',
        );
        return true;
      } catch (err) {
        if (ctl.stopped() || ctl.signal.aborted) return false;
        if (attempt === 1 || attempt % 10 === 0)
          log.error({ err, url: this.url, delivery, attempt, retryInMs: pause }, 'could not park a refused webhook request; retrying');
      }
      await this.wait(pause * (0.8 + Math.random() * 0.4), ctl);
      if (ctl.stopped() || ctl.signal.aborted) return false;
      pause = Math.min(pause * 2, this.retryMaxMs);
    }
  }
}

/** Starts one consumer per URL on `history.transitions` of the log (a group per URL: `webhookGroup`). */
export async function startWebhooks(log: Log, opts: WebhookOptions): Promise<RunningWebhooks> {
  if (opts.urls.length === 0) return { stop: async () => {} };
  const targets = parseWebhookTargets(opts.urls);
  if (opts.secret.length < 16) throw new Error('WEBHOOK_SECRET must be set (16 characters or more) to sign webhook deliveries');
  const urls = targets.map((t) => t.url);
  if (!opts.producer)
    opts.logger.warn({ urls }, 'webhooks have no producer for history.webhooks.parked: a request a receiver refuses for good (4xx) is retried forever');
  const shared: WebhookOptions = { ...opts, metrics: opts.metrics ?? createWebhookMetrics() };
  const abort = new AbortController();
  const maxBatch = opts.maxBatch ?? 100;
  const prefix = opts.groupPrefix ?? 'clickfold';
  const running: { stop(): Promise<void> }[] = [];
  const transitions = transitionLog(log, { logger: opts.logger });
  try {
    for (const { url, kinds } of targets) {
      const deliverer = new WebhookDeliverer(url, shared);
      const wanted = new Set<EventKind>(kinds);
      // Events are published again after a worker crash (same id): skip what this process sent (or parked).
      const sent = new Set<string>();
      const remember = (id: string) => {
        sent.add(id);
        if (sent.size > 10_000) sent.delete(sent.values().next().value!);
      };
      const consumer = await transitions.consume(webhookGroup(prefix, url), async (records, ctl) => {
        for (let i = 0; i < records.length; i += maxBatch) {
          const chunk = records.slice(i, i + maxBatch);
          const fresh = chunk.flatMap((r) => parseHistoryEvent(r.value, opts.logger) ?? []).filter((e) => wanted.has(kindOf(e)) && !sent.has(e.id));
          if (fresh.length > 0) {
            const outcome = await deliverer.deliver(fresh, { signal: abort.signal, heartbeat: ctl.heartbeat, stopped: ctl.stopped });
            if (outcome === 'stopped') return;
            for (const e of fresh) remember(e.id);
          }
          // Commit what was delivered (or parked, or not wanted) even when stopping; after a rebalance the commit may be
          // refused, and the partition's new owner sends the chunk again (receivers drop repeats by id).
          try {
            await ctl.commit(chunk[chunk.length - 1]!.offset);
          } catch (err) {
            if (!ctl.stopped()) throw err;
            opts.logger.debug({ err, url }, 'could not commit a delivered chunk while the partition moved');
            return;
          }
          if (ctl.stopped()) return;
        }
      });
      running.push(consumer);
    }
  } catch (err) {
    abort.abort();
    await Promise.allSettled(running.map((r) => r.stop()));
    throw err;
  }
  opts.logger.info(
    { webhooks: targets.map((t) => ({ url: urlLabel(t.url), kinds: t.kinds })), parking: Boolean(opts.producer) },
    'delivering history.transitions to webhooks',
  );
  return {
    stop: async () => {
      abort.abort();
      await Promise.allSettled(running.map((r) => r.stop()));
    },
  };
}
