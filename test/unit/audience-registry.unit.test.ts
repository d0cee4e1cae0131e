import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { candidateTopics } from '../../history/automation/backfill.js';
import {
  AudienceConflictError,
  AudienceInputError,
  AudienceRegistry,
  loadAudiencesFile,
  MAX_AUDIENCES,
  MemoryDefinitions,
  openAudienceRegistry,
} from '../../history/automation/registry.js';
import type { FoldOptions } from '../../history/fold/fold.js';
import type { BatchRecord } from '../../history/fold/person-batch.js';
import { compileStallRules } from '../../history/stalls/rules.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import type { LogMessage, LogProducer } from '../../lib/log.js';

/**
 * The audience registry on its memory backend (the embedded mode): what it keeps, what it refuses
 * and how it says why, the audiences file, the automation it hands the store, and the backfill's
 * ticks. The Redis backend and the HTTP routes: test/int/audiences-api.int.test.ts.
 */
const DAY = 86_400_000;
const OPTIONS: FoldOptions = { ladder: ['intro', 'detail', 'purchase'], quietMs: 30 * DAY, seenSize: 32 };
const RULES = compileStallRules([{ name: 'quiet-at-detail', stage: 'detail', after: DAY, topics: 'product:*' }], OPTIONS.ladder, OPTIONS.quietMs).rules;
const DEF = { topic: 'product:*', atLeast: 'detail', notReached: 'purchase', activeWithin: '7d' };

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'audiences-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A producer that keeps what it is sent. */
function recordingProducer(): LogProducer & { sent: { topic: string; messages: LogMessage[] }[] } {
  const sent: { topic: string; messages: LogMessage[] }[] = [];
  return { sent, send: async (topic, messages) => void sent.push({ topic, messages }), ready: () => true, close: async () => {} };
}

const open: AudienceRegistry[] = [];
async function registry(opts: { store?: MemoryHistoryStore; producer?: LogProducer; file?: string; path?: string; rules?: typeof RULES } = {}) {
  const store = opts.store ?? new MemoryHistoryStore(OPTIONS);
  const r = await openAudienceRegistry({ store, stallRules: opts.rules ?? RULES, producer: opts.producer, file: opts.file, path: opts.path });
  open.push(r);
  return { registry: r, store };
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => r.close()));
});

/** The issues a bad definition is refused with. */
async function refusal(r: AudienceRegistry, name: string, definition: unknown) {
  const err = await r.put(name, definition).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, name).toBeInstanceOf(AudienceInputError);
  return (err as AudienceInputError).issues;
}

