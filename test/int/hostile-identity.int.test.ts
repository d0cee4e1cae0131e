import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startHostileIngests,
  RUN,
  SITE,
  ORIGIN,
  CONCURRENCY,
  rnd,
  pick,
  basic,
  seq,
  id,
  goodCollectEvent,
  badCollectEvents,
  json,
  collectBody,
  readBack,
  counter,
  barrier,
  quantile,
  drive,
  SIGNED,
  SIGNED_KEY,
  IDENTITY_SECRET,
  PROXIED,
  FLOOD_RATE,
} from '../support/hostile-http.js';

/**
 * Ingest's defences that a sender cannot turn against a site, over real HTTP on the run's Kafka:
 * signed identify, rate limits keyed by the client behind a trusted proxy (forged chains, IPv6 /64
 * rotation), and dead letters bounded under a flood of junk while every real event lands once.
 */
type Env = Awaited<ReturnType<typeof startHostileIngests>>;

describe('hostile senders: signatures, proxies, floods', () => {
  let env: Env;
  let url: Env['url'];
  let proxied: Env['proxied'];
  let flood: Env['flood'];
  beforeAll(async () => {
    env = await startHostileIngests();
    ({ url, proxied, flood } = env);
  });
  afterAll(async () => {
    await env?.stop();
  });

  it('refuses identifies with missing, wrong, foreign or overlong signatures, and keeps unsigned batch users anonymous', async () => {
    const sign = (user: string, secret = IDENTITY_SECRET) => createHmac('sha256', secret).update(user).digest('hex');
    const segAuth = { ...json, authorization: basic(SIGNED_KEY) };
    interface SigCase {
      kind: string;
      path: string;
      headers: Record<string, string>;
      body: unknown;
      status: number;
      /** Event ids that must be on clicks.raw once, with this user (undefined: the anonymous person). */
      land: [id: string, user: string | undefined, person: string][];
      /** Event ids that must not be on clicks.raw. */
      refused: string[];
      dead: [number, string][];
    }
    const goodSigs = new Set<string>();
    const event = (type: string, extra: Record<string, unknown> = {}) => ({ id: id(), type, ts: Date.now(), url: 'https://good.example/p', ...extra });
    const kinds: (() => SigCase)[] = [
      () => {
        const user = `u-${id()}`;
        const sig = sign(user);
        goodSigs.add(sig);
        const [i, p] = [event('identify', { user, sig }), event('page')];
        return {
          kind: 'signed',
          path: '/v1/collect',
          headers: { ...json, origin: ORIGIN },
          body: { site: SIGNED, visitor: `v-${id()}`, user, sig, events: [i, p] },
          status: 202,
          land: [
            [i.id, user, user],
            [p.id, user, user],
          ],
          refused: [],
          dead: [],
        };
      },
      () => {
        const user = `ceo-${seq % 3}`;
        const bad = pick([
          undefined,
          'f'.repeat(64),
          sign(user, `other-${RUN}-0123456789`),
          sign(`${user}-x`),
          'z'.repeat(64),
          sign(user).slice(0, 63),
          `${sign(user)}0`,
          '',
        ])!;
        const visitor = `v-${id()}`;
        const [p, i, t] = [event('page'), event('identify', bad === undefined ? { user } : { user, sig: bad }), event('track', { name: 'After' })];
        return {
          kind: `identify sig ${JSON.stringify(bad)?.slice(0, 12)}`,
          path: '/v1/collect',
          headers: { ...json, origin: ORIGIN },
          body: { site: SIGNED, visitor, events: [p, i, t] },
          status: 202,
          land: [
            [p.id, undefined, visitor],
            [t.id, undefined, visitor],
          ],
          refused: [i.id],
          dead: [[1, 'unsigned_identify']],
        };
      },
      () => {
        const visitor = `v-${id()}`;
        const [p, i] = [event('page'), event('identify', { user: `u-${seq}`, sig: 'a'.repeat(pick([129, 5000])) })];
        return {
          kind: 'overlong identify sig',
          path: '/v1/collect',
          headers: json,
          body: { site: SIGNED, visitor, events: [p, i] },
          status: 400,
          land: [[p.id, undefined, visitor]],
          refused: [i.id],
          dead: [[1, 'invalid_event']],
        };
      },
      () => {
        const user = `ceo-${seq % 3}`;
        const visitor = `v-${id()}`;
        const sig = pick([undefined, sign(`${user}-x`), 'not hex at all']);
        const events = [event('page'), event('click', { el: { tag: 'a' } })];
        return {
          kind: 'unsigned batch user',
          path: '/v1/collect',
          headers: { 'content-type': 'text/plain' },
          body: { site: SIGNED, visitor, user, ...(sig === undefined ? {} : { sig }), events },
          status: 202,
          land: events.map((e) => [e.id, undefined, visitor] as [string, undefined, string]),
          refused: [],
          dead: [],
        };
      },
      () => {
        const e = event('page');
        return {
          kind: 'overlong batch sig',
          path: '/v1/collect',
          headers: json,
          body: { site: SIGNED, visitor: `v-${id()}`, user: 'u-1', sig: 's'.repeat(129), events: [e] },
          status: 400,
          land: [],
          refused: [e.id],
          dead: [[-1, 'invalid_batch']],
        };
      },
      () => {
        const [m, anon] = [id(), `a-${id()}`];
        return {
          kind: 'browser segment unsigned identify',
          path: '/v1/identify',
          headers: { ...segAuth, origin: ORIGIN },
          body: { userId: `ceo-${seq % 3}`, anonymousId: anon, messageId: m },
          status: 200,
          land: [],
          refused: [m],
          dead: [[0, 'unsigned_identify']],
        };
      },
      () => {
        const [m1, m2, anon, user] = [id(), id(), `a-${id()}`, `u-${id()}`];
        const sig = sign(user);
        goodSigs.add(sig);
        const batch = [
          { type: 'identify', userId: user, anonymousId: anon, messageId: m1, context: { clickfold: { sig } } },
          { type: 'track', userId: `ceo-${seq % 3}`, anonymousId: anon, event: 'Unsigned', messageId: m2 },
        ];
        return {
          kind: 'browser segment batch',
          path: '/v1/batch',
          headers: { ...segAuth, origin: ORIGIN },
          body: { batch },
          status: 200,
          land: [
            [m1, user, user],
            [m2, undefined, anon],
          ],
          refused: [],
          dead: [],
        };
      },
      () => {
        const [m, user] = [id(), `ceo-${seq % 3}`];
        return {
          kind: 'server segment identify',
          path: '/v1/identify',
          headers: segAuth,
          body: { userId: user, anonymousId: `a-${id()}`, messageId: m },
          status: 200,
          land: [[m, user, user]],
          refused: [],
          dead: [],
        };
      },
    ];
    const cases = Array.from({ length: 400 }, () => pick(kinds)());
    const statuses = await drive(cases, CONCURRENCY, (k, i) =>
      fetch(`${url}${k.path}`, { method: 'POST', headers: { ...k.headers, 'x-request-id': `s${RUN}-${i}` }, body: JSON.stringify(k.body) }),
    );
    expect(
      cases
        .map((k, i) => `${k.kind}: ${statuses[i]}`)
        .filter((_, i) => statuses[i] !== cases[i]!.status)
        .slice(0, 10),
    ).toEqual([]);
    await barrier(url);

    const back = await readBack(new Set([SIGNED]), `s${RUN}-`);
    const wrong: string[] = [];
    cases.forEach((k, i) => {
      for (const [eventId, user, person] of k.land) {
        const r = back.records.get(eventId);
        if (back.raw.get(eventId) !== 1 || r?.user !== user || r?.person !== person)
          wrong.push(
            `${i} ${k.kind}: ${eventId} landed ${back.raw.get(eventId) ?? 0}x as ${JSON.stringify([r?.user, r?.person])}, expected ${JSON.stringify([user, person])}`,
          );
      }
      for (const eventId of k.refused) if (back.raw.has(eventId)) wrong.push(`${i} ${k.kind}: refused ${eventId} is on clicks.raw`);
      const got = (back.dead.get(`s${RUN}-${i}`) ?? [])
        .map(([idx, r]) => `${idx}:${r}`)
        .sort()
        .join();
      const want = k.dead
        .map(([idx, r]) => `${idx}:${r}`)
        .sort()
        .join();
      if (got !== want) wrong.push(`${i} ${k.kind}: dead letters [${got}], expected [${want}]`);
    });
    expect(wrong.slice(0, 20)).toEqual([]);
    expect(cases.some((k) => k.dead.some(([, r]) => r === 'unsigned_identify'))).toBe(true);
    // A valid signature lets its holder act as the user: it is kept neither with the events nor in dead letters.
    const stored = `${back.letters.join('\n')}\n${JSON.stringify([...back.records.values()])}`;
    expect([...goodSigs].filter((sig) => stored.includes(sig))).toEqual([]);
  }, 300_000);

  it('keys rate limits by the client behind the trusted proxy: forged X-Forwarded-For chains and IPv6 rotation within a /64 get no fresh buckets', async () => {
    const octet = () => Math.floor(rnd() * 256);
    const hex = () => Math.floor(rnd() * 0x10000).toString(16);
    const forgedLeft = () =>
      Array.from({ length: 1 + Math.floor(rnd() * 3) }, () =>
        pick([`${octet()}.${octet()}.${octet()}.${octet()}`, `2001:db8::${hex()}`, 'unknown', '<script>']),
      ).join(', ');
    const sent = new Map<string, string>();
    const send = (xff: string) => {
      const e = { id: id(), type: 'page', ts: Date.now(), url: '/p' };
      sent.set(e.id, xff);
      return fetch(`${proxied.url}/v1/collect`, {
        method: 'POST',
        headers: { ...json, 'x-forwarded-for': xff },
        body: JSON.stringify({ site: PROXIED, visitor: `v-${seq}`, events: [e] }),
      }).then(async (r) => {
        await r.arrayBuffer();
        return { status: r.status, id: e.id };
      });
    };
    const count = (rs: { status: number }[]) => ({ ok: rs.filter((r) => r.status === 202).length, limited: rs.filter((r) => r.status === 429).length });

    // One client, a fresh forged chain in front of its real address on every request, 30 at once.
    const forged = await Promise.all(Array.from({ length: 30 }, () => send(`${forgedLeft()}, 198.51.100.7`)));
    expect(count(forged)).toEqual({ ok: 3, limited: 27 });
    // The same client as an IPv4-mapped IPv6 address, with a port, is still the same client.
    expect((await send(`${forgedLeft()}, [::ffff:198.51.100.7]:50123`)).status).toBe(429);
    // One host rotating through its /64.
    const v6 = `2001:db8:${RUN.slice(0, 4)}:1`;
    const rotated = await Promise.all(Array.from({ length: 30 }, () => send(`${forgedLeft()}, ${v6}:${hex()}:${hex()}:${hex()}:${hex()}`)));
    expect(count(rotated)).toEqual({ ok: 3, limited: 27 });
    // Neighbours are not affected: another /64, another IPv4 client.
    const others = await Promise.all([send(`2001:db8:${RUN.slice(0, 4)}:2::1`), send('198.51.100.8')]);
    expect(others.map((r) => r.status)).toEqual([202, 202]);

    // The accepted events carry the client's (anonymised) address, not the proxy's nor a forged one.
    const back = await readBack(new Set([PROXIED]), `none-${RUN}`);
    const ips = [...forged, ...rotated, ...others].filter((r) => r.status === 202).map((r) => back.records.get(r.id)?.ip);
    expect(ips).toEqual([
      '198.51.100.0',
      '198.51.100.0',
      '198.51.100.0',
      ...new Array(3).fill(`2001:db8:${RUN.slice(0, 4).replace(/^0+(?=.)/, '')}::`),
      `2001:db8:${RUN.slice(0, 4).replace(/^0+(?=.)/, '')}::`,
      '198.51.100.0',
    ]);
  }, 120_000);

  it('keeps every real event and bounds the dead letters under a flood of junk', async () => {
    type FloodCase = { real: boolean; body: string; status: number; dead: [number, string][]; ids: string[] };
    const junk: (() => FloodCase)[] = [
      () => ({ real: false, body: pick(['{bad', '[1,2,', '{"site":}', 'undefined']), status: 400, dead: [[-1, 'malformed_json']], ids: [] }),
      () => ({
        real: false,
        body: JSON.stringify({ ...collectBody([goodCollectEvent()]), site: `nowhere-${RUN}` }),
        status: 403,
        dead: [[-1, 'unknown_site']],
        ids: [],
      }),
      () => ({
        real: false,
        body: JSON.stringify(pick([{ site: 5 }, null, [], { site: SITE, visitor: 'v', events: [] }])),
        status: 400,
        dead: [[-1, 'invalid_batch']],
        ids: [],
      }),
      () => {
        const bad = Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => pick(badCollectEvents)());
        return { real: false, body: JSON.stringify(collectBody(bad.map(([e]) => e))), status: 400, dead: bad.map(([, r], i) => [i, r]), ids: [] };
      },
    ];
    const cases: FloodCase[] = [];
    for (let i = 0; i < 3000; i++) {
      cases.push(pick(junk)());
      if (i % 10 === 0) {
        const events = Array.from({ length: 1 + Math.floor(rnd() * 5) }, goodCollectEvent);
        cases.push({ real: true, body: JSON.stringify(collectBody(events)), status: 202, dead: [], ids: events.map((e) => e.id) });
      }
    }
    const latency: number[] = [];
    const started = Date.now();
    const statuses = await drive(cases, CONCURRENCY, async (k, i) => {
      const t = performance.now();
      const res = await fetch(`${flood.url}/v1/collect`, { method: 'POST', headers: { ...json, 'x-request-id': `f${RUN}-${i}` }, body: k.body });
      if (k.real) latency.push(performance.now() - t);
      return res;
    });
    const seconds = (Date.now() - started) / 1000;
    expect(
      cases
        .map((k, i) => [k.status, statuses[i]])
        .filter(([want, got]) => want !== got)
        .slice(0, 10),
    ).toEqual([]);
    await barrier(flood.url);

    const back = await readBack(new Set([SITE]), `f${RUN}-`);
    // Every real event exactly once.
    const realIds = cases.flatMap((k) => k.ids);
    expect(realIds.filter((e) => back.raw.get(e) !== 1).slice(0, 10)).toEqual([]);
    // Dead letters: at most the bucket (one second's worth) plus the rate over the flood's duration...
    const expected = cases.reduce((n, k) => n + k.dead.length, 0);
    const written = await counter(flood.metrics, 'clickfold_ingest_dead_letters_written_total');
    const sampledOut = await counter(flood.metrics, 'clickfold_ingest_dead_letters_sampled_out_total');
    console.log(
      `flood: ${cases.length} requests in ${seconds.toFixed(1)} s, ${expected} refusals, ${written} dead letters written, ${sampledOut} only counted; real requests p50/p99 ${quantile(latency, 0.5)}/${quantile(latency, 0.99)} ms`,
    );
    expect(back.letters.length).toBe(written);
    expect(written).toBeLessThanOrEqual(FLOOD_RATE * (1 + Math.ceil(seconds)));
    expect(sampledOut).toBeGreaterThan(0);
    // ...and every refusal counted by reason, written or not.
    expect(written + sampledOut).toBe(expected);
    expect(await counter(flood.metrics, 'clickfold_ingest_events_rejected_total')).toBe(expected);
    expect(await counter(flood.metrics, 'clickfold_ingest_dead_letter_failures_total')).toBe(0);
    // What was written is what those requests were refused for.
    const mismatched = [...back.dead].filter(([rid, got]) => {
      const want = cases[Number(rid.slice(`f${RUN}-`.length))]!.dead.map(([idx, r]) => `${idx}:${r}`);
      return !got.every(([idx, r]) => want.includes(`${idx}:${r}`));
    });
    expect(mismatched.slice(0, 5)).toEqual([]);
  }, 300_000);
});
