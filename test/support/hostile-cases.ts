import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';

/**
 * The generated hostile requests of test/int/hostile-*.int.test.ts: what each sends and what it
 * must produce (status, dead letters, events on clicks.raw).
 */
export const RUN = randomUUID().slice(0, 8);
export const SITE = `hostile-${RUN}`;
export const KEY = `wk_hostile_${RUN}`;
export const ORIGIN = 'https://good.example';
export const MAX_BODY = 64 * 1024;
export const BAD_REQUESTS = 10_500;
export const CONCURRENCY = 12;

/** What one generated request must produce. */
export interface Case {
  kind: string;
  method: 'POST' | 'GET';
  path: string;
  headers: Record<string, string>;
  body?: string | Uint8Array;
  /** Exact status. */
  status: number;
  /** Dead letters expected for this request: `[index or -1 for the whole request, reason]`. */
  dead: [number, string][];
  /** Event ids (or e-mail campaigns) that must be on clicks.raw exactly once. */
  valid: string[];
}

// A small deterministic PRNG, so a failure can be replayed.
let seed = 0x9e3779b9;
export const rnd = () => (seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32;
export const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;

export const basic = (key: string) => `Basic ${Buffer.from(`${key}:`).toString('base64')}`;
export const HOSTILE_TEXT = [
  '<script>alert(1)</script>',
  '\u0000\u0001\u001f',
  '\u202e\u200b',
  "'; DROP TABLE x;--",
  '😀'.repeat(20),
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a template-injection probe, sent as plain text
  '{{7*7}}${7*7}',
  '..\\..\\etc\\passwd',
];

export let seq = 0;
export const id = () => `${RUN}-${++seq}`;
export const goodCollectEvent = () => {
  const e = { id: id(), ts: Date.now(), url: `/products/sku-${seq % 9}` };
  return pick([
    { ...e, type: 'page', title: pick(HOSTILE_TEXT) },
    { ...e, type: 'click', el: { tag: 'button', text: pick(HOSTILE_TEXT), data: { topic: 'x' } } },
    { ...e, type: 'track', name: pick(HOSTILE_TEXT), props: { q: pick(HOSTILE_TEXT), n: 1, b: true, z: null } },
  ]);
};
export const badCollectEvents: (() => [Record<string, unknown>, string])[] = [
  () => [{ id: id(), type: 'teleport', ts: 1 }, 'invalid_event'],
  () => [{ id: id(), type: 'page', ts: 'yesterday', url: '/' }, 'invalid_event'],
  () => [{ id: id(), type: 'page', ts: 1, url: 5 }, 'invalid_event'],
  () => [{ id: `${id()}\u0000\n`, type: 'page', ts: 1, url: '/' }, 'invalid_event'],
  () => [{ id: id(), type: 'track', ts: 1, name: 'x', props: JSON.parse('{"__proto__": {"polluted": true}}') as object }, 'invalid_event'],
  () => [{ id: id(), type: 'track', ts: 1, name: 'x', props: { constructor: 'y' } }, 'invalid_event'],
  () => [{ id: id(), type: 'track', ts: 1, name: 'x', props: { nested: { a: 1 } } }, 'invalid_event'],
  () => [{ id: id(), type: 'track', ts: 1, name: 'x'.repeat(500) }, 'invalid_event'],
  () => [{ id: id(), type: 'page', ts: -5, url: '/' }, 'invalid_event'],
  () => [{ id: id(), type: 'identify', ts: 1, user: '{tag}' }, 'invalid_event'],
];
export const goodSegmentEvent = () =>
  pick([
    {
      type: 'track',
      messageId: id(),
      userId: `u-${seq % 13}`,
      event: pick(HOSTILE_TEXT),
      properties: { product: 'sku-1', deep: { a: [1, { b: pick(HOSTILE_TEXT) }] } },
      context: { channel: 'call' },
    },
    { type: 'page', messageId: id(), anonymousId: `a-${seq % 13}`, name: 'Home', properties: { url: 'https://good.example/' } },
    { type: 'identify', messageId: id(), userId: `u-${seq % 13}`, traits: { plan: pick(HOSTILE_TEXT) } },
  ]);
export const badSegmentEvents: (() => Record<string, unknown>)[] = [
  () => ({ type: 'track', messageId: id(), event: 'No person' }),
  () => ({ type: 'group', messageId: id(), userId: 'u', groupId: 'g' }),
  () => ({ type: 'track', messageId: id(), userId: 'u', event: 5 }),
  () => ({ type: 'track', messageId: id(), userId: 'u', event: 'x', properties: JSON.parse('{"a": {"__proto__": {"polluted": true}}}') as object }),
  () => ({ type: 'identify', messageId: id(), userId: 'u', traits: { constructor: { prototype: 1 } } }),
  () => ({ type: 'track', messageId: id(), userId: 'u', event: 'x', properties: { a: { b: { c: { d: { e: { f: 1 } } } } } } }),
  () => ({ type: 'track', messageId: id(), userId: 'u', event: 'x', context: { channel: 'Not A Channel!' } }),
  () => ({ type: 'track', messageId: id(), userId: 'u\u0000', event: 'x' }),
  () => ({ type: 'track', messageId: id(), userId: 'u', event: 'x', timestamp: 'not a date' }),
  () => ({ type: 'page', messageId: id(), userId: 'u', properties: 'not an object' }),
];

export const json = { 'content-type': 'application/json' };
export const segHeaders = { ...json, authorization: basic(KEY) };
export const collectBody = (events: unknown[], extra: Record<string, unknown> = {}) => ({
  site: SITE,
  visitor: `v-${seq % 17}`,
  session: 's',
  events,
  ...extra,
});

/** One bad request of a random kind, with what it must produce. */
export function badCase(): Case {
  const c = (
    kind: string,
    path: string,
    headers: Record<string, string>,
    body: string | Uint8Array | undefined,
    status: number,
    dead: [number, string][],
    valid: string[] = [],
    method: 'POST' | 'GET' = 'POST',
  ): Case => ({ kind, method, path, headers, body, status, dead, valid });
  const kinds: (() => Case)[] = [
    () => {
      const text = JSON.stringify(collectBody([goodCollectEvent()]));
      return c('truncated json', '/v1/collect', json, text.slice(0, Math.floor(rnd() * (text.length - 1))), 400, [[-1, 'malformed_json']]);
    },
    () =>
      c('garbage', '/v1/collect', json, pick(['{bad', 'undefined', '{"site":}', "{'site':'x'}", '[1,2,', '{"a":1}}', 'NaN', '\u0000']), 400, [
        [-1, 'malformed_json'],
      ]),
    () => c('raw control character', '/v1/collect', json, `{"site":"${SITE}","visitor":"v\u0001","events":[]}`, 400, [[-1, 'malformed_json']]),
    () => {
      const bytes = Buffer.from(JSON.stringify(collectBody([{ ...goodCollectEvent(), title: 'XX' }])));
      const at = bytes.indexOf('XX');
      bytes[at] = pick([0xff, 0xfe, 0xc0, 0x80]); // never valid as a first byte
      bytes[at + 1] = pick([0xfe, 0x28, 0xa0]);
      return c('invalid utf-8', '/v1/collect', json, new Uint8Array(bytes), 400, [[-1, 'invalid_utf8']]);
    },
    () =>
      c(
        'wrong envelope types',
        '/v1/collect',
        json,
        JSON.stringify(
          pick([
            { site: 5, visitor: [], events: 'x' },
            { site: SITE, events: [] },
            { site: SITE, visitor: 'v', events: {} },
            null,
            [],
            'str',
            42,
            { site: SITE, visitor: 'v{x}', events: [{}] },
          ]),
        ),
        400,
        [[-1, 'invalid_batch']],
      ),
    () => c('too many events', '/v1/collect', json, JSON.stringify(collectBody(Array.from({ length: 101 }, goodCollectEvent))), 400, [[-1, 'invalid_batch']]),
    () => {
      const bad = Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => pick(badCollectEvents)());
      return c(
        'bad events',
        '/v1/collect',
        json,
        JSON.stringify(collectBody(bad.map(([e]) => e))),
        400,
        bad.map(([, r], i) => [i, r]),
      );
    },
    () => {
      // Good and bad events in one batch: the good ones must land, the bad ones be reported by index.
      const events: unknown[] = [];
      const dead: [number, string][] = [];
      const valid: string[] = [];
      for (let i = 0; i < 2 + Math.floor(rnd() * 5); i++) {
        if (rnd() < 0.5) {
          const e = goodCollectEvent();
          valid.push(e.id);
          events.push(e);
        } else {
          const [e, reason] = pick(badCollectEvents)();
          dead.push([i, reason]);
          events.push(e);
        }
      }
      if (dead.length === 0) {
        dead.push([events.length, 'invalid_event']);
        events.push(badCollectEvents[0]!()[0]);
      }
      return c('mixed batch', '/v1/collect', json, JSON.stringify(collectBody(events)), 400, dead, valid);
    },
    () => c('deeply nested body', '/v1/collect', json, `${'['.repeat(20_000)}${']'.repeat(20_000)}`, 400, [[-1, 'too_deep']]),
    () => {
      let deep: unknown = 1;
      for (let i = 0; i < 40; i++) deep = { a: deep };
      return c('deep props', '/v1/collect', json, JSON.stringify(collectBody([{ ...goodCollectEvent(), type: 'track', name: 'x', props: deep }])), 400, [
        [-1, 'too_deep'],
      ]);
    },
    () =>
      c('huge body', '/v1/collect', json, JSON.stringify(collectBody([{ ...goodCollectEvent(), url: `/${'x'.repeat(MAX_BODY)}` }])), 413, [
        [-1, 'body_too_large'],
      ]),
    () =>
      c(
        'wrong media type',
        '/v1/collect',
        { 'content-type': pick(['application/xml', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', 'image/png', 'application/jsonp']) },
        JSON.stringify(collectBody([goodCollectEvent()])),
        415,
        [[-1, 'unsupported_media_type']],
      ),
    () =>
      c(
        'content encoding on collect',
        '/v1/collect',
        { ...json, 'content-encoding': pick(['gzip', 'br', 'deflate', 'x-evil']) },
        JSON.stringify(collectBody([goodCollectEvent()])),
        415,
        [[-1, 'unsupported_encoding']],
      ),
    () => c('unknown site', '/v1/collect', json, JSON.stringify({ ...collectBody([goodCollectEvent()]), site: `nowhere-${RUN}` }), 403, [[-1, 'unknown_site']]),
    () =>
      c(
        'foreign origin',
        '/v1/collect',
        { ...json, origin: pick(['https://evil.example', 'null', 'https://good.example.evil.example']) },
        JSON.stringify(collectBody([goodCollectEvent()])),
        403,
        [[-1, 'origin_not_allowed']],
      ),
    () => c('no write key', '/v1/batch', json, JSON.stringify({ batch: [goodSegmentEvent()] }), 401, [[-1, 'unknown_write_key']]),
    () =>
      c(
        'wrong write key',
        '/v1/batch',
        { ...json, authorization: pick([basic('wk_wrong_00000000'), 'Bearer x', 'Basic !!!', `Basic ${'A'.repeat(5000)}`]) },
        JSON.stringify({ batch: [goodSegmentEvent()] }),
        401,
        [[-1, 'unknown_write_key']],
      ),
    () => {
      const bad = Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => pick(badSegmentEvents)());
      return c(
        'bad segment events',
        '/v1/batch',
        segHeaders,
        JSON.stringify({ batch: bad }),
        400,
        bad.map((_, i) => [i, 'invalid_event']),
      );
    },
    () => {
      const good = goodSegmentEvent();
      return c(
        'mixed segment batch',
        '/v1/batch',
        segHeaders,
        JSON.stringify({ batch: [good, pick(badSegmentEvents)()] }),
        400,
        [[1, 'invalid_event']],
        [good.messageId],
      );
    },
    () =>
      c('segment envelope', '/v1/batch', segHeaders, JSON.stringify(pick([{ batch: [] }, { batch: 'x' }, { events: [] }, []])), 400, [[-1, 'invalid_batch']]),
    () =>
      c('segment single not an object', pick(['/v1/track', '/v1/page', '/v1/identify']), segHeaders, JSON.stringify(pick([[], 'str', 5, null])), 400, [
        [-1, 'invalid_event'],
      ]),
    () => c('segment truncated', '/v1/batch', segHeaders, JSON.stringify({ batch: [goodSegmentEvent()] }).slice(0, 20), 400, [[-1, 'malformed_json']]),
    () => c('segment bad gzip', '/v1/batch', { ...segHeaders, 'content-encoding': 'gzip' }, 'certainly not gzip', 400, [[-1, 'malformed_gzip']]),
    () =>
      c('segment gzip bomb', '/v1/batch', { ...segHeaders, 'content-encoding': 'gzip' }, new Uint8Array(gzipSync(Buffer.alloc(2 * 1024 * 1024, 0x20))), 413, [
        [-1, 'body_too_large'],
      ]),
    () =>
      c(
        'unsigned redirect',
        `/v1/email/click?site=${SITE}&user=u&campaign=c&url=${encodeURIComponent(pick(['https://evil.example/', '//evil.example', 'javascript:alert(1)', 'data:text/html,x']))}`,
        {},
        undefined,
        400,
        [[-1, pick(['unsigned_redirect', 'invalid_target'])]],
        [],
        'GET',
      ),
    () => c('huge header', '/v1/collect', { ...json, 'x-junk': 'j'.repeat(20_000) }, JSON.stringify(collectBody([goodCollectEvent()])), 431, []),
  ];
  const made = pick(kinds)();
  // The unsigned-redirect reason depends on the URL; fix it up after the fact.
  if (made.kind === 'unsigned redirect') {
    const target = decodeURIComponent(made.path.split('url=')[1]!);
    made.dead = [[-1, target === 'https://evil.example/' ? 'unsigned_redirect' : 'invalid_target']];
  }
  return made;
}

export function goodCase(): Case {
  const r = rnd();
  if (r < 0.5) {
    const events = Array.from({ length: 1 + Math.floor(rnd() * 5) }, goodCollectEvent);
    const headers = rnd() < 0.5 ? { ...json, origin: ORIGIN } : { 'content-type': 'text/plain;charset=UTF-8' };
    return {
      kind: 'good collect',
      method: 'POST',
      path: '/v1/collect',
      headers,
      body: JSON.stringify(collectBody(events)),
      status: 202,
      dead: [],
      valid: events.map((e) => e.id),
    };
  }
  if (r < 0.85) {
    const events = Array.from({ length: 1 + Math.floor(rnd() * 5) }, goodSegmentEvent);
    const gzip = rnd() < 0.3;
    const text = JSON.stringify({ batch: events, sentAt: new Date().toISOString() });
    return {
      kind: 'good segment',
      method: 'POST',
      path: '/v1/batch',
      headers: gzip ? { ...segHeaders, 'content-encoding': 'gzip' } : segHeaders,
      body: gzip ? new Uint8Array(gzipSync(text)) : text,
      status: 200,
      dead: [],
      valid: events.map((e) => e.messageId),
    };
  }
  const campaign = `c-${id()}`;
  return {
    kind: 'good pixel',
    method: 'GET',
    path: `/v1/email/open?site=${SITE}&user=u-1&campaign=${campaign}`,
    headers: { accept: 'image/*' },
    status: 200,
    dead: [],
    valid: [campaign],
  };
}

/**
 * Raw-socket abuse the fetch API refuses to send. Node's HTTP parser answers most with a 400 before
 * the app sees them; the ones with sane headers but a broken body reach the app, which dead-letters
 * them (`unreadable_body`) instead of failing with a 500.
 */
export const RAW_ABUSE: { text: string; hangUp?: boolean; dead?: string }[] = [
  { text: 'POST /v1/collect HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' },
  { text: 'POST /v1/collect HTTP/1.1\r\nHost: x\r\nBad Header: \u0001\r\nContent-Length: 2\r\n\r\n{}' },
  { text: 'POST /v1/collect HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}' },
  { text: 'POST /v1/collect HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}' },
  { text: 'GARBAGE\r\n\r\n' },
  {
    text: `POST /v1/collect HTTP/1.1\r\nHost: x\r\nX-Request-Id: h${RUN}-raw-chunk\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`,
    dead: 'unreadable_body',
  },
  {
    text: `POST /v1/batch HTTP/1.1\r\nHost: x\r\nX-Request-Id: h${RUN}-raw-cut\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"batch":`,
    hangUp: true,
    dead: 'unreadable_body',
  },
];

export function rawRequest(port: number, abuse: (typeof RAW_ABUSE)[number]): Promise<number> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(abuse.text);
      if (abuse.hangUp) setTimeout(() => socket.destroy(), 200);
    });
    let data = '';
    socket.on('data', (d) => (data += d.toString()));
    socket.on('error', () => {});
    socket.setTimeout(5000, () => socket.destroy());
    socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0)));
  });
}
