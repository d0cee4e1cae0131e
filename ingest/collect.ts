import { Hono, type Context } from 'hono';
import type { CollectBatch, CollectEvent } from '../contract/collect.js';
import { limitBody, readJsonBody } from './body.js';
import { enforceLimits, requestRef, type IngestEnv, type RouteDeps } from './context.js';
import { anonymizeIp } from './enrich.js';
import { httpError } from '../lib/http-errors.js';
import { instrument, type IngestMetrics } from './metrics.js';
import { siteCors } from './site-cors.js';
import { applyBotPolicy, toRawMessage, type Enrichment, type EventInput } from './raw.js';
import type { Rejection } from './sink.js';
import type { Site } from './sites.js';
import { checkBatch, type IndexedEvent } from './validate.js';

export interface CollectOptions {
  maxBodyBytes: number;
  metrics: IngestMetrics;
}

const ROUTE = '/v1/collect';

/** `/v1/collect` with its middleware: request id and metrics, CORS per site, the byte limit. */
export function collectRoute(deps: RouteDeps, opts: CollectOptions): Hono<IngestEnv> {
  const app = new Hono<IngestEnv>();
  app.use(ROUTE, instrument(opts.metrics, ROUTE), siteCors(deps.sites));
  app.post(
    ROUTE,
    limitBody(
      opts.maxBodyBytes,
      async (c) => {
        throw deps.sink.reject(requestRef(c, ROUTE, deps.now()), 413, 'body_too_large', `the body is larger than ${opts.maxBodyBytes} bytes`);
      },
      async (c, r) => {
        throw deps.sink.reject(requestRef(c, ROUTE, deps.now()), r.status, r.reason, r.message);
      },
    ),
    collectHandler(deps, opts),
  );
  return app;
}

/** `POST /v1/collect`: the snippet's batches, as JSON or as sendBeacon's text/plain. */
export function collectHandler(deps: RouteDeps, opts: CollectOptions) {
  const { sink } = deps;

  return async (c: Context<IngestEnv>) => {
    const rt = deps.now();
    const read = await readJsonBody(c, { maxBytes: opts.maxBodyBytes });
    if (!read.ok) throw sink.reject(requestRef(c, ROUTE, rt), read.status, read.reason, read.message, { payload: read.text });

    const check = checkBatch(read.body);
    if (!check.ok) {
      const site = siteOf(read.body);
      throw sink.reject(requestRef(c, ROUTE, rt, site), 400, 'invalid_batch', 'the batch envelope is invalid', { issues: check.issues, payload: read.text });
    }
    const { batch, rejected } = check;
    const ref = requestRef(c, ROUTE, rt, batch.site);

    const site = deps.sites.byId(batch.site);
    if (!site) throw sink.reject(ref, 403, 'unknown_site', `site "${batch.site}" is not configured`, { payload: read.text });
    const origin = c.req.header('origin');
    if (origin !== undefined && !site.allowsOrigin(origin)) {
      throw sink.reject(ref, 403, 'origin_not_allowed', `origin ${origin.slice(0, 256)} may not send events for site "${site.id}"`, { payload: read.text });
    }
    enforceLimits(deps, c, site, ROUTE);

    const signed = checkSignatures(site, batch, check.events);
    const { ua, bot } = deps.parseUa(c.req.header('user-agent'));
    const x: Enrichment = { rt, ua, bot, ip: anonymizeIp(deps.clientIp(c)) };
    const { kept, dropped } = applyBotPolicy(
      site,
      signed.events.map(({ event }) => ({ e: event, x })),
    );
    sink.skipped(ROUTE, 'bot', dropped);
    const messages = kept.map(({ e }) => toRawMessage(toInput(batch, signed.user, e), x, site.privacy));
    // Events that stayed the visitor's because the batch's user was not signed (identifies name their own user).
    const unsigned = signed.unsignedUser ? kept.filter(({ e }) => e.type !== 'identify').length : 0;
    if (unsigned > 0) opts.metrics.unsignedUsers.inc({ route: ROUTE }, unsigned);

    sink.deadLetter(ref, [
      ...rejected.map((r): Rejection => ({ reason: 'invalid_event', issues: r.issues, index: r.index, payload: r.event })),
      ...signed.refused,
    ]);
    await sink.produce(ref, messages);

    // What the sender should know besides the count: bots dropped, identifies refused, events kept anonymous.
    const notes = {
      ...(dropped > 0 ? { dropped } : {}),
      ...(signed.refused.length > 0 ? { refused: signed.refused.length } : {}),
      ...(unsigned > 0 ? { unsigned } : {}),
    };
    if (rejected.length > 0) {
      const message =
        messages.length > 0
          ? `${rejected.length} of ${batch.events.length} events are invalid; the other ${messages.length} were accepted`
          : `${rejected.length === 1 ? 'the event is' : `all ${rejected.length} events are`} invalid; nothing was accepted`;
      throw httpError(400, 'invalid_event', message, {
        issues: rejected.flatMap((r) => r.issues),
        body: { accepted: messages.length, rejected: rejected.map((r) => r.index), ...notes },
      });
    }
    return c.json({ accepted: messages.length, ...notes }, 202);
  };
}

interface Signatures {
  /** The batch's user when it may name the person; undefined when absent or not signed. */
  user: string | undefined;
  /** The events that go on (identifies with a bad signature removed). */
  events: IndexedEvent[];
  refused: Rejection[];
  /** The batch named a user without a valid signature: its events stay the visitor's. */
  unsignedUser: boolean;
}

/**
 * Signed identify (ingest/identity.ts), on sites with an identitySecret: an identify whose `sig`
 * does not sign its user is refused (`unsigned_identify`), and a batch whose `user` is not signed
 * keeps its events as the anonymous visitor's. Other sites: everything as sent.
 */
function checkSignatures(site: Site, batch: CollectBatch, events: IndexedEvent[]): Signatures {
  const verify = site.verifyUser;
  if (!verify) return { user: batch.user, events, refused: [], unsignedUser: false };
  const user = batch.user !== undefined && verify(batch.user, batch.sig) ? batch.user : undefined;
  const kept: IndexedEvent[] = [];
  const refused: Rejection[] = [];
  for (const item of events) {
    const e = item.event;
    if (e.type !== 'identify' || verify(e.user, e.sig)) {
      kept.push(item);
      continue;
    }
    const message = e.sig === undefined ? 'this site signs user ids: sig is required' : 'sig is not the signature of user';
    refused.push({ reason: 'unsigned_identify', index: item.index, issues: [{ path: `events.${item.index}.sig`, message }], payload: e });
  }
  return { user, events: kept, refused, unsignedUser: batch.user !== undefined && user === undefined };
}

function siteOf(body: unknown): string | undefined {
  const site = (body as { site?: unknown } | null)?.site;
  return typeof site === 'string' ? site.slice(0, 64) : undefined;
}

function toInput(batch: CollectBatch, batchUser: string | undefined, e: CollectEvent): EventInput {
  // identify() names the known person; until then the visitor id is the person.
  const user = e.type === 'identify' ? e.user : batchUser;
  return {
    id: e.id,
    site: batch.site,
    person: user ?? batch.visitor,
    visitor: batch.visitor,
    user,
    session: batch.session,
    channel: 'web',
    type: e.type,
    name: e.type === 'track' ? e.name : undefined,
    ts: e.ts,
    url: e.url,
    ref: e.type === 'page' ? e.ref : undefined,
    title: e.type === 'page' ? e.title : undefined,
    topic: e.topic,
    stage: e.stage,
    el: e.type === 'click' ? e.el : undefined,
    props: e.props,
    value: e.value,
  };
}
