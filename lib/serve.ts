import { isIP } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context, Hono } from 'hono';
import type { Logger } from './logger.js';

/** Starts an HTTP server and resolves with the port it really listens on (PORT=0 picks a free one). */
export function listen(app: Hono, port: number, host: string): Promise<{ server: ServerType; port: number }> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, port, hostname: host }, (info) => resolve({ server, port: info.port }));
    server.once('error', reject);
  });
}

export function closeServer(server: ServerType): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
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
 * Acknowledged events are already in Kafka, so a clean stop only has to drain what is in flight.
 */
export function onShutdown(logger: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
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
