import { isbot } from 'isbot';
import UAParser from 'ua-parser-js';

/**
 * Enrichment that runs per event on ingest's hot path, so each step caches or precomputes.
 */

export interface UaInfo {
  b?: string;
  o?: string;
  d?: string;
}

export interface UaResult {
  ua: UaInfo | undefined;
  bot: boolean;
}

/** User agents repeat heavily; parsing one costs far more than a Map lookup. Bounded, oldest out. */
export function createUaParser(maxEntries = 5000): (ua: string | undefined) => UaResult {
  const cache = new Map<string, UaResult>();
  return (ua) => {
    if (!ua) return { ua: undefined, bot: false };
    const hit = cache.get(ua);
    if (hit) return hit;
    const r = new UAParser(ua).getResult();
    const info: UaInfo = {};
    if (r.browser.name) info.b = r.browser.major ? `${r.browser.name} ${r.browser.major}` : r.browser.name;
    if (r.os.name) info.o = r.os.version ? `${r.os.name} ${r.os.version}` : r.os.name;
    info.d = r.device.type ?? 'desktop';
    const result: UaResult = { ua: info, bot: isbot(ua) };
    if (cache.size >= maxEntries) cache.delete(cache.keys().next().value!);
    cache.set(ua, result);
    return result;
  };
}

/** Zeroes the last IPv4 octet or the last 80 bits of an IPv6 address, before anything is stored. */
export function anonymizeIp(ip: string | undefined): string | undefined {
  if (!ip) return undefined;
  const v4mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  const addr = v4mapped ? v4mapped[1]! : ip;
  if (/^\d+\.\d+\.\d+\.\d+$/.test(addr)) return addr.replace(/\.\d+$/, '.0');
  if (addr.includes(':')) {
    const groups = expandIpv6(addr);
    if (!groups) return undefined;
    // Keep 48 bits (three groups), zero the remaining 80.
    return `${groups.slice(0, 3).join(':')}::`;
  }
  return undefined;
}

function expandIpv6(addr: string): string[] | null {
  const clean = addr.split('%')[0]!;
  const [head = '', tail] = clean.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  if (tail === undefined && h.length !== 8) return null;
  const groups = [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  if (groups.length !== 8 || groups.some((g) => !/^[0-9a-f]{1,4}$/i.test(g))) return null;
  return groups.map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''));
}

/**
 * Client clocks drift. Events queued offline may legitimately be days old, but none comes from the
 * future: a time outside [receipt - maxPastMs, receipt + maxFutureMs] is pinned to the receipt time.
 */
export function boundedTime(clientTs: number, receivedAt: number, maxPastMs: number, maxFutureMs: number): number {
  return clientTs > receivedAt + maxFutureMs || clientTs < receivedAt - maxPastMs ? receivedAt : clientTs;
}
