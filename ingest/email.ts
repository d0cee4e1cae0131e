import { randomUUID } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { EmailParams, verifyEmailLink } from '../contract/email.js';
import { requestRef, type IngestEnv, type RouteDeps } from './context.js';
import { anonymizeIp } from './enrich.js';
import type { Issue } from '../lib/http-errors.js';
import { instrument, type IngestMetrics } from './metrics.js';
import { toRawMessage, type EventInput } from './raw.js';
import type { RequestRef } from './sink.js';
import type { Site } from './sites.js';
import { toIssues } from './validate.js';

export interface EmailOptions {
  /** Secret for click-link signatures (INGEST_LINK_SECRET); unset: only allow-listed hosts redirect. */
  linkSecret?: string | undefined;
  metrics: IngestMetrics;
}

/** The smallest transparent GIF: 1x1, 43 bytes. */
const GIF = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');
const NO_CACHE = { 'cache-control': 'no-store, no-cache, must-revalidate, max-age=0', pragma: 'no-cache', expires: '0' };

/**
 * Gmail, Yahoo and others fetch images through their own proxy, whose user agent looks like a bot.
 * The open is real all the same (it is the only open those readers ever report), so it is not flagged.
 */
const MAIL_IMAGE_PROXY = /GoogleImageProxy|YahooMailProxy|ggpht\.com/i;

const ROUTES = { open: '/v1/email/open', click: '/v1/email/click' } as const;

/**
 * E-mail as a channel: an open pixel and a click redirect, both producing events on `clicks.raw`
 * (channel `email`, `Email Opened` / `Email Link Clicked`, props `campaign`, `link`, `msg`, `p.*`).
 *
 * - The pixel always answers the GIF, even to bad parameters (a mail client shows no errors), but
 *   bad parameters are dead-lettered with their reason.
 * - The click redirects only to a target signed with the link secret or on the site's allow-list;
 *   anything else is a 400, never a redirect (no open redirect). A good target with otherwise bad
 *   parameters still redirects (the reader must reach the page) and the event is dead-lettered.
 */
