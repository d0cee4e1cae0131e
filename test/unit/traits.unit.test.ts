import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { importTraits, formatSummary, ImportError } from '../../apps/import-traits.js';
import { AudienceDefinition } from '../../contract/audience.js';
import { RawEvent, TOPICS, TRAIT_LIMITS, traitsProblem, utf8Length } from '../../contract/raw-event.js';
import { compileAudience } from '../../history/audiences/membership.js';
import { createAutomation } from '../../history/automation/evaluate.js';
import { decodeState, decodeTrait, encodeTrait, F, TRAIT_PREFIX, type Fields } from '../../history/fold/codec.js';
import { planPerson, type BatchRecord } from '../../history/fold/person-batch.js';
import { compileTopicMap, DEFAULT_TOPIC_MAP, foldOptionsOf } from '../../history/fold/topic-map.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { DEFAULT_SEEN_SIZE } from '../../history/store/store.js';
import { personView } from '../../history/store/views.js';
import { createBatchHandler } from '../../history/worker/batch.js';
import { readRecord } from '../../history/worker/read-record.js';
import { createIngestApp } from '../../ingest/app.js';
import { pickTraits, toRawMessage } from '../../ingest/raw.js';
import { compileSites, SitesFile } from '../../ingest/sites.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import type { ConsumedMessage } from '../../lib/log.js';
import { createLogger } from '../../lib/logger.js';
import { rawRecordsOf, recordsOf } from '../support/log-records.js';

const KEY = 'wk_traits_0123456789';
const T0 = 1_700_000_000_000;
const basic = `Basic ${Buffer.from(`${KEY}:`).toString('base64')}`;

function sitesWith(traits: string[] | undefined) {
  return compileSites(SitesFile.parse({ sites: [{ id: 'shop', origins: ['*'], writeKeys: [KEY], ...(traits ? { privacy: { traits } } : {}) }] }));
}