describe('audience registry (memory)', () => {
  it('creates, reads, lists, replaces and deletes', async () => {
    const { registry: r, store } = await registry();
    const created = await r.put('warm-leads', DEF);
    expect(created).toMatchObject({ created: true, changed: true, record: { name: 'warm-leads', definition: DEF, version: 1, source: 'api', backfill: null } });
    await r.put('buyers', { atLeast: 'purchase' });
    expect((await r.list()).map((a) => a.name)).toEqual(['buyers', 'warm-leads']);
    expect(await r.get('warm-leads')).toEqual(created.record);

    const same = await r.put('warm-leads', JSON.parse(JSON.stringify(DEF)));
    expect(same).toMatchObject({ created: false, changed: false, record: { version: 1 } });
    const changed = await r.put('warm-leads', { ...DEF, activeWithin: '3d' });
    expect(changed).toMatchObject({ created: false, changed: true, record: { version: 2, definition: { ...DEF, activeWithin: '3d' } } });

    const drop = vi.spyOn(store, 'dropAudience');
    expect(await r.delete('warm-leads')).toBe(true);
    expect(drop).toHaveBeenCalledWith('warm-leads');
    expect(await r.get('warm-leads')).toBeNull();
    expect(await r.delete('warm-leads')).toBe(false);
    expect((await r.list()).map((a) => a.name)).toEqual(['buyers']);
  });

  it('keeps the definitions in a file across a restart of the embedded mode', async () => {
    const path = join(dir, 'kept.json');
    const { registry: a } = await registry({ path });
    await a.put('warm-leads', DEF);
    await a.put('buyers', { atLeast: 'purchase' });
    await a.delete('buyers');
    const { registry: b } = await registry({ path });
    expect((await b.list()).map((x) => [x.name, x.version])).toEqual([['warm-leads', 1]]);
  });

  it('caps the number of audiences and the size of a definition', async () => {
    const { registry: r } = await registry();
    for (let i = 0; i < MAX_AUDIENCES; i++) await r.put(`a${i}`, { topic: `t:${i}` });
    const full = await r.put('one-more', DEF).catch((e: unknown) => e);
    expect(full).toBeInstanceOf(AudienceConflictError);
    expect((full as AudienceConflictError).code).toBe('too_many_audiences');
    // Replacing one at the cap is still allowed; deleting one makes room.
    expect((await r.put('a0', { topic: 't:zero' })).record.version).toBe(2);
    await r.delete('a1');
    expect((await r.put('one-more', DEF)).created).toBe(true);

    const [issue] = await refusal(r, 'big', { topic: `product:${'x'.repeat(20_000)}` });
    expect(issue).toEqual({ path: 'definition', message: 'a definition has at most 16384 bytes of JSON (this one 20020)' });
  });

  it('refuses bad definitions with the reason and where', async () => {
    const { registry: r } = await registry();
    const first = async (def: unknown) => (await refusal(r, 'bad', def))[0]!;
    expect(await first({ topic: 'product:*', atLeast: 'checkout' })).toEqual({
      path: 'definition',
      message: 'atLeast: "checkout" is not on the ladder (intro < detail < purchase)',
    });
    expect((await first({ stalled: 'no-such-rule' })).message).toMatch(/"no-such-rule" is not a stall rule of the topic map \(quiet-at-detail\)/);
    expect(await first({ topic: 'product:*', atleast: 'detail' })).toEqual({
      path: 'definition.atleast',
      message: 'unknown key "atleast": a dialogue condition has topic, atLeast, exactly, notReached, activeWithin, stalled',
    });
    expect(await first({ all: [{ topic: 'a' }, { any: [{ activeWithin: '3 days' }] }] })).toMatchObject({
      path: 'definition.all.1.any.0.activeWithin',
      message: expect.stringMatching(/not a whole number and a unit/),
    });
    expect(await first({ all: [] })).toEqual({ path: 'definition.all', message: '"all" takes a list of 1 to 64 conditions' });
    expect((await first({ topic: 'a', not: { topic: 'b' } })).message).toMatch(/"not" stands alone in its object/);
    expect((await first({ rfm: { recency: { atLeast: 9 } } })).path).toBe('definition.rfm.recency.atLeast');
    expect((await first({ exactly: 'purchase', notReached: 'detail' })).message).toMatch(/can never hold/);
    expect((await first({ topic: 'pro*duct' })).path).toBe('definition.topic');
    expect((await first({})).message).toMatch(/an empty condition/);
    for (const v of [5, 'all', null, [DEF], true]) expect((await first(v)).message).toMatch(/a condition is an object/);
    expect((await first(undefined)).message).toBe('the definition is not a JSON value');
    const cyclic: Record<string, unknown> = {};
    cyclic.not = cyclic;
    expect((await first(cyclic)).message).toBe('the definition is not a JSON value');
    expect(await r.list()).toEqual([]);
  });

  it('refuses hostile definitions without walking them', async () => {
    const { registry: r } = await registry();
    let deep: unknown = { topic: 'x' };
    for (let i = 0; i < 1000; i++) deep = { not: deep };
    expect((await refusal(r, 'deep', deep))[0]!.message).toBe('conditions nest at most 6 deep');
    let arrays: unknown = [];
    for (let i = 0; i < 1000; i++) arrays = [arrays];
    expect((await refusal(r, 'arrays', { all: [arrays] }))[0]).toMatchObject({
      path: 'definition.all.0',
      message: expect.stringMatching(/a condition is an object/),
    });
    let keyDeep: unknown = 'x';
    for (let i = 0; i < 1000; i++) keyDeep = { k: keyDeep };
    expect((await refusal(r, 'key-deep', { topic: keyDeep }))[0]!.path).toBe('definition.topic');
    const many = { any: Array.from({ length: 65 }, (_, i) => ({ topic: `t${i}` })) };
    expect((await refusal(r, 'many', many))[0]!.message).toMatch(/at most 64 conditions/);
    const huge = { topic: 'x'.repeat(100_000) };
    expect((await refusal(r, 'huge', huge))[0]!.message).toMatch(/at most 16384 bytes of JSON \(this one 100012\)/);
    expect(await r.list()).toEqual([]);
  });

  it('refuses bad names, and finds nothing under them', async () => {
    const { registry: r } = await registry();
    for (const name of ['', 'Upper', '-lead', '_x', 'a'.repeat(65), '../etc', 'a b', 'ä', '__proto__', 'x\n']) {
      expect(await refusal(r, name, DEF), name).toEqual([{ path: 'name', message: expect.stringMatching(/an audience name is/) }]);
      expect(await r.get(name)).toBeNull();
      expect(await r.delete(name)).toBe(false);
    }
    // Names that are also Object.prototype's keys are names like any other.
    await r.put('constructor', DEF);
    await r.put('hasownproperty', DEF);
    expect((await r.list()).map((a) => a.name)).toEqual(['constructor', 'hasownproperty']);
  });
});

