import { Hono } from 'hono';
import { createIngestApp } from '../ingest/app.js';
import { createIngestMetrics } from '../ingest/metrics.js';
import { loadSites } from '../ingest/sites.js';
import type { LogProducer } from '../lib/log.js';
import { closeServer, listen } from '../lib/serve.js';
import { compileTopicMap, foldOptionsOf } from '../history/fold/topic-map.js';
import { loadTopicMap } from '../history/fold/topic-map-file.js';
import { LiveFeed } from '../history/transitions/live-feed.js';
import { followTransitions } from '../history/transitions/log.js';
import { hasRedis } from '../lib/redis.js';
import { openBackends, openLog, type Backends } from './shared/backends.js';
import { ingestOptionsFromEnv } from './shared/ingest-options.js';
import { runProcess } from './shared/process.js';
import { visitorOptionsFromEnv } from './shared/visitor.js';

/**
 * The standalone ingest process of the real stack (`npx tsx apps/ingest.ts`): HTTP in, Kafka out.
 * Needs KAFKA_BROKERS (not Redis). On SIGTERM or SIGINT it stops accepting, lets the requests in
 * flight finish (each answers only after Kafka acknowledged its events), closes the producer and
 * exits 0, so nothing it acknowledged is lost.
 */
await runProcess('ingest', async (env, logger) => {
  if (!env.KAFKA_BROKERS) throw new Error('apps/ingest.ts needs KAFKA_BROKERS (for the all-in-one embedded mode, run `npm start`)');
  const sites = await loadSites(env.INGEST_SITES);
  if (!env.INGEST_SITES) logger.warn('INGEST_SITES is not set: serving the demo site only (any origin, write key "demo-write-key")');
  if (!env.INGEST_LINK_SECRET) logger.warn('INGEST_LINK_SECRET is not set: e-mail clicks redirect only to allow-listed hosts');

  // With Redis too, it also answers the visitor's own stages (GET /v1/me, /v1/me/stream: ingest/me.ts),
  // reading the store and following history.transitions with a group of its own.
  let backends: Backends | undefined;
  if (hasRedis(env)) backends = await openBackends(env, foldOptionsOf(compileTopicMap(await loadTopicMap(env.TOPIC_MAP))), logger);
  else logger.warn("REDIS_URL is not set: GET /v1/me and /v1/me/stream (the snippet's stages) answer 404");
  const log = backends?.logPort ?? (await openLog(env, logger));
  const feed = new LiveFeed();
  const live = backends ? await followTransitions(log, feed, logger, env.KAFKA_GROUP_ID) : undefined;
  const kafkaProducer = log.producer();
  let draining = false;
  // While draining, /readyz says 503 so a load balancer stops sending before the port closes.
  const producer: LogProducer = {
    send: (topic, messages) => kafkaProducer.send(topic, messages),
    ready: () => !draining && kafkaProducer.ready(),
    close: () => kafkaProducer.close(),
  };
  const metrics = createIngestMetrics({ process: true });
  const app = new Hono();
  // Once draining, every answer closes its keep-alive connection, so clients reconnect elsewhere.
  app.use('*', async (c, next) => {
    await next();
    if (draining) c.header('connection', 'close');
  });
  app.route(
    '/',
    createIngestApp({
      ...ingestOptionsFromEnv(env, { producer, logger, metrics, sites }),
      ...(backends ? { visitor: visitorOptionsFromEnv(env, backends.store, feed) } : {}),
    }),
  );

  const { server, port } = await listen(app, env.PORT, env.HOST);
  logger.info(
    {
      port,
      url: `http://${env.HOST}:${port}`,
      sites: sites.sites.map((s) => s.id),
      trustedProxies: env.TRUST_PROXY,
      deadLettersPerSecond: env.INGEST_DEAD_LETTERS_PER_SECOND,
    },
    'ingest is listening',
  );

  return async () => {
    draining = true;
    // Visitors' event streams end first (EventSource reconnects to another process).
    feed.close();
    // Requests in flight answer only after Kafka acknowledged; those still open after the grace period are cut (their senders retry).
    await closeServer(server, { graceMs: env.INGEST_SHUTDOWN_GRACE_MS, logger });
    await live?.stop();
    // Every 202 already waited for Kafka; closing only ends the connection, but never wait forever
    // (a broker that is gone would hold the process): after the deadline, exit 1.
    await deadline(backends ? backends.close() : log.close(), 15_000, 'the Kafka producer did not close within 15 s');
  };
});

function deadline<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)))]).finally(() => clearTimeout(timer));
}
