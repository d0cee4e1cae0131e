import { describe, expect, it } from 'vitest';
import type { ErasureRecord } from '../../contract/erasure.js';
import { PersonExport } from '../../contract/query.js';
import { TOPICS } from '../../contract/raw-event.js';
import type { BatchRecord } from '../../history/fold/person-batch.js';
import { createQueryApp } from '../../history/query/app.js';
import { followErasures, withErasureLog } from '../../history/store/erasure-log.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import { createLogger } from '../../lib/logger.js';
import { HOSTILE_PERSON_IDS } from '../support/hostile-cases.js';
import { recordsOf } from '../support/log-records.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';

const NOW = Date.UTC(2026, 5, 10, 12);
const KEY = 'full-key-0123456789abcdef';
const logger = createLogger('test', 'silent');

/** The query API over a store whose erase is recorded on an in-process log, as backends.ts composes it. */
async function setup() {
  const log = new PartitionedLog(2);
  const memory = new MemoryHistoryStore(FOLD_OPTIONS);
  const store = withErasureLog(memory, log.producer());
  const app = createQueryApp({ store, logger, keys: { full: [KEY], read: [] }, now: () => NOW, dashboard: false });
  let offset = 0;
  const rec = (person: string, stage: number, ts: number, topic = 'product:sku-1'): BatchRecord => ({
    offset: offset++,
    person,
    event: { id: `e-${offset}`, ts, channel: 'web', topic, stage, value: stage === 2 ? 50 : undefined },
  });
  const fold = async (records: BatchRecord[]) => (await store.foldBatch('clicks.raw/0', records)).published();
  await fold([rec('anon-1', 0, NOW - 5000), rec('anon-1', 1, NOW - 4000)]);
  await fold([
    rec('user-1', 2, NOW - 3000, 'product:sku-2'),
    { offset: offset++, person: 'user-1', event: null, link: 'anon-1', at: NOW - 2000, channel: 'web' },
  ]);
  const request = (method: string, path: string) => app.request(path, { method, headers: { authorization: `Bearer ${KEY}` } });
  const erasures = () => recordsOf<ErasureRecord>(log, TOPICS.erasures);
  return { log, memory, store, request, erasures };
}

describe('DELETE /v1/people/:person records the erasure for every reader of the log', () => {
  it('erases the person and their linked ids, and appends one compactable record per id', async () => {
    const { request, erasures, log } = await setup();
    const res = await request('DELETE', '/v1/people/anon-1');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ person: 'user-1', erasedIds: ['user-1', 'anon-1'], held: true, erasedAt: new Date(NOW).toISOString() });
    const records = log
      .read(TOPICS.erasures)
      .flat()
      .map((m) => m.key);
    expect(records.sort()).toEqual(['anon-1', 'user-1']);
    for (const r of erasures()) expect(r).toMatchObject({ v: 1, person: 'user-1', at: NOW, ids: expect.arrayContaining(['user-1', 'anon-1']) });
    expect((await request('GET', '/v1/people/user-1')).status).toBe(404);
    // A second erase is recorded too (200, held: false): its records on the way are skipped as well.
    const again = await request('DELETE', '/v1/people/user-1');
    expect(await again.json()).toMatchObject({ person: 'user-1', held: false });
  });

  it('refuses ids no raw record can carry, records nothing for them, and never fails', async () => {
    const { request, erasures } = await setup();
    for (const { path, erasable } of HOSTILE_PERSON_IDS) {
      const del = await request('DELETE', `/v1/people/${path}`);
      if (erasable) expect(del.status, path).toBe(200);
      else expect([400, 404], path).toContain(del.status);
      const exp = await request('GET', `/v1/people/${path}/export`);
      expect([400, 404], path).toContain(exp.status);
    }
    expect(erasures().map((e) => e.id)).toEqual(HOSTILE_PERSON_IDS.filter((c) => c.erasable).map((c) => decodeURIComponent(c.path)));
  });
});

describe('GET /v1/people/:person/export', () => {
  it('answers everything held about the person as one JSON download, and 404 for nobody', async () => {
    const { request } = await setup();
    const res = await request('GET', '/v1/people/anon-1/export');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-disposition')).toBe('attachment; filename="person-user-1.json"');
    expect(res.headers.get('cache-control')).toBe('no-store');
    const body = PersonExport.parse(await res.json());
    expect(body).toMatchObject({ person: 'user-1', linkedIds: ['anon-1'], exportedAt: new Date(NOW).toISOString(), consent: null });
    expect(body.dialogues.map((d) => [d.topic, d.stage])).toEqual([
      ['product:sku-2', 'purchase'],
      ['product:sku-1', 'detail'],
    ]);
    expect(body.rfm).toMatchObject({ purchases: 1, totalValue: 50 });
    expect(body.recentTransitions.length).toBeGreaterThan(0);
    expect((await request('GET', '/v1/people/nobody/export')).status).toBe(404);
    const readOnly = createQueryApp({ store: new MemoryHistoryStore(FOLD_OPTIONS), logger, keys: { full: [], read: [KEY] }, dashboard: false });
    expect((await readOnly.request('/v1/people/x/export')).status).toBe(401);
  });
});

describe('following history.erasures', () => {
  it('applies every erasure record to the store and skips what is not one', async () => {
    const { log, memory } = await setup();
    const producer = log.producer();
    await producer.send(TOPICS.erasures, [
      { key: 'x', value: 'not json' },
      { key: 'x', value: JSON.stringify({ v: 1, id: 'x{y}', person: 'x', ids: ['x'], at: NOW }) },
      { key: 'x', value: JSON.stringify({ v: 2, id: 'user-1', person: 'user-1', ids: ['user-1'], at: NOW }) },
      { key: 'anon-1', value: JSON.stringify({ v: 1, id: 'anon-1', person: 'user-1', ids: ['user-1', 'anon-1'], at: NOW }) },
      { key: 'user-1', value: JSON.stringify({ v: 1, id: 'user-1', person: 'user-1', ids: ['user-1', 'anon-1'], at: NOW }) },
    ]);
    const follower = followErasures(memory, logger);
    for (const [partition, messages] of log.read(TOPICS.erasures).entries()) {
      await follower(
        { topic: TOPICS.erasures, partition, messages: messages.map((m, i) => ({ offset: String(i), key: m.key, value: m.value, timestamp: NOW })) },
        undefined as never,
      );
    }
    expect(await memory.getPerson('user-1')).toBeNull();
    expect(memory.dump()).toMatchObject({ people: [], indexed: [] });
    expect(memory.dump().erased.sort()).toEqual(['anon-1', 'user-1']);
  });
});