describe('the audiences file', () => {
  const file = async (name: string, text: string) => {
    const path = join(dir, name);
    await writeFile(path, text);
    return path;
  };

  it('gives read-only audiences, kept in step with the file', async () => {
    const path = await file('a.json', JSON.stringify({ audiences: { vip: { atLeast: 'purchase' }, 'warm-leads': DEF } }));
    const { registry: r, store } = await registry({ file: path });
    expect((await r.list()).map((a) => [a.name, a.source, a.version])).toEqual([
      ['vip', 'file', 1],
      ['warm-leads', 'file', 1],
    ]);
    for (const attempt of [() => r.put('vip', DEF), () => r.delete('vip')]) {
      const err = await attempt().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AudienceConflictError);
      expect((err as AudienceConflictError).code).toBe('read_only_audience');
    }
    // The same file again changes nothing; a changed one bumps what changed and drops what is gone.
    await r.syncFile({ vip: { atLeast: 'purchase' }, 'warm-leads': DEF });
    expect((await r.get('vip'))!.version).toBe(1);
    const drop = vi.spyOn(store, 'dropAudience');
    await r.syncFile({ vip: { exactly: 'purchase' } });
    expect((await r.list()).map((a) => [a.name, a.version])).toEqual([['vip', 2]]);
    expect(drop).toHaveBeenCalledWith('warm-leads');
  });

  it('takes over an API audience of the same name', async () => {
    const { registry: r } = await registry();
    await r.put('vip', DEF);
    await r.syncFile({ vip: { atLeast: 'purchase' } });
    expect(await r.get('vip')).toMatchObject({ source: 'file', version: 2, definition: { atLeast: 'purchase' } });
  });

  it('refuses a bad file, naming the file, the audience and the problem, and writes nothing', async () => {
    const bad = await file('bad.json', JSON.stringify({ audiences: { fine: DEF, broken: { atLeast: 'checkout' }, Bad: DEF } }));
    await expect(registry({ file: bad })).rejects.toThrow(
      `${bad}: audiences.broken: atLeast: "checkout" is not on the ladder (intro < detail < purchase)\n${bad}: audiences.Bad: an audience name is`,
    );
    await expect(loadAudiencesFile(await file('syntax.json', '{"audiences": {'))).rejects.toThrow(/syntax\.json: not valid JSON/);
    await expect(loadAudiencesFile(await file('list.json', '{"audiences": []}'))).rejects.toThrow(/expected \{"audiences"/);
    await expect(loadAudiencesFile(await file('extra.json', '{"audiences": {}, "more": 1}'))).rejects.toThrow(/unknown key "more"/);
    await expect(loadAudiencesFile(join(dir, 'missing.json'))).rejects.toThrow(/ENOENT/);
    const tooMany = Object.fromEntries(Array.from({ length: MAX_AUDIENCES + 1 }, (_, i) => [`a${i}`, DEF]));
    const { registry: r } = await registry();
    await expect(r.syncFile(tooMany, 'f.json')).rejects.toThrow('f.json: at most 64 audiences (it has 65)');
    expect(await r.list()).toEqual([]);
  });
});

