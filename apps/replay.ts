import { parseArgs } from 'node:util';
import { parseEnv, retentionOf } from '../lib/config.js';
import { tombstoneMs } from '../lib/retention.js';
import { createLogger } from '../lib/logger.js';
import { createRedis, hasRedis } from '../lib/redis.js';
import { activeNamespaceKey, replay, type ReplayProgress } from '../history/worker/replay.js';
import { loadTopicMap } from '../history/fold/topic-map-file.js';
import { openLog } from './shared/backends.js';

/**
 * `npm run replay -- --from 2026-11-01T00:00:00Z|earliest [--map FILE] [--switch]`
 * Needs KAFKA_BROKERS and REDIS_URL. Rebuilds into a fresh namespace with a progress bar and ETA;
 * `--switch` then points the deployment at it (restart the workers and the API to take it up).
 */
const USAGE = 'usage: npm run replay -- --from <ISO time | epoch ms | earliest> [--map topic-map.json] [--namespace NS] [--switch]';

function bar(p: ReplayProgress): string {
  const width = 30;
  const share = p.total > 0 ? p.done / p.total : 1;
  const filled = Math.round(share * width);
  const eta = Number.isFinite(p.etaSeconds) ? `${Math.ceil(p.etaSeconds)} s` : '?';
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(share * 100).toFixed(1)}% ${p.done}/${p.total} events, ${Math.round(p.rate)}/s, ETA ${eta}`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      from: { type: 'string' },
      map: { type: 'string' },
      namespace: { type: 'string' },
      switch: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || !values.from) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  const from = values.from === 'earliest' ? 'earliest' : /^\d+$/.test(values.from) ? Number(values.from) : Date.parse(values.from);
  if (from !== 'earliest' && Number.isNaN(from)) {
    console.error(`--from: "${values.from}" is not a time`);
    return 2;
  }
  const env = parseEnv();
  if (!env.KAFKA_BROKERS || !hasRedis(env)) {
    console.error('replay needs KAFKA_BROKERS and REDIS_URL (the embedded mode keeps no log to replay)');
    return 2;
  }
  const logger = createLogger('replay', env.LOG_LEVEL === 'info' ? 'warn' : env.LOG_LEVEL);
  const map = await loadTopicMap(values.map ?? env.TOPIC_MAP);
  const log = await openLog(env, logger, { clientId: `${env.KAFKA_CLIENT_ID}-replay` });
  const redis = createRedis(env);
  let lastPrint = 0;
  try {
    const result = await replay({
      log,
      redis,
      map,
      logger,
      from,
      namespace: values.namespace ? `${env.REDIS_PREFIX}${values.namespace}` : undefined,
      tombstoneTtlSeconds: Math.ceil(tombstoneMs(retentionOf(env)) / 1000),
      onProgress: (p) => {
        const now = Date.now();
        if (process.stderr.isTTY) process.stderr.write(`\r${bar(p)}`);
        else if (now - lastPrint > 2000 || p.done >= p.total) {
          lastPrint = now;
          process.stderr.write(`${bar(p)}\n`);
        }
      },
    });
    if (process.stderr.isTTY) process.stderr.write('\n');
    console.log(`replayed ${result.records} records into namespace "${result.namespace}" (consumer group ${result.groupId})`);
    if (values.switch) {
      await redis.set(activeNamespaceKey(env.REDIS_PREFIX), JSON.stringify({ namespace: result.namespace, groupId: result.groupId }));
      console.log('switched: restart the workers and the query API; they will read and fold the new namespace');
    } else {
      console.log(
        `to switch over: npm run replay -- ... --switch, or run the processes with REDIS_PREFIX=${result.namespace} KAFKA_GROUP_ID=${result.groupId}`,
      );
    }
    return 0;
  } finally {
    await log.close();
    redis.disconnect();
  }
}

process.exitCode = await main();
