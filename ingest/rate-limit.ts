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
