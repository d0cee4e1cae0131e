import { isIP } from 'node:net';

/**
 * Token buckets in memory, one per key (a site, a site's client address). Each key may burst up to
 * `burst` requests, then gets `perSecond` more each second. In memory and per process: behind a
 * load balancer each ingest process enforces its share.
 */
export interface TokenBucketOptions {
  perSecond: number;
  /** Bucket size; defaults to two seconds' worth. */
  burst?: number;
  /** Keys kept at most; beyond, the oldest key is forgotten (it starts again with a full bucket). */
  maxKeys?: number;
  now?: () => number;
}

/** Takes `cost` tokens for `key`: returns 0 when allowed, else the whole seconds to wait (Retry-After). */
export type TakeToken = (key: string, cost?: number) => number;

export function tokenBuckets(opts: TokenBucketOptions): TakeToken {
  const rate = opts.perSecond / 1000;
  const burst = opts.burst ?? Math.max(1, Math.ceil(opts.perSecond * 2));
  const maxKeys = opts.maxKeys ?? 100_000;
  const now = opts.now ?? Date.now;
  const buckets = new Map<string, { tokens: number; at: number }>();

  return (key, cost = 1) => {
    const t = now();
    let b = buckets.get(key);
    if (!b) {
      if (buckets.size >= maxKeys) buckets.delete(buckets.keys().next().value!);
      b = { tokens: burst, at: t };
      buckets.set(key, b);
    } else {
      b.tokens = Math.min(burst, b.tokens + (t - b.at) * rate);
      b.at = t;
    }
    if (b.tokens >= cost) {
      b.tokens -= cost;
      return 0;
    }
    return Math.max(1, Math.ceil((cost - b.tokens) / rate / 1000));
  };
}

/**
 * The rate-limit key of a client address. IPv6 hosts usually own a whole /64 (SLAAC, privacy
 * addresses) and can rotate through it at will, so an IPv6 address counts as its /64; an
 * IPv4-mapped address (`::ffff:192.0.2.1`, also in hex) counts as the IPv4 address it maps.
 * Anything that is not an IP address keys by itself, bounded.
 */
export function addressKey(address: string | undefined): string {
  if (!address) return 'unknown';
  const bare = address.split('%')[0]!; // a zone (fe80::1%eth0) names an interface, not a host
  const kind = isIP(bare);
  if (kind === 4) return bare;
  if (kind !== 6) return address.slice(0, 64);
  const g = ipv6Groups(bare);
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) return `${g[6]! >> 8}.${g[6]! & 255}.${g[7]! >> 8}.${g[7]! & 255}`;
  return `${g
    .slice(0, 4)
    .map((x) => x.toString(16))
    .join(':')}::/64`;
}

/** The eight 16-bit groups of an address node:net already accepted as IPv6 (`::`, a dotted tail). */
function ipv6Groups(address: string): number[] {
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  const hex = dotted
    ? `${address.slice(0, dotted.index)}${((+dotted[1]! << 8) | +dotted[2]!).toString(16)}:${((+dotted[3]! << 8) | +dotted[4]!).toString(16)}`
    : address;
  const [head = '', tail] = hex.split('::');
  const parse = (s: string) => (s === '' ? [] : s.split(':').map((x) => parseInt(x, 16)));
  const h = parse(head);
  const t = tail === undefined ? [] : parse(tail);
  return [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
}
