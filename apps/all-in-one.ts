import { checkApiAccess } from '../history/query/auth.js';
import { loadTopicMap } from '../history/fold/topic-map-file.js';
import { hasRedis } from '../lib/redis.js';
import { startApp } from './all-in-one-app.js';
import { runProcess } from './shared/process.js';

/**
 * `npm start`: ingest, worker, query API and the demo shop in one process. With nothing set it runs
 * on the embedded log and store, kept in DATA_DIR (./.clickfold-data; `memory`: nothing on disk);
 * with KAFKA_BROKERS and REDIS_URL it runs the same parts on the real stack.
 */
/** Where `npm start` keeps its data when DATA_DIR is unset, relative to the working directory. */
const DEFAULT_DATA_DIR = '.clickfold-data';

await runProcess('clickfold', async (env, logger) => {
  // The query API reads and erases histories: without API_KEYS it may only run embedded on loopback.
  const access = checkApiAccess(env, env.KAFKA_BROKERS && hasRedis(env) ? 'real' : 'embedded');
  const running = await startApp(env, await loadTopicMap(env.TOPIC_MAP), logger, { defaultDataDir: DEFAULT_DATA_DIR });
  const { mode, dataDir } = running.backends;
  const where =
    mode === 'real'
      ? 'Kafka + Redis'
      : dataDir
        ? `embedded log and store, kept in ${dataDir}`
        : 'embedded log and store in memory: nothing is kept across restarts';
  logger.info({ mode, url: running.url, dataDir }, `clickfold is running on ${running.url}/ (${where})`);
  if (access.open) {
    logger.warn(
      { url: `${running.url}/dashboard` },
      `the query API and the dashboard are open (no API_KEYS): anyone who can reach ${running.url} can read and erase histories; set API_KEYS to require a key`,
    );
  }
  return running.stop;
});