export function emailRoutes(deps: RouteDeps, opts: EmailOptions): Hono<IngestEnv> {
  const app = new Hono<IngestEnv>();
  const { sink, logger } = deps;

  /** Produces one e-mail event; failures are logged and counted, never shown to the reader. */
  const record = async (
    c: Context<IngestEnv>,
    route: string,
    rt: number,
    site: Site | undefined,
    params: Record<string, string>,
    name: string,
    url?: string,
  ) => {
    const parsed = EmailParams.safeParse({ ...pick(params), props: pProps(params) });
    const ref: RequestRef = requestRef(c, route, rt, site?.id ?? params.site?.slice(0, 64));
    if (!parsed.success || !site) {
      const issues: Issue[] = parsed.success ? [] : toIssues(parsed.error);
      const reason = parsed.success ? 'unknown_site' : 'invalid_params';
      if (!site && parsed.success) issues.push({ path: 'site', message: `site "${parsed.data.site}" is not configured` });
      sink.deadLetter(ref, [{ reason, issues, payload: c.req.url }]);
      return;
    }
    if (site.limit(deps.clientIp(c)) > 0) {
      sink.skipped(route, 'rate_limited', 1);
      return;
    }
    const p = parsed.data;
    const agent = c.req.header('user-agent');
    const { ua, bot: looksLikeBot } = deps.parseUa(agent);
    const bot = looksLikeBot && !(agent && MAIL_IMAGE_PROXY.test(agent));
    if (bot && site.bots === 'drop') {
      sink.skipped(route, 'bot', 1);
      return;
    }
    const input: EventInput = {
      id: `${route === ROUTES.open ? 'eo' : 'ec'}-${randomUUID()}`,
      site: site.id,
      person: p.user,
      user: p.user,
      channel: 'email',
      type: 'track',
      name,
      ts: rt,
      url,
      props: { campaign: p.campaign, ...(p.link ? { link: p.link } : {}), ...(p.msg ? { msg: p.msg } : {}), ...p.props },
    };
    try {
      await sink.produce(ref, [toRawMessage(input, { rt, ua, bot, ip: anonymizeIp(deps.clientIp(c)) }, site.privacy)]);
    } catch (err) {
      logger.warn({ err: (err as Error).message, route, site: site.id }, 'e-mail event not stored');
    }
  };

  app.get(ROUTES.open, instrument(opts.metrics, ROUTES.open), async (c) => {
    const rt = deps.now();
    const { params, duplicates } = queryOf(c);
    const site = params.site ? deps.sites.byId(params.site) : undefined;
    if (duplicates.length > 0) {
      sink.deadLetter(requestRef(c, ROUTES.open, rt, site?.id), [
        { reason: 'invalid_params', issues: duplicates.map((d) => ({ path: d, message: 'given more than once' })), payload: c.req.url },
      ]);
    } else {
      await record(c, ROUTES.open, rt, site, params, 'Email Opened');
    }
    return c.body(new Uint8Array(GIF), 200, { 'content-type': 'image/gif', 'content-length': String(GIF.length), ...NO_CACHE });
  });

  app.get(ROUTES.click, instrument(opts.metrics, ROUTES.click), async (c) => {
    const rt = deps.now();
    const { params, duplicates, pairs } = queryOf(c);
    const site = params.site ? deps.sites.byId(params.site) : undefined;
    const ref = requestRef(c, ROUTES.click, rt, site?.id ?? params.site?.slice(0, 64));
    const refuse = (reason: string, message: string, path = 'url') =>
      sink.reject(ref, 400, reason, message, { issues: [{ path, message }], payload: c.req.url });

    if (duplicates.length > 0) throw refuse('invalid_params', `${duplicates.join(', ')} given more than once`, duplicates[0]);
    let target: URL;
    try {
      target = new URL(params.url ?? '');
    } catch {
      throw refuse('invalid_target', 'url must be an absolute http(s) URL');
    }
    if ((target.protocol !== 'https:' && target.protocol !== 'http:') || target.username || target.password) {
      throw refuse('invalid_target', 'url must be an absolute http(s) URL without credentials');
    }
    if (params.sig !== undefined) {
      if (!opts.linkSecret) throw refuse('bad_signature', 'signed links are not enabled on this server (INGEST_LINK_SECRET)', 'sig');
      if (!verifyEmailLink(opts.linkSecret, pairs, params.sig)) throw refuse('bad_signature', 'the link signature does not match its parameters', 'sig');
    } else if (!site) {
      throw refuse('unsigned_redirect', 'an unsigned link needs a known site whose redirectHosts include the target', 'site');
    } else if (!site.allowsRedirectHost(target.hostname)) {
      throw refuse('unsigned_redirect', `${target.hostname} is not an allowed redirect host of site "${site.id}"; sign the link`);
    }

    await record(c, ROUTES.click, rt, site, params, 'Email Link Clicked', target.href);
    return c.body(null, 302, { location: target.href, 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' });
  });

  return app;
}

/** The query as single values; a parameter given twice is ambiguous under a signature, so it is refused. */
function queryOf(c: Context) {
  const pairs = [...new URL(c.req.url).searchParams];
  const params: Record<string, string> = Object.create(null);
  const duplicates: string[] = [];
  for (const [k, v] of pairs) {
    if (k in params) duplicates.push(k);
    else params[k] = v;
  }
  return { params, duplicates, pairs: pairs.filter(([k]) => k !== 'sig') };
}

function pick(params: Record<string, string>) {
  const { site, user, campaign, msg, link, url } = params;
  return { site, user, campaign, msg, link, url };
}

function pProps(params: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  for (const [k, v] of Object.entries(params)) if (k.startsWith('p.')) out[k.slice(2)] = v;
  return out;
}