function ingest(traits?: string[]) {
  const log = new PartitionedLog(2);
  const app = createIngestApp({
    producer: log.producer(),
    logger: createLogger('test', 'silent'),
    maxBodyBytes: 256 * 1024,
    retryAfterSeconds: 2,
    sites: sitesWith(traits),
  });
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    app.request(path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { post, raw: () => recordsOf<RawEvent>(log, TOPICS.raw) };
}

const rawIdentify = (extra: Record<string, unknown>) => ({
  v: 1,
  id: 'i-1',
  site: 'shop',
  person: 'u-1',
  user: 'u-1',
  channel: 'server',
  type: 'identify',
  ts: T0,
  rt: T0,
  ...extra,
});

describe('traits on the raw record: only what the site allow-lists', () => {
  it('keeps none by default, from the snippet and from the Segment API', async () => {
    const { post, raw } = ingest();
    await post('/v1/collect', { site: 'shop', visitor: 'v-1', events: [{ id: 'c1', type: 'identify', ts: T0, user: 'u-1', props: { plan: 'pro' } }] });
    await post('/v1/identify', { userId: 'u-1', messageId: 's1', traits: { plan: 'pro', email: 'a@b.example' } }, { authorization: basic });
    expect(raw().map((r) => [r.id, r.traits])).toEqual([
      ['c1', undefined],
      ['s1', undefined],
    ]);
  });

  it('carries the allow-listed ones, flattened, from every channel; personal-looking names only when named', async () => {
    const { post, raw } = ingest(['plan', 'seats', 'company', 'email']);
    await post('/v1/collect', {
      site: 'shop',
      visitor: 'v-1',
      events: [{ id: 'c1', type: 'identify', ts: T0, user: 'u-1', props: { plan: 'pro', seats: 12, phone: '+49 30 1234567', tier: 'gold' } }],
    });
    await post(
      '/v1/identify',
      { userId: 'u-2', messageId: 's1', traits: { plan: 'team', company: { name: 'Acme', size: 40 }, email: 'b@example.com', name: 'Bob', trial: true } },
      { authorization: basic },
    );
    // A track's properties are no traits, allow-listed names or not.
    await post('/v1/track', { userId: 'u-2', messageId: 's2', event: 'Signed Up', properties: { plan: 'team' } }, { authorization: basic });
    const byId = new Map(raw().map((r) => [r.id, r]));
    expect(byId.get('c1')?.traits).toEqual({ plan: 'pro', seats: 12 });
    // `email` is kept only because the site named it; `name` and `trial` are not on the list.
    expect(byId.get('s1')?.traits).toEqual({ plan: 'team', 'company.name': 'Acme', 'company.size': 40, email: 'b@example.com' });
    expect(byId.get('s2')?.traits).toBeUndefined();
    // As before, the identify's props keep them too (a topic-map rule may read props).
    expect(byId.get('s1')?.props).toMatchObject({ plan: 'team' });
  });

  it('drops what the person could not keep, and says why', () => {
    const thousand = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`t${i}`, i]));
    const many = pickTraits(thousand);
    expect(Object.keys(many.traits!)).toHaveLength(TRAIT_LIMITS.count);
    expect(many.dropped).toHaveLength(1000 - TRAIT_LIMITS.count);
    expect(new Set(many.dropped.map((d) => d.reason))).toEqual(new Set(['too_many_traits']));

    const hostile = JSON.parse(
      `{"__proto__": "x", "constructor": "y", "mb": "${'x'.repeat(1024 * 1024)}", "nothing": null, "ok": "yes", "${'n'.repeat(63)}": 1, "café": "x", "_dropped": 3, "fits": "${'é'.repeat(31)}", "over": "${'é'.repeat(32)}"}`,
    ) as Record<string, string | number | null>;
    const picked = pickTraits(hostile);
    expect(picked.traits).toEqual({ ok: 'yes', fits: 'é'.repeat(31) });
    expect(Object.getPrototypeOf(picked.traits)).toBe(Object.prototype);
    expect(Object.fromEntries(picked.dropped.map((d) => [d.name.slice(0, 10), d.reason]))).toEqual({
      ['__proto__']: 'bad_name',
      constructo: 'bad_name',
      mb: 'value_too_long',
      nothing: 'not_scalar',
      nnnnnnnnnn: 'bad_name',
      café: 'bad_name',
      over: 'value_too_long',
    });
    expect(utf8Length('é'.repeat(32))).toBe(64);
    expect(utf8Length('😀')).toBe(4);
  });

  it('refuses, on clicks.raw, a record whose traits are out of bounds, whoever wrote it, with the reason', () => {
    const cases: [string, RegExp][] = [
      [JSON.stringify(rawIdentify({ traits: Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`t${i}`, i])) })), /traits: at most 32/],
      [JSON.stringify(rawIdentify({ traits: { plan: 'x'.repeat(1024 * 1024) } })), /"plan": a value of at most 63 bytes/],
      ['{"v":1,"id":"i","site":"shop","person":"u","channel":"web","type":"identify","ts":1,"rt":1,"traits":{"__proto__":"x"}}', /__proto__/],
      [JSON.stringify(rawIdentify({ traits: { plan: { nested: 1 } } })), /a string, a finite number or a boolean/],
      [JSON.stringify(rawIdentify({ traits: { plan: ['a'] } })), /a string, a finite number or a boolean/],
      [JSON.stringify(rawIdentify({ traits: { plan: null } })), /a string, a finite number or a boolean/],
      [JSON.stringify(rawIdentify({ traits: ['plan'] })), /an object of name: value/],
      [JSON.stringify(rawIdentify({ traits: { 'plan type': 'x' } })), /trait name "plan type"/],
    ];
    for (const [text, reason] of cases) {
      const r = readRecord(text);
      expect(r.ok, text.slice(0, 80)).toBe(false);
      if (!r.ok) expect(r.detail).toMatch(reason);
    }
    const ok = readRecord(JSON.stringify(rawIdentify({ traits: { plan: 'pro', seats: 3, trial: false } })));
    expect(ok.ok && ok.event.traits).toEqual({ plan: 'pro', seats: 3, trial: false });
    expect(traitsProblem({ plan: 'pro' })).toBeNull();
    expect(RawEvent.safeParse(rawIdentify({ traits: { plan: Number.NaN } })).success).toBe(false);
  });

  it('is refused with the event by the Segment API past its own bounds (1,000 traits, a 1 MB value)', async () => {
    const { post, raw } = ingest(['*']);
    const thousand = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`t${i}`, i]));
    expect((await post('/v1/identify', { userId: 'u-1', messageId: 'a', traits: thousand }, { authorization: basic })).status).toBe(400);
    expect((await post('/v1/identify', { userId: 'u-1', messageId: 'b', traits: { plan: 'x'.repeat(1024 * 1024) } }, { authorization: basic })).status).toBe(
      413,
    );
    // Within the API's bounds, allow-listed by `*`: the record keeps those that fit, the event goes on.
    const twenty = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`t${i}`, `v${i}`]));
    expect((await post('/v1/identify', { userId: 'u-1', messageId: 'c', traits: { long: 'x'.repeat(100), ...twenty } }, { authorization: basic })).status).toBe(
      200,
    );
    const records = raw();
    expect(records.map((r) => r.id)).toEqual(['c']);
    expect(records[0]!.traits).toEqual(twenty);
  });
});

