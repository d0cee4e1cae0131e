import type { Context } from 'hono';
import type { CollectBatch, CollectEvent } from '../contract/collect.js';
import { TOPICS, type RawEvent } from '../contract/raw-event.js';
import { LogUnavailableError, type LogMessage, type LogProducer } from '../lib/log.js';
import type { Logger } from '../lib/logger.js';
import { anonymizeIp, boundedTime, createUaParser } from './enrich.js';
import { httpError, type Issue } from './errors.js';
import { checkBatch } from './validate.js';

export interface CollectOptions {
  producer: LogProducer;
  logger: Logger;
  retryAfterSeconds: number;
  /** Returns the client address (already chosen between socket and X-Forwarded-For). */
  clientIp: (c: Context) => string | undefined;
  now?: () => number;
}

const DAY = 86_400_000;
const MAX_PAST_MS = 7 * DAY;
const MAX_FUTURE_MS = 10 * 60_000;
const DEAD_LETTER_EXCERPT = 2048;

const JSON_TYPES = /^(application\/json|text\/plain)\s*(;|$)/i;

/** `POST /v1/collect`: the snippet's batches, as JSON or as sendBeacon's text/plain. */
export function collectHandler(opts: CollectOptions) {
  const parseUa = createUaParser();
  const now = opts.now ?? Date.now;

  const deadLetter = async (site: string | undefined, reason: string, issues: Issue[], payload: unknown, rt: number) => {
    const value = JSON.stringify({ stage: 'ingest', site, reason, issues, rt, payload: excerpt(payload) });
    try {
      await opts.producer.send(TOPICS.invalid, [{ key: site ?? '', value }]);
    } catch (err) {
      // The sender still gets its 400 with the reason, so nothing vanishes silently.
      opts.logger.warn({ err, site, reason }, 'could not write a dead letter');
    }
  };

  return async (c: Context) => {
    const type = c.req.header('content-type') ?? '';
    if (!JSON_TYPES.test(type)) {
      throw httpError(415, 'unsupported_media_type', 'send the batch as application/json or text/plain');
    }
    const rt = now();
    const text = await c.req.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (err) {
      await deadLetter(undefined, 'malformed_json', [], text, rt);
      throw httpError(400, 'malformed_json', `the body is not valid JSON: ${(err as Error).message}`);
    }

    const check = checkBatch(body);
    if (!check.ok) {
      const site = typeof (body as { site?: unknown })?.site === 'string' ? (body as { site: string }).site.slice(0, 64) : undefined;
      await deadLetter(site, 'invalid_batch', check.issues, body, rt);
      throw httpError(400, 'invalid_batch', 'the batch envelope is invalid', { issues: check.issues });
    }

    const { batch, events, rejected } = check;
    const ua = parseUa(c.req.header('user-agent'));
    const ip = anonymizeIp(opts.clientIp(c));
    const messages = events.map((e) => toMessage(batch, e, rt, ua.ua, ua.bot, ip));

    const deadLetters = rejected.map((r) => deadLetter(batch.site, 'invalid_event', r.issues, r.event, rt));
    if (messages.length > 0) {
      try {
        await opts.producer.send(TOPICS.raw, messages);
      } catch (err) {
        if (!(err instanceof LogUnavailableError)) throw err;
        opts.logger.warn({ err: err.message, site: batch.site, events: messages.length }, 'Kafka unavailable, answering 503');
        throw httpError(503, 'unavailable', 'events could not be stored right now; retry later', {
          headers: { 'retry-after': String(opts.retryAfterSeconds) },
        });
      }
    }
    await Promise.all(deadLetters);

    if (rejected.length > 0) {
      const message =
        messages.length > 0
          ? `${rejected.length} of ${batch.events.length} events are invalid; the other ${messages.length} were accepted`
          : `${rejected.length === 1 ? 'the event is' : `all ${rejected.length} events are`} invalid; nothing was accepted`;
      throw httpError(400, 'invalid_event', message, {
        issues: rejected.flatMap((r) => r.issues),
        body: { accepted: messages.length, rejected: rejected.map((r) => r.index) },
      });
    }
    return c.json({ accepted: messages.length }, 202);
  };
}

function toMessage(
  batch: CollectBatch,
  e: CollectEvent,
  rt: number,
  ua: RawEvent['ua'],
  bot: boolean,
  ip: string | undefined,
): LogMessage {
  // identify() names the known person; until then the visitor id is the person.
  const user = e.type === 'identify' ? e.user : batch.user;
  const person = user ?? batch.visitor;
  const raw: RawEvent = {
    v: 1,
    id: e.id,
    site: batch.site,
    person,
    visitor: batch.visitor,
    user,
    session: batch.session,
    channel: 'web',
    type: e.type,
    name: e.type === 'track' ? e.name : undefined,
    ts: boundedTime(e.ts, rt, MAX_PAST_MS, MAX_FUTURE_MS),
    rt,
    url: e.url,
    ref: e.type === 'page' ? e.ref : undefined,
    title: e.type === 'page' ? e.title : undefined,
    topic: e.topic,
    stage: e.stage,
    el: e.type === 'click' ? e.el : undefined,
    props: e.props,
    value: e.value,
    ua,
    ip,
    bot: bot || undefined,
  };
  return { key: person, value: JSON.stringify(raw) };
}

function excerpt(payload: unknown): string {
  const s = typeof payload === 'string' ? payload : JSON.stringify(payload);
  return s.length > DEAD_LETTER_EXCERPT ? `${s.slice(0, DEAD_LETTER_EXCERPT)}…` : s;
}
