import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context, Hono } from 'hono';
import type { Logger } from './logger.js';

/** Starts an HTTP server and resolves with the port it really listens on (PORT=0 picks a free one). */
export function listen(app: Hono, port: number, host: string): Promise<{ server: ServerType; port: number }> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, port, hostname: host }, (info) => resolve({ server, port: info.port }));
    track(server as Server);
    server.once('error', reject);
  });
}

/** What closeServer needs to know of a server that listen() started: its responses in flight and its event streams. */
interface Tracked {
  draining: boolean;
  responses: Set<ServerResponse>;
  streams: Set<ServerResponse>;
}
const tracked = new WeakMap<object, Tracked>();
/**
 * How long an event stream has to end by itself once the server drains (the processes close their
 * live feeds first: a clean end, after which EventSource reconnects elsewhere); then it is cut.
 */
const STREAM_END_MS = 500;

function track(server: Server): void {
  const t: Tracked = { draining: false, responses: new Set(), streams: new Set() };
  tracked.set(server, t);
  // First of the request listeners, before the app has written anything.
  server.prependListener('request', (_req: IncomingMessage, res: ServerResponse) => {
    if (t.draining) res.setHeader('connection', 'close');
    t.responses.add(res);
    sniffEventStream(res, () => {
      t.streams.add(res);
      // A stream that begins while the server drains is cut like the others.
      if (t.draining) setTimeout(() => t.streams.has(res) && res.destroy(), STREAM_END_MS);
    });
    res.once('close', () => {
      t.responses.delete(res);
      t.streams.delete(res);
      // Its connection is idle now: while draining, idle connections close.
      if (t.draining) setImmediate(() => server.closeIdleConnections());
    });
  });
}

/** Calls `mark` when the response turns out to be an event stream (its content type, as written). */
function sniffEventStream(res: ServerResponse, mark: () => void): void {
  const writeHead = res.writeHead;
  res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
    const headers = args.find((a) => typeof a === 'object' && a !== null);
    if (isEventStream(headers) || isEventStream(this.getHeader('content-type'))) mark();
    return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
  } as ServerResponse['writeHead'];
}

function isEventStream(headers: unknown): boolean {
  if (typeof headers === 'string') return headers.toLowerCase().startsWith('text/event-stream');
  if (Array.isArray(headers)) {
    // [name, value, name, value] or [[name, value], ...]
    const flat = headers.flat() as unknown[];
    for (let i = 0; i + 1 < flat.length; i += 2) if (String(flat[i]).toLowerCase() === 'content-type' && isEventStream(String(flat[i + 1]))) return true;
    return false;
  }
  if (typeof headers !== 'object' || headers === null) return false;
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === 'content-type') return isEventStream(String(v));
  return false;
}

/**
 * Stops a server that listen() started, whatever its clients do: it stops accepting connections,
 * closes idle keep-alive connections at once, cuts event streams (server-sent events) that have not
 * ended within half a second, lets the requests in flight finish (their answers close their
 * connections) for up to `graceMs`, then closes every connection still open. Resolves once the last
 * one is gone.
 */
export function closeServer(server: ServerType, opts: { graceMs?: number; logger?: Logger } = {}): Promise<void> {
  const http = server as Server;
  const graceMs = opts.graceMs ?? 10_000;
  const t = tracked.get(server);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      opts.logger?.warn({ graceMs, open: t?.responses.size }, 'closing the connections still open after the grace period');
      http.closeAllConnections();
    }, graceMs);
    // An event stream need never finish: one its app did not end is cut (EventSource reconnects, elsewhere or later).
    const streams = setTimeout(
      () => {
        for (const res of t?.streams ?? []) res.destroy();
      },
      Math.min(STREAM_END_MS, graceMs),
    );
    http.close(() => {
      clearTimeout(timer);
      clearTimeout(streams);
      resolve();
    });
    if (t) {
      t.draining = true;
      for (const res of t.responses) if (!res.headersSent) res.setHeader('connection', 'close');
    }
    http.closeIdleConnections();
  });
}