const FOLD = { ladder: ['intro', 'detail', 'purchase'], quietMs: 30 * 86_400_000, seenSize: 32 };
let offset = 0;
const rec = (person: string, extra: Partial<BatchRecord> = {}): BatchRecord => ({ offset: ++offset, person, event: null, rt: T0 + offset, ...extra });
const page = (topic: string, stage = 0) => ({ id: `e${++offset}`, ts: T0 + offset, channel: 'web', topic, stage });
/** Applies a plan the way both stores do: set, then delete. */
const apply = (fields: Fields | null, plan: ReturnType<typeof planPerson>): Fields => {
  const out: Fields = { ...fields, ...plan.set };
  for (const f of plan.del) delete out[f];
  return out;
};

describe('the fold keeps traits on the person', () => {
  it('encodes each trait as a short field with its type, and reads it back', () => {
    for (const v of ['pro', '', 'n42', 42, -1.5e-7, 0, true, false]) expect(decodeTrait(encodeTrait(v))).toBe(v);
    expect(encodeTrait('pro')).toBe('spro');
    expect(encodeTrait(12)).toBe('n12');
    // What no fold wrote is not guessed at.
    for (const bad of ['', 'x', 'n', 'nabc', 'tt', 'f0']) expect(decodeTrait(bad)).toBeUndefined();
    // The longest a record can carry still fits Redis's compact encoding (64 bytes a field and a value).
    expect(Buffer.byteLength(TRAIT_PREFIX + 'n'.repeat(TRAIT_LIMITS.nameLength))).toBeLessThanOrEqual(64);
    expect(Buffer.byteLength(encodeTrait('é'.repeat(31)))).toBeLessThanOrEqual(64);
    expect(Buffer.byteLength(encodeTrait(-Number.MAX_VALUE))).toBeLessThanOrEqual(64);
  });

  it('writes a fresh identify’s traits, later values overwrite, the others stay; a repeat writes nothing new', () => {
    let f = apply(null, planPerson('u-1', null, [rec('u-1', { traits: { plan: 'free', seats: 1 } })], '0', FOLD));
    expect(decodeState(f).traits).toEqual(
      new Map<string, unknown>([
        ['plan', 'free'],
        ['seats', 1],
      ]),
    );
    const second = [rec('u-1', { traits: { plan: 'pro' } }), rec('u-1', { traits: { trial: false } })];
    const plan = planPerson('u-1', f, second, '0', FOLD);
    // Only what changed is written.
    expect(
      Object.keys(plan.set)
        .filter((k) => k.startsWith(TRAIT_PREFIX))
        .sort(),
    ).toEqual(['t:plan', 't:trial']);
    f = apply(f, plan);
    expect(personView('u-1', f, FOLD.ladder).traits).toEqual({ plan: 'pro', seats: 1, trial: false });
    // Redelivered: the offsets say it was applied.
    expect(planPerson('u-1', f, second, '0', FOLD).set).toEqual({});
  });

  it('keeps at most 32: a new name past them is ignored, the ones kept still change', () => {
    const first = Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`t${i}`, i]));
    let f = apply(null, planPerson('u-1', null, [rec('u-1', { traits: first })], '0', FOLD));
    f = apply(f, planPerson('u-1', f, [rec('u-1', { traits: { extra: 'x', t0: 'changed' } })], '0', FOLD));
    const traits = decodeState(f).traits!;
    expect(traits.size).toBe(32);
    expect(traits.has('extra')).toBe(false);
    expect(traits.get('t0')).toBe('changed');
  });

  it('merges a visitor’s traits into the person on identify: the person’s own win', () => {
    // The visitor (an anonymous identify, or an earlier import under the visitor id) had some.
    const visitor = apply(null, planPerson('v-1', null, [rec('v-1', { event: page('product:a'), traits: { plan: 'free', source: 'ad' } })], '0', FOLD));
    const person = apply(null, planPerson('u-1', null, [rec('u-1', { traits: { plan: 'pro' } })], '0', FOLD));
    const plan = planPerson('u-1', person, [rec('u-1', { link: 'v-1', at: T0, channel: 'web', traits: { seats: 3 } })], '0', FOLD, new Map([['v-1', visitor]]));
    const merged = apply(person, plan);
    expect(personView('u-1', merged, FOLD.ladder)).toMatchObject({ linkedIds: ['v-1'], traits: { plan: 'pro', source: 'ad', seats: 3 } });
    expect(plan.seal.map((s) => s.visitor)).toEqual(['v-1']);
  });

  it('shows {} for a person without traits, and a person with traits only', () => {
    const f = apply(null, planPerson('u-1', null, [rec('u-1', { event: page('product:a') })], '0', FOLD));
    expect(personView('u-1', f, FOLD.ladder).traits).toEqual({});
    const only = apply(null, planPerson('u-2', null, [rec('u-2', { traits: { plan: 'pro' } })], '0', FOLD));
    expect(personView('u-2', only, FOLD.ladder)).toEqual({ person: 'u-2', linkedIds: [], traits: { plan: 'pro' }, dialogues: [], rfm: null });
    expect(only[F.version]).toBe('1');
  });

  it('lets audiences see the traits the fold just wrote', () => {
    const ctx = { ladder: FOLD.ladder, quietMs: FOLD.quietMs, stallRules: new Set<string>() };
    const automation = createAutomation({
      ladder: FOLD.ladder,
      quietMs: FOLD.quietMs,
      stallRules: [],
      audiences: [{ name: 'pro', compiled: compileAudience(AudienceDefinition.parse({ trait: { name: 'plan', equals: 'pro' } }), ctx) }],
    });
    const joined = planPerson('u-1', null, [rec('u-1', { traits: { plan: 'pro' } })], '0', FOLD, new Map(), undefined, automation);
    expect(joined.automation[0]?.join.map((j) => j.audience)).toEqual(['pro']);
    const f = apply(null, joined);
    const left = planPerson('u-1', f, [rec('u-1', { traits: { plan: 'free' } })], '0', FOLD, new Map(), undefined, automation);
    expect(left.automation[0]?.leave).toEqual(['pro']);
    expect(left.transitions.filter((t) => 'kind' in t && t.kind === 'exited')).toHaveLength(1);
  });
});

