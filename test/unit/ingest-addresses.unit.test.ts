import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { PartitionedLog } from '../../lib/log-memory.js';
import { createIngestApp } from '../../ingest/app.js';
import { createIngestMetrics } from '../../ingest/metrics.js';
import { addressKey } from '../../ingest/rate-limit.js';
import { compileSites, SitesFile } from '../../ingest/sites.js';
import { parseEnv } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { clientIpResolver, forwardedAddress, pickForwarded } from '../../lib/serve.js';

/** What node-server hands Hono as `env`: the socket the request came in on. */
const socketEnv = (remoteAddress: string) => ({
  incoming: { socket: { remoteAddress, remotePort: 40000, remoteFamily: remoteAddress.includes(':') ? 'IPv6' : 'IPv4' } },
});

describe('TRUST_PROXY: the client address behind N proxies', () => {
  const PROXY = '10.0.0.2';

  it('takes the socket address with 0 hops, whatever X-Forwarded-For claims', () => {
    expect(pickForwarded(PROXY, '203.0.113.9', 0)).toEqual({ address: PROXY });
    expect(pickForwarded(PROXY, undefined, 0)).toEqual({ address: PROXY });
  });

  it('takes the right-most entry the trusted proxies did not add, never a forged left-most one', () => {
    // The client sent "X-Forwarded-For: 1.1.1.1" itself; the one proxy appended what it saw.
    expect(pickForwarded(PROXY, '1.1.1.1, 203.0.113.9', 1)).toEqual({ address: '203.0.113.9' });
    // Two proxies: the outer one saw the client, the inner one saw the outer proxy.
    expect(pickForwarded(PROXY, '1.1.1.1, 203.0.113.9, 10.0.0.1', 2)).toEqual({ address: '203.0.113.9' });
    expect(pickForwarded(PROXY, '9.9.9.9,8.8.8.8,7.7.7.7, 203.0.113.9,10.0.0.1', 2)).toEqual({ address: '203.0.113.9' });
    // A chain shorter than the hops (the request came through fewer proxies): its left-most entry.
    expect(pickForwarded(PROXY, '203.0.113.9', 3)).toEqual({ address: '203.0.113.9' });
    // No header at all (a request that bypassed the proxy): the socket.
    expect(pickForwarded(PROXY, undefined, 2)).toEqual({ address: PROXY });
    expect(pickForwarded(PROXY, '  ', 2)).toEqual({ address: PROXY });
  });

  it('falls back to the socket address when a consulted entry is not an IP address', () => {
    for (const header of [
      'unknown',
      '203.0.113.9, ',
      '_hidden',
      '203.0.113.999',
      'evil.example',
      '1.1.1.1, <script>',
      `${'1'.repeat(70)}`,
      '203.0.113.9,,10.0.0.1',
    ]) {
      expect(pickForwarded(PROXY, header, 2), header).toEqual({ address: PROXY, fallback: 'invalid_entry' });
    }
    // Junk left of the consulted entries is never read, so it cannot cause a fallback either.
    expect(pickForwarded(PROXY, 'garbage, not an ip, 203.0.113.9', 1)).toEqual({ address: '203.0.113.9' });
  });

  it('strips IPv6 brackets and ports, and keeps zone-free IPv6 and mapped addresses', () => {
    expect(forwardedAddress('[2001:db8::1]:443')).toBe('2001:db8::1');
    expect(forwardedAddress('[2001:db8::1]')).toBe('2001:db8::1');
    expect(forwardedAddress(' 203.0.113.7:51234 ')).toBe('203.0.113.7');
    expect(forwardedAddress('2001:db8::1')).toBe('2001:db8::1');
    expect(forwardedAddress('::ffff:203.0.113.7')).toBe('::ffff:203.0.113.7');
    for (const bad of ['', '[2001:db8::1', '2001:db8::1]:443', '[203.0.113.7]x', '203.0.113.7:', '203.0.113.7:123456', 'localhost', '01.2.3.4']) {
      expect(forwardedAddress(bad), bad).toBeUndefined();
    }
    expect(pickForwarded(PROXY, '1.1.1.1, [2001:db8:5::7]:1234', 1)).toEqual({ address: '2001:db8:5::7' });
  });

  it('resolves through Hono with the socket address, accepts true/false as 1/0, and reports fallbacks', async () => {
    const fallbacks: string[] = [];
    const app = new Hono();
    for (const [path, hops] of [
      ['/h0', 0],
      ['/h1', 1],
      ['/true', true],
      ['/false', false],
    ] as const) {
      const resolve = clientIpResolver(hops, (why) => fallbacks.push(`${path} ${why}`));
      app.get(path, (c) => c.text(resolve(c) ?? 'none'));
    }
    const get = async (path: string, xff?: string) =>
      (await app.request(path, { headers: xff === undefined ? {} : { 'x-forwarded-for': xff } }, socketEnv(PROXY))).text();
    expect(await get('/h0', '203.0.113.9')).toBe(PROXY);
    expect(await get('/false', '203.0.113.9')).toBe(PROXY);
    expect(await get('/h1', '1.1.1.1, 203.0.113.9')).toBe('203.0.113.9');
    expect(await get('/true', '1.1.1.1, 203.0.113.9')).toBe('203.0.113.9');
    expect(await get('/h1', 'unknown')).toBe(PROXY);
    expect(fallbacks).toEqual(['/h1 invalid_entry']);
    // Without a socket (app.request in tests), no address rather than an exception.
    expect(await (await app.request('/h1', { headers: { 'x-forwarded-for': '203.0.113.9' } })).text()).toBe('203.0.113.9');
    expect(await (await app.request('/h0')).text()).toBe('none');
  });

  it('reads TRUST_PROXY as a hop count, with the old true/false still accepted', () => {
    const hops = (v: string | undefined) => parseEnv({ TRUST_PROXY: v }).TRUST_PROXY;
    expect([undefined, '', 'false', 'true', 'TRUE', '0', '1', '2', '16'].map(hops)).toEqual([0, 0, 0, 1, 1, 0, 1, 2, 16]);
    for (const bad of ['yes', '-1', '1.5', '17', '2 proxies']) expect(() => hops(bad), bad).toThrow(/TRUST_PROXY/);
  });
});