/** Why a forwarded chain was not used: a consulted entry is not an IP address. */
export type ForwardedFallback = 'invalid_entry';

/**
 * The client address. `trustedHops` is the number of proxies in front of the process (TRUST_PROXY;
 * `true`/`false` mean 1/0): 0 takes the socket's address; N takes the address the outermost
 * trusted proxy saw, the right-most X-Forwarded-For entry that the trusted proxies did not add
 * (see `pickForwarded`). `onFallback` hears about chains that could not be used.
 */
export function clientIpResolver(trustedHops: number | boolean, onFallback?: (why: ForwardedFallback) => void) {
  const hops = typeof trustedHops === 'boolean' ? Number(trustedHops) : trustedHops;
  return (c: Context): string | undefined => {
    const socket = socketAddress(c);
    if (hops <= 0) return socket;
    const picked = pickForwarded(socket, c.req.header('x-forwarded-for'), hops);
    if (picked.fallback) onFallback?.(picked.fallback);
    return picked.address;
  };
}

function socketAddress(c: Context): string | undefined {
  try {
    return getConnInfo(c).remote.address;
  } catch {
    return undefined;
  }
}

/**
 * With `hops` trusted proxies, each appending the address it received the request from, the list
 * [socket address, ...X-Forwarded-For entries from right to left] holds, at index `hops`, the
 * address the outermost trusted proxy saw: the client. Entries further left were written by the
 * client itself and are never read. A shorter list (the request came through fewer proxies) gives
 * its left-most entry. If any entry consulted is not an IP address, the chain is garbled (or the
 * configured hop count is wrong) and the socket address is used instead: a sender can then never
 * pick its own address, at worst it shares the nearest proxy's rate-limit bucket.
 */
export function pickForwarded(
  socket: string | undefined,
  header: string | undefined,
  hops: number,
): { address: string | undefined; fallback?: ForwardedFallback } {
  let address = socket;
  let end = header === undefined || header.trim() === '' ? -1 : header.length;
  // From the right, and no further than needed: a 16 KB header of junk costs nothing extra.
  for (let i = 1; i <= hops && end >= 0; i++) {
    const comma = header!.lastIndexOf(',', end - 1);
    const entry = forwardedAddress(header!.slice(comma + 1, end));
    if (entry === undefined) return { address: socket, fallback: 'invalid_entry' };
    address = entry;
    end = comma;
  }
  return { address };
}

/**
 * One X-Forwarded-For entry as a bare address: `[2001:db8::1]:443` and `203.0.113.7:51234` (some
 * proxies add the port) lose brackets and port; undefined unless node:net calls it an IP address.
 */
export function forwardedAddress(entry: string): string | undefined {
  let s = entry.trim();
  if (s.length > 64) return undefined;
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(s);
  const v4port = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(s);
  if (bracketed) s = bracketed[1]!;
  else if (v4port) s = v4port[1]!;
  return isIP(s) ? s : undefined;
}

/**
 * Runs `stop` once on SIGTERM or SIGINT, then exits: 0 when everything flushed, 1 when it failed.
 * Acknowledged events are already in Kafka (or on the embedded log's disk), so a clean stop only
 * has to drain what is in flight; a stop still running after `deadlineMs` (a backend that does not
 * answer) exits 1 all the same: the process ends whatever anything else does.
 */
export function onShutdown(logger: Logger, stop: () => Promise<void>, opts: { deadlineMs?: number } = {}): void {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    if (opts.deadlineMs !== undefined) {
      const deadlineMs = opts.deadlineMs;
      setTimeout(() => {
        logger.error({ deadlineMs }, 'the shutdown did not finish in time; exiting');
        process.exit(1);
      }, deadlineMs).unref();
    }
    stop().then(
      () => {
        logger.info('stopped cleanly');
        process.exit(0);
      },
      (err) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', handler);
  process.once('SIGINT', handler);
}
