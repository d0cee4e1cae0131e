import { createHash, randomUUID } from 'node:crypto';
import type { Transition } from '../contract/transition.js';
import type { Logger } from '../lib/logger.js';
import { parseTransition, type TransitionLog } from './transition-log.js';
import { SIGNATURE_HEADER, signWebhook } from './webhook-signature.js';

/**
 * Webhooks: every transition, POSTed as JSON to each configured URL, signed (webhook-signature.ts).
 *
 *   POST <url>
 *   content-type: application/json
 *   x-clickfold-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
 *   x-clickfold-delivery: <uuid, the same on every retry of this request>
 *   {"transitions": [{"id", "person", "topic", "from", "to", "at", "channel"}, …]}   (up to 100)
 *
 * Each URL has a consumer of its own on `history.transitions` (on Kafka, consumer group
 * `<KAFKA_GROUP_ID>-webhook-<hash of the URL>`), so a receiver that is down holds back only its own
 * deliveries, and the fold never waits for any. A request is retried until the receiver answers
 * 2xx, with a pause that doubles from 250 ms up to WEBHOOK_RETRY_MAX_MS; only then is the log
 * offset committed. So each transition reaches each receiver once while nothing crashes, also
 * after the receiver was down for hours. After a crash (of this process, or a receiver that took a
 * request but answered too late), or when an API process joins or leaves the group in the middle of
 * a delivery, a request may come again: receivers drop repeats by transition id.
 * A new URL starts with the transitions from when it was first configured.
 */
export interface WebhookOptions {
  urls: readonly string[];
  secret: string;
  logger: Logger;
  /** Longest pause between attempts, ms. */
  retryMaxMs?: number;
  retryInitialMs?: number;
  /** Transitions per request. */
  maxBatch?: number;
  /** Per request. */
  timeoutMs?: number;
  /** Prefix of the consumer groups (Kafka). */
  groupPrefix?: string;
  fetch?: typeof fetch;
  now?: () => number;
}

export interface RunningWebhooks {
  stop(): Promise<void>;
}

/** The consumer group of one URL: stable across restarts, different for every URL. */
export const webhookGroup = (prefix: string, url: string) => `${prefix}-webhook-${createHash('sha256').update(url).digest('hex').slice(0, 12)}`;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });

/** Delivers batches to one URL, retrying each until a 2xx. */
export class WebhookDeliverer {
  private readonly fetch: typeof fetch;
  private readonly now: () => number;
  private readonly retryMaxMs: number;
  private readonly retryInitialMs: number;
  private readonly timeoutMs: number;

  constructor(
    readonly url: string,
    private readonly opts: WebhookOptions,
  ) {
    this.fetch = opts.fetch ?? fetch;
    this.now = opts.now ?? Date.now;
    this.retryMaxMs = opts.retryMaxMs ?? 60_000;
    this.retryInitialMs = Math.min(opts.retryInitialMs ?? 250, this.retryMaxMs);
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /** One attempt: the status, or the network error's message. */
  private async attempt(body: string, delivery: string, signal: AbortSignal): Promise<{ ok: boolean; why: string }> {
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'clickfold-webhooks/1',
      [SIGNATURE_HEADER]: signWebhook(this.opts.secret, body, Math.floor(this.now() / 1000)),
      'x-clickfold-delivery': delivery,
    };
    try {
      const res = await this.fetch(this.url, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.any([signal, AbortSignal.timeout(this.timeoutMs)]) });
      await res.body?.cancel().catch(() => {});
      return { ok: res.status >= 200 && res.status < 300, why: `HTTP ${res.status}` };
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      return { ok: false, why: cause?.code ?? cause?.message ?? (err as Error).message };
    }
  }

  /**
   * Sends `transitions` until the receiver takes them. Resolves true once it answered 2xx, false if
   * `stopped()` turned true first (stop or rebalance: the batch stays uncommitted).
   */
  async deliver(transitions: readonly Transition[], ctl: { signal: AbortSignal; heartbeat(): Promise<void>; stopped(): boolean }): Promise<boolean> {
    const body = JSON.stringify({ transitions });
    const delivery = randomUUID();
    const log = this.opts.logger;
    let pause = this.retryInitialMs;
    for (let attempt = 1; ; attempt++) {
      if (ctl.stopped() || ctl.signal.aborted) return false;
      const r = await this.attempt(body, delivery, ctl.signal);
      if (r.ok) {
        if (attempt > 1) log.info({ url: this.url, attempts: attempt, transitions: transitions.length }, 'webhook delivered after retries');
        return true;
      }
      if (ctl.signal.aborted) return false;
      if (attempt === 1 || attempt % 10 === 0) log.warn({ url: this.url, attempt, reason: r.why, retryInMs: pause }, 'webhook delivery failed; retrying');
      // Wait in slices, keeping the Kafka group membership alive.
      const until = Date.now() + pause * (0.8 + Math.random() * 0.4);
      while (Date.now() < until && !ctl.signal.aborted && !ctl.stopped()) {
        await sleep(Math.min(2000, until - Date.now()), ctl.signal);
        await ctl.heartbeat().catch(() => {});
      }
      pause = Math.min(pause * 2, this.retryMaxMs);
    }
  }
}

/** Starts one consumer per URL on the transition log. */
export async function startWebhooks(log: TransitionLog, opts: WebhookOptions): Promise<RunningWebhooks> {
  if (opts.urls.length === 0) return { stop: async () => {} };
  if (opts.secret.length < 16) throw new Error('WEBHOOK_SECRET must be set (16 characters or more) to sign webhook deliveries');
  const abort = new AbortController();
  const maxBatch = opts.maxBatch ?? 100;
  const prefix = opts.groupPrefix ?? 'clickfold';
  const running: { stop(): Promise<void> }[] = [];
  try {
    for (const url of opts.urls) {
      const deliverer = new WebhookDeliverer(url, opts);
      // Transitions are published again after a worker crash (same id): skip what this process sent.
      const sent = new Set<string>();
      const remember = (id: string) => {
        sent.add(id);
        if (sent.size > 10_000) sent.delete(sent.values().next().value!);
      };
      const consumer = await log.consume(webhookGroup(prefix, url), async (records, ctl) => {
        for (let i = 0; i < records.length; i += maxBatch) {
          const chunk = records.slice(i, i + maxBatch);
          const fresh = chunk.flatMap((r) => parseTransition(r.value, opts.logger) ?? []).filter((t) => !sent.has(t.id));
          if (fresh.length > 0) {
            const delivered = await deliverer.deliver(fresh, { signal: abort.signal, heartbeat: ctl.heartbeat, stopped: ctl.stopped });
            if (!delivered) return;
            fresh.forEach((t) => remember(t.id));
          }
          // Commit what was delivered even when stopping; after a rebalance the commit may be
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
  opts.logger.info({ urls: opts.urls }, 'delivering transitions to webhooks');
  return {
    stop: async () => {
      abort.abort();
      await Promise.allSettled(running.map((r) => r.stop()));
    },
  };
}