describe('the automation the registry hands the store', () => {
  it('follows the definitions: stall rules alone, audiences, none at all', async () => {
    const { registry: r, store } = await registry();
    const w = await r.watch(store, RULES, { everyMs: 10 });
    expect(store.automation()).toMatchObject({ audiences: [], stallRules: [{ name: 'quiet-at-detail', stage: 1, afterMs: DAY, topics: 'product:*' }] });
    await r.put('warm-leads', DEF);
    await r.put('buyers', { atLeast: 'purchase' });
    // In one process a definition is in force when put resolves.
    expect(store.automation()!.audiences).toEqual(['buyers', 'warm-leads']);
    await r.delete('buyers');
    expect(store.automation()!.audiences).toEqual(['warm-leads']);
    await w.stop();

    const bare = new MemoryHistoryStore(OPTIONS);
    const w2 = await r.watch(bare, [], { everyMs: 10 });
    expect(bare.automation()!.audiences).toEqual(['warm-leads']);
    await r.delete('warm-leads');
    expect(bare.automation()).toBeNull();
    await w2.stop();
  });

  it('picks up a change made by another registry on the same definitions, and leaves out what no longer compiles', async () => {
    const backend = await MemoryDefinitions.open();
    const store = new MemoryHistoryStore(OPTIONS);
    const writer = new AudienceRegistry(backend, { store, stallRules: RULES, settleMs: 0 });
    await writer.put('stalled-carts', { stalled: 'quiet-at-detail' });
    await writer.put('warm-leads', DEF);
    // A process whose topic map has no such rule any more: the audience that names it is left out.
    const reader = new AudienceRegistry(backend, { store, stallRules: [], settleMs: 0 });
    open.push(writer, reader);
    const w = await reader.watch(store, [], { everyMs: 5 });
    expect(store.automation()!.audiences).toEqual(['warm-leads']);
    await writer.put('buyers', { atLeast: 'purchase' });
    await vi.waitFor(() => expect(store.automation()!.audiences).toEqual(['buyers', 'warm-leads']));
    await w.stop();
  });
});

