import { checkApiAccess } from '../history/query/auth.js';
import { loadTopicMap } from '../history/fold/topic-map-file.js';
import { hasRedis } from '../lib/redis.js';
import { startApp } from './all-in-one-app.js';
import { runProcess } from './shared/process.js';

/**
 * `npm start`: ingest, worker, query API and the demo shop in one process. With nothing set it runs
 * on the embedded log and store; with KAFKA_BROKERS and REDIS_URL it runs the same parts on the real stack.
 */
await runProcess('clickfold', async (env, logger) => {
  // The query API reads and erases histories: without API_KEYS it may only run embedded on loopback.
  const access = checkApiAccess(env, env.KAFKA_BROKERS && hasRedis(env) ? 'real' : 'embedded');
  const running = await startApp(env, await loadTopicMap(env.TOPIC_MAP), logger);
  logger.info(
    { mode: running.backends.mode, url: running.url },
    `clickfold is running on ${running.url}/ (${running.backends.mode === 'embedded' ? 'embedded log and store: nothing is kept across restarts' : 'Kafka + Redis'})`,
  );
  if (access.open) {
    logger.warn(
      { url: `${running.url}/dashboard` },
      `the query API and the dashboard are open (no API_KEYS): anyone who can reach ${running.url} can read and erase histories; set API_KEYS to require a key`,
    );
  }
  return running.stop;
});