/** A worker over the embedded log and the in-memory store, as `npm start` runs it. */
function worker() {
  // One partition: the records read back in the order the file has them.
  const log = new PartitionedLog(1);
  const map = compileTopicMap(DEFAULT_TOPIC_MAP);
  const store = new MemoryHistoryStore(foldOptionsOf(map, DEFAULT_SEEN_SIZE));
  const handle = createBatchHandler({ store, topicMap: map, producer: log.producer(), logger: createLogger('test', 'silent') });
  return {
    log,
    store,
    /** Folds what is on clicks.raw, partition by partition. */
    drain: async () => {
      const parts = log.read(TOPICS.raw);
      for (let p = 0; p < parts.length; p++) {
        const messages: ConsumedMessage[] = parts[p]!;
        if (messages.length > 0) await handle({ topic: TOPICS.raw, partition: p, messages });
      }
    },
  };
}

const csv = (text: string) => Readable.from([Buffer.from(text)]);

describe('npm run import-traits', () => {
  const site = sitesWith(['plan', 'seats', 'trial', 'company']).byId('shop')!;

  it('sends one identify per row as ingest builds it, the worker folds them into the people', async () => {
    const w = worker();
    const progress: number[] = [];
    const summary = await importTraits({
      input: csv(
        '\uFEFFuser_id,plan,seats:number,trial:boolean,email,company.name\r\nu-1,pro,12,false,a@b.example,Acme\r\nu-2,team,,true,,"Smith, Jones & Co"\r\nu-1,enterprise,,,,\r\n',
      ),
      site,
      producer: w.log.producer(),
      now: () => T0,
      every: 2,
      onProgress: (s) => progress.push(s.rows),
    });
    expect(summary).toMatchObject({ rows: 3, sent: 3, refused: {}, valuesNotSent: 1 });
    expect(summary.columnsRefused).toEqual([{ column: 'email', reason: 'column_not_allowed', detail: expect.stringContaining('privacy.traits') }]);
    expect(progress).toEqual([2, 3]);

    const records = rawRecordsOf(w.log);
    expect(records.map((r) => [r.key, r.type, r.channel, r.traits])).toEqual([
      ['u-1', 'identify', 'import', { plan: 'pro', seats: 12, trial: false, 'company.name': 'Acme' }],
      ['u-2', 'identify', 'import', { plan: 'team', trial: true, 'company.name': 'Smith, Jones & Co' }],
      ['u-1', 'identify', 'import', { plan: 'enterprise' }],
    ]);
    expect(JSON.stringify(records)).not.toContain('a@b.example');
    // Exactly ingest's builder: the same record from the same input.
    const again = JSON.parse(
      toRawMessage(
        {
          id: records[1]!.id,
          site: 'shop',
          person: 'u-2',
          user: 'u-2',
          channel: 'import',
          type: 'identify',
          ts: T0,
          props: { plan: 'team', trial: true, 'company.name': 'Smith, Jones & Co' },
        },
        { rt: T0, ua: undefined, bot: false, ip: undefined },
        site.privacy,
      ).value,
    ) as RawEvent;
    expect(records[1]).toMatchObject(again);

    await w.drain();
    expect((await w.store.getPerson('u-1'))?.traits).toEqual({ plan: 'enterprise', seats: 12, trial: false, 'company.name': 'Acme' });
    expect(await w.store.getPerson('u-2')).toMatchObject({ traits: { plan: 'team', trial: true }, dialogues: [] });
  });

  it('refuses rows by reason and counts them; columns the site does not allow-list are never sent', async () => {
    const w = worker();
    const long = 'x'.repeat(64);
    const wide = Array.from({ length: 40 }, (_, i) => `c${i}`);
    const sites = compileSites(SitesFile.parse({ sites: [{ id: 'shop', privacy: { traits: ['plan', 'seats'] } }] }));
    const wideSite = compileSites(SitesFile.parse({ sites: [{ id: 'shop', privacy: { traits: ['*'] } }] })).byId('shop')!;
    const summary = await importTraits({
      input: csv(
        [
          'user_id,plan,seats:number,phone',
          'u-1,pro,3,',
          '"has space",pro,3,',
          ',pro,3,',
          `u-3,${long},3,`,
          'u-4,pro,many,',
          'u-5,,,+49 30 1234567',
          'u-6,,,',
          'u-7,pro',
          `u-8,"${'y'.repeat(1024 * 1024)}",1,`,
          'u-9,"team",4,+1 555 0100',
        ].join('\n'),
      ),
      site: sites.byId('shop')!,
      producer: w.log.producer(),
      now: () => T0,
    });
    expect(summary).toMatchObject({
      rows: 10,
      sent: 2,
      refused: { bad_user_id: 2, value_too_long: 2, bad_value: 1, column_not_allowed: 1, no_traits: 1, bad_row: 1 },
      valuesNotSent: 1,
    });
    expect(summary.examples[0]).toEqual({ line: 3, reason: 'bad_user_id', detail: expect.stringContaining('"has space"') });
    expect(summary.columnsRefused.map((c) => c.column)).toEqual(['phone']);
    const text = JSON.stringify(recordsOf(w.log, TOPICS.raw));
    expect(text).not.toMatch(/555|1234567/);
    const printed = formatSummary(summary);
    expect(printed).toMatch(/^10 rows read, 2 records sent, 8 rows refused/);
    expect(printed).toContain('value_too_long: 2');
    expect(printed).toContain('column "phone" refused (column_not_allowed)');

    const tooMany = await importTraits({
      input: csv(`user_id,${wide.join(',')}\nu-1,${wide.map((_, i) => i).join(',')}\nu-2,${wide.map((_, i) => (i < 32 ? i : '')).join(',')}\n`),
      site: wideSite,
      producer: null,
    });
    expect(tooMany).toMatchObject({ rows: 2, sent: 1, refused: { too_many_traits: 1 } });
  });

  it('stops before sending anything when the header is not usable', async () => {
    for (const [text, reason] of [
      ['plan,seats\npro,3\n', /no user_id column/],
      ['user_id,plan,plan\nu-1,a,b\n', /"plan" appears twice/],
      ['', /empty/],
    ] as const) {
      await expect(importTraits({ input: csv(text), site, producer: null }), text).rejects.toThrow(ImportError);
      await expect(importTraits({ input: csv(text), site, producer: null })).rejects.toThrow(reason);
    }
    // A column that is no trait name is refused like one not allow-listed.
    const s = await importTraits({ input: csv('user_id,plan,Plan Type,__proto__\nu-1,pro,x,y\n'), site, producer: null });
    expect(s.columnsRefused.map((c) => [c.column, c.reason])).toEqual([
      ['Plan Type', 'bad_name'],
      ['__proto__', 'bad_name'],
    ]);
    expect(s.sent).toBe(1);
  });
});