describe('rate-limit keys of client addresses', () => {
  it('keys IPv6 by its /64 and IPv4-mapped IPv6 as the IPv4 address', () => {
    expect(addressKey('203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('::FFFF:203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('::ffff:cb00:7107')).toBe('203.0.113.7'); // the same, in hex
    expect(addressKey('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:0db8:0001:0002:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:2::9')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:3::9')).toBe('2001:db8:1:3::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey(undefined)).toBe('unknown');
    expect(addressKey('x'.repeat(500))).toHaveLength(64);
  });
});

describe('rate limits that cannot be turned against a site', () => {
  /** Ingest behind one trusted proxy (the socket is always the proxy), with per-address and per-site limits. */
  function setup(limits: Record<string, unknown>) {
    const log = new PartitionedLog(1);
    const metrics = createIngestMetrics();
    const app = createIngestApp({
      producer: log.producer(),
      logger: createLogger('test', 'silent'),
      maxBodyBytes: 65536,
      retryAfterSeconds: 2,
      sites: compileSites(SitesFile.parse({ sites: [{ id: 'shop', limits }] }), () => 1_000_000),
      clientIp: clientIpResolver(1, () => metrics.forwardedFallbacks.inc()),
      metrics,
      now: () => 1_000_000,
    });
    let n = 0;
    const send = async (xff: string) =>
      (
        await app.request(
          '/v1/collect',
          {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'x-forwarded-for': xff },
            body: JSON.stringify({ site: 'shop', visitor: 'v', events: [{ id: `e${++n}`, type: 'page', ts: 1, url: '/' }] }),
          },
          socketEnv('10.0.0.2'),
        )
      ).status;
    return { send, metrics };
  }

  it('an address over its limit cannot make another address of the same site get 429', async () => {
    const { send } = setup({ address: { perSecond: 1, burst: 3 }, site: { perSecond: 1, burst: 10 } });
    const flood = await Promise.all(Array.from({ length: 50 }, () => send('198.51.100.66')));
    expect(flood.filter((s) => s === 202)).toHaveLength(3);
    expect(flood.filter((s) => s === 429)).toHaveLength(47);
    // The 47 refusals took nothing from the site's 10: seven other visitors still get in.
    const others = await Promise.all(Array.from({ length: 7 }, (_, i) => send(`198.51.100.${i + 1}`)));
    expect(others).toEqual(new Array(7).fill(202));
  });

  it('forged X-Forwarded-For entries do not give one client fresh buckets', async () => {
    const { send } = setup({ address: { perSecond: 1, burst: 2 } });
    // The client invents a new left-most entry each time; the proxy appends the real address.
    const statuses = [];
    for (let i = 0; i < 6; i++) statuses.push(await send(`192.0.2.${i}, 10.${i}.0.1, 203.0.113.9`));
    expect(statuses).toEqual([202, 202, 429, 429, 429, 429]);
  });

  it('IPv6 rotation within one /64 shares one bucket; another /64 and mapped IPv4 are told apart', async () => {
    const { send } = setup({ address: { perSecond: 1, burst: 2 } });
    const rotation = [];
    for (let i = 1; i <= 5; i++) rotation.push(await send(`2001:db8:aa:bb:${i.toString(16)}:${(i * 7919).toString(16)}::${i}`));
    expect(rotation).toEqual([202, 202, 429, 429, 429]);
    expect(await send('2001:db8:aa:bc::1')).toBe(202);
    // ::ffff:203.0.113.5 is 203.0.113.5: the two forms share one bucket.
    expect([await send('203.0.113.5'), await send('::ffff:203.0.113.5'), await send('[::ffff:cb00:7105]:443')]).toEqual([202, 202, 429]);
  });

  it('a garbled chain falls back to the proxy address and is counted', async () => {
    const { send, metrics } = setup({ address: { perSecond: 1, burst: 1 } });
    expect(await send('not-an-ip')).toBe(202);
    // The same (proxy) bucket: a sender cannot escape its limit by garbling the header.
    expect(await send('also, garbage')).toBe(429);
    expect(await metrics.registry.metrics()).toContain('clickfold_ingest_forwarded_for_fallbacks_total 2');
  });
});
