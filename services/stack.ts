/**
 * `npm run stack`: a real Kafka broker and a real Redis on free local ports for
 * development. Prints the environment to use, writes it to .stack/env, and
 * runs until Ctrl-C / SIGTERM, then stops both cleanly.
 *
 *   npm run stack [-- --kafka-port 9092] [--redis-port 6380] [--data-dir DIR]
 *
 * --data-dir keeps Kafka's data (DIR/kafka) across runs; by default both use
 * temp dirs that are removed on exit.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { KafkaBroker, kafkaVersion } from './kafka.js';
import { REPO_ROOT } from './proc.js';
import { RedisServer } from './redis.js';

const { values } = parseArgs({
  options: {
    'kafka-port': { type: 'string' },
    'redis-port': { type: 'string' },
    'data-dir': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log('usage: npm run stack [-- --kafka-port N] [--redis-port N] [--data-dir DIR]');
  process.exit(0);
}
const num = (v: string | undefined) => (v === undefined ? undefined : Number.parseInt(v, 10));

const log = (msg: string) => console.error(`[stack] ${msg}`);

let kafka: KafkaBroker | undefined;
let redis: RedisServer | undefined;
let stopping: Promise<void> | undefined;
const envFile = join(REPO_ROOT, '.stack', 'env');

function shutdown(code: number): Promise<void> {
  stopping ??= (async () => {
    log('stopping…');
    const t = Date.now();
    await Promise.allSettled([kafka?.destroy(), redis?.destroy()]);
    rmSync(envFile, { force: true });
    log(`stopped in ${Date.now() - t} ms`);
    process.exit(code);
  })();
  return stopping;
}

let signals = 0;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    if (++signals > 1) log('already stopping (Kafka may take up to 20 s)…');
    void shutdown(0);
  });
}

try {
  const t = Date.now();
  log(`starting Kafka ${kafkaVersion()} (KRaft) and Redis…`);
  const dataDir = values['data-dir'];
  // Assign as each comes up, so a failure of one still stops the other.
  const results = await Promise.allSettled([
    KafkaBroker.start({ port: num(values['kafka-port']), dataDir: dataDir && join(dataDir, 'kafka') }).then((k) => (kafka = k)),
    RedisServer.start({ port: num(values['redis-port']) }).then((r) => (redis = r)),
  ]);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
  if (!kafka || !redis) throw new Error('unreachable');
  log(`up in ${Date.now() - t} ms`);
  log(`kafka data+logs: ${kafka.dataDir} (broker log: ${kafka.logFile})`);
  log(`redis dir:       ${redis.dataDir}`);

  const exports = `export KAFKA_BROKERS=${kafka.brokers} REDIS_URL=${redis.url}`;
  mkdirSync(join(REPO_ROOT, '.stack'), { recursive: true });
  writeFileSync(envFile, `${exports}\n`);
  // The one line on stdout, so `eval "$(npm run -s stack | head -1)"` style use works.
  console.log(exports);
  log('');
  log('in another shell:');
  log(`  source .stack/env        # or paste the export line above`);
  log('  npm start                # the processes read KAFKA_BROKERS / REDIS_URL');
  log('  npx vitest run           # tests reuse this stack instead of starting their own');
  log('');
  log('Ctrl-C to stop.');
  // Keep the event loop alive until a signal arrives.
  setInterval(() => {
    if (!stopping && (!kafka?.running || !redis?.running)) {
      log(`${!kafka?.running ? 'Kafka' : 'Redis'} died unexpectedly.`);
      if (!kafka?.running) log(kafka!.logTail(20));
      void shutdown(1);
    }
  }, 2_000);
} catch (e) {
  log(`failed: ${(e as Error).message}`);
  await shutdown(1);
}
