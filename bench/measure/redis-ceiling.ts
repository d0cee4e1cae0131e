/**
 * redis-benchmark ceilings (`-P 16`) for the commands the fold sends, on keys shaped like its own
 * (a person hash as the fold leaves it), in database 1. Skipped when redis-benchmark is missing.
 */
import { execFile } from 'node:child_process';
import { Redis } from 'ioredis';
import type { Services } from '../harness.js';
import { round, type Figure } from '../report.js';
import type { Settings } from '../settings.js';

export type RedisCeilingOptions = Pick<Settings, 'redisBenchmarkRequests'>;

export interface RedisCeilingResult {
  /** One figure per test, in order; a single `redisBenchmark` figure when redis-benchmark failed to run. */
  figures: { tests: Figure[] };
  details: { redisBenchmark: Record<string, number> };
}

export async function measureRedisCeiling(services: Pick<Services, 'redis'>, o: RedisCeilingOptions): Promise<RedisCeilingResult> {
  const port = String(services.redis.port);
  const redis = new Redis(services.redis.url, { db: 1 });
  // A person hash as the fold leaves it (one dialogue, the fingerprint ring, offsets, version).
  const fields = {
    'd:product:sku-12': '2|lz3k1a|1f4|,5k,1f4|7,9,3|web',
    s: Array.from({ length: 32 }, (_, i) => (0x9e3779b9 * (i + 1)).toString(36).slice(0, 6)).join(','),
    o: 'clicks.raw/3=18234',
    v: '7',
  };
  const pipe = redis.pipeline();
  for (let i = 0; i < 10_000; i++) pipe.hset(`bh:{${String(i).padStart(12, '0')}}`, fields);
  await pipe.exec();
  // The fold's compare-and-set script, with the same shape of arguments (4 field/value pairs).
  const cas = `local v = redis.call('HGET', KEYS[1], 'v')\nif (v or '0') ~= ARGV[1] then return 0 end\nredis.call('HSET', KEYS[1], unpack(ARGV, 2))\nreturn 1`;
  const sha = String(await redis.script('LOAD', cas));
  const common = ['-p', port, '-n', String(o.redisBenchmarkRequests), '-P', '16', '-q', '--dbnum', '1'];
  const tests: [string, string[]][] = [
    ['HSET (redis-benchmark -t hset)', ['-t', 'hset']],
    ['HGETALL of a person hash', ['-r', '10000', 'HGETALL', 'bh:{__rand_int__}']],
    [
      'EVALSHA compare-and-set, 4 fields',
      [
        '-r',
        '10000',
        'EVALSHA',
        sha,
        '1',
        'bh:{__rand_int__}',
        '999999',
        'd:product:sku-12',
        fields['d:product:sku-12'],
        's',
        fields.s,
        'o',
        fields.o,
        'v',
        '8',
      ],
    ],
    ['ZADD to a stage index', ['-r', '100000', 'ZADD', 'bix:{product:sku-12}:detail', '1717000000000', 'p__rand_int__']],
  ];
  const results: Record<string, number> = {};
  const figures: Figure[] = [];
  for (const [name, extra] of tests) {
    let out: string;
    try {
      out = await new Promise<string>((resolve, reject) =>
        execFile('redis-benchmark', [...common, ...extra], { timeout: 120_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
      );
    } catch (err) {
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      figures.push({
        key: 'redisBenchmark',
        what: 'redis-benchmark',
        unit: '',
        value: missing ? 'not installed (Debian: redis-tools): skipped' : `failed: ${(err as Error).message}`,
      });
      break;
    }
    const m = /([\d.]+) requests per second/.exec(out.split('\r').pop() ?? out);
    results[name] = m ? Number(m[1]) : NaN;
    figures.push({ key: `redisBenchmark.${name}`, what: `redis-benchmark -P 16: ${name}`, unit: 'ops/s', value: round(results[name]!) });
  }
  await redis.flushdb();
  redis.disconnect();
  return { figures: { tests: figures }, details: { redisBenchmark: results } };
}