describe('backfill', () => {
  const fold = async (store: MemoryHistoryStore, people: [string, string, number][]) => {
    let offset = 0;
    const now = Date.now();
    const records: BatchRecord[] = people.map(([person, topic, stage], i) => ({
      offset: offset++,
      person,
      event: { id: `e-${i}`, ts: now - DAY, channel: 'web', topic, stage },
    }));
    const o = await store.foldBatch('clicks.raw/0', records);
    await o.published();
  };

  it('knows which topics a definition can match', () => {
    const names = (d: unknown) => candidateTopics(d as never)?.map((p) => p.source) ?? null;
    expect(names(DEF)).toEqual(['product:*']);
    expect(names({ any: [{ topic: 'plan:pro' }, { topic: 'product:a' }, { topic: 'plan:pro' }] })).toEqual(['plan:pro', 'product:a']);
    expect(names({ all: [{ topic: 'product:*' }, { topic: 'product:a' }, { not: { topic: 'x' } }] })).toEqual(['product:a']);
    expect(names({ all: [{ rfm: { recency: { atLeast: 4 } } }, { topic: 'plan:pro' }] })).toEqual(['plan:pro']);
    expect(names({ any: [{ topic: 'plan:pro' }, { rfm: { recency: { atLeast: 4 } } }] })).toBeNull();
    expect(names({ not: { topic: 'product:a' } })).toBeNull();
    expect(names({ atLeast: 'detail' })).toBeNull();
  });

  it('sends one tick to each person who could be in the audience, in chunks, and keeps the progress', async () => {
    const store = new MemoryHistoryStore(OPTIONS);
    const people: [string, string, number][] = [];
    for (let i = 0; i < 2300; i++) people.push([`p${i}`, `product:${i % 7}`, i % 3]);
    // Two topics of one person, and people the definition cannot match.
    for (let i = 0; i < 300; i++) people.push([`p${i}`, 'product:extra', 1]);
    for (let i = 0; i < 50; i++) people.push([`q${i}`, 'plan:pro', 1]);
    await fold(store, people);
    const producer = recordingProducer();
    const { registry: r } = await registry({ store, producer });
    const { record } = await r.put('warm-leads', DEF);
    expect(record.backfill).toMatchObject({ state: 'running', total: 0, done: 0, finishedAt: null });
    await r.settled();

    expect(producer.sent.map((s) => [s.topic, s.messages.length])).toEqual([
      ['clicks.raw', 1000],
      ['clicks.raw', 1000],
      ['clicks.raw', 300],
    ]);
    const ticks = producer.sent.flatMap((s) => s.messages);
    expect(new Set(ticks.map((m) => m.key)).size).toBe(2300);
    expect(ticks.every((m) => /^p\d+$/.test(m.key))).toBe(true);
    const tick = JSON.parse(ticks[0]!.value) as Record<string, unknown>;
    expect(tick).toMatchObject({ type: 'tick', person: ticks[0]!.key, site: '-', channel: 'system' });
    const after = await r.get('warm-leads');
    expect(after!.backfill).toMatchObject({ state: 'done', total: 2300, done: 2300, startedAt: record.backfill!.startedAt });
    expect(after!.backfill!.finishedAt).toBeGreaterThanOrEqual(after!.backfill!.startedAt);

    // The same definition again: nothing to do.
    producer.sent.length = 0;
    await r.put('warm-leads', DEF);
    await r.settled();
    expect(producer.sent).toEqual([]);
    // A definition that can hold without a dialogue: everyone.
    await r.put('not-buyers', { not: { atLeast: 'purchase' } });
    await r.settled();
    expect(producer.sent.flatMap((s) => s.messages).length).toBe(2350);
  });

  it('a newer write of the definition stops the older backfill', async () => {
    const store = new MemoryHistoryStore(OPTIONS);
    await fold(
      store,
      Array.from({ length: 3000 }, (_, i): [string, string, number] => [`p${i}`, 'product:a', 1]),
    );
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const producer = recordingProducer();
    const slow: LogProducer = {
      ...producer,
      send: async (t, m) => {
        await gate;
        await producer.send(t, m);
      },
    };
    const { registry: r } = await registry({ store, producer: slow });
    await r.put('warm-leads', DEF);
    await vi.waitFor(async () => expect((await r.get('warm-leads'))!.backfill!.total).toBe(3000));
    await r.put('warm-leads', { ...DEF, activeWithin: '3d' });
    release();
    await r.settled();
    const b = (await r.get('warm-leads'))!;
    expect(b.version).toBe(2);
    expect(b.backfill).toMatchObject({ state: 'done', total: 3000, done: 3000 });
    // The first backfill gave up after the chunk it was sending (or before it): at most 1000 of its ticks, then the second's 3000.
    const sent = producer.sent.flatMap((s) => s.messages).length;
    expect(sent).toBeGreaterThanOrEqual(3000);
    expect(sent).toBeLessThanOrEqual(4000);
  });
});
