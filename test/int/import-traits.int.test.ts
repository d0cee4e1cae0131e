import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOPICS, TRAIT_LIMITS, type RawEvent } from '../../contract/raw-event.js';
import { RedisHistoryStore } from '../../history/store/redis.js';
import { keys } from '../../history/store/store.js';
import { readTopic } from '../support/kafka-read.js';
import { deleteNamespace } from '../support/redis-inspect.js';
import { kafkaBrokers, redisClient } from '../support/services.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';

/**
 * `npm run import-traits` as an operator runs it: its own process, the run's Kafka broker, a sites
 * file and a small CSV; the records it writes are read back from `clicks.raw`.
 */

function run(args: string[], env: Record<string, string | undefined>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'apps/import-traits.ts', ...args],
      { env: { ...process.env, KAFKA_PARTITIONS: '3', LOG_LEVEL: 'warn', ...env }, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

describe('import-traits against Kafka', () => {
  let dir = '';
  const tag = randomUUID().slice(0, 8);
  const user = (n: number) => `imp-${tag}-${n}`;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'import-traits-'));
    await writeFile(join(dir, 'sites.json'), JSON.stringify({ sites: [{ id: 'shop', privacy: { traits: ['plan', 'seats'] } }] }));
    await writeFile(
      join(dir, 'customers.csv'),
      ['user_id,plan,seats:number,email', `${user(1)},pro,12,a@b.example`, `${user(2)},team,3,`, 'not an id,pro,1,', `${user(3)},${'x'.repeat(80)},1,`].join(
        '\n',
      ),
    );
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('sends the rows it accepts to clicks.raw keyed by user id, with progress and a summary', async () => {
    const r = await run(['--site', 'shop', '--sites', join(dir, 'sites.json'), '--every', '2', join(dir, 'customers.csv')], { KAFKA_BROKERS: kafkaBrokers() });
    expect(r.stderr).toContain('2 rows, ');
    expect(r.stdout).toContain('4 rows read, 2 records sent, 2 rows refused');
    expect(r.stdout).toContain('bad_user_id: 1');
    expect(r.stdout).toContain('value_too_long: 1');
    expect(r.stdout).toContain('column "email" refused (column_not_allowed)');
    expect(r.code).toBe(0);

    const mine = await readTopic(
      TOPICS.raw,
      (key, value) => (key.startsWith(`imp-${tag}-`) ? { key, record: JSON.parse(value) as RawEvent } : undefined),
      (found) => found.length >= 2,
    );
    expect(mine.map((m) => [m.key, m.record.type, m.record.site, m.record.traits]).sort()).toEqual([
      [user(1), 'identify', 'shop', { plan: 'pro', seats: 12 }],
      [user(2), 'identify', 'shop', { plan: 'team', seats: 3 }],
    ]);
    expect(JSON.stringify(mine)).not.toContain('a@b.example');
  });

  it('says why it will not run: no Kafka (the embedded log is one process’s), an unknown site', async () => {
    const csv = join(dir, 'customers.csv');
    const noKafka = await run(['--site', 'shop', '--sites', join(dir, 'sites.json'), csv], { KAFKA_BROKERS: '', REDIS_URL: '' });
    expect(noKafka.code).toBe(2);
    expect(noKafka.stderr).toMatch(/needs KAFKA_BROKERS: the embedded mode/);
    const unknown = await run(['--site', 'nope', '--sites', join(dir, 'sites.json'), '--dry-run', csv], { KAFKA_BROKERS: '' });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('site "nope" is not in the sites file');
    const dry = await run(['--site', 'shop', '--sites', join(dir, 'sites.json'), '--dry-run', csv], { KAFKA_BROKERS: '' });
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('2 records to send (dry run: none sent)');
  });
});

describe('traits in the Redis person hash', () => {
  it('keeps the largest traits a record can carry in a listpack, merges a visitor’s, and erases them with the person', async () => {
    const redis = redisClient('real');
    const ns = `traits-${randomUUID().slice(0, 8)}:`;
    try {
      const store = new RedisHistoryStore(redis, FOLD_OPTIONS, ns);
      const widest = Object.fromEntries(
        Array.from({ length: TRAIT_LIMITS.count }, (_, i) => [`${String(i).padStart(2, '0')}${'n'.repeat(TRAIT_LIMITS.nameLength - 2)}`, 'é'.repeat(31)]),
      );
      const at = Date.now();
      await (
        await store.foldBatch('0', [
          {
            offset: 1,
            person: 'v-1',
            event: { id: 'e1', ts: at, channel: 'web', topic: 'product:a', stage: 0 },
            rt: at,
            traits: { source: 'ad', plan: 'free' },
          },
          { offset: 2, person: 'u-1', event: null, rt: at, traits: { ...widest, plan: 'pro' } },
        ])
      ).published();
      expect(await redis.object('ENCODING', keys.person(ns, 'u-1'))).toBe('listpack');
      // 33 names: `plan` was one too many, so it is not kept; the visitor's do not fit either.
      await (await store.foldBatch('0', [{ offset: 3, person: 'u-1', event: null, link: 'v-1', at, channel: 'web', rt: at }])).published();
      const p = await store.getPerson('u-1');
      expect(Object.keys(p!.traits)).toHaveLength(TRAIT_LIMITS.count);
      expect(p).toMatchObject({ linkedIds: ['v-1'], dialogues: [{ topic: 'product:a' }] });
      expect(await redis.object('ENCODING', keys.person(ns, 'u-1'))).toBe('listpack');
      expect(await redis.hkeys(keys.person(ns, 'v-1'))).not.toContain('t:source');

      await store.erase('u-1', at + 1);
      expect(await store.getPerson('u-1')).toBeNull();
      expect(await redis.exists(keys.person(ns, 'u-1'))).toBe(0);
    } finally {
      await deleteNamespace(redis, ns);
    }
  });
});
