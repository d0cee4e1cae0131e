import { connect as netConnect, isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { Kafka, logLevel, type Admin, type ConfigResourceTypes, type ISocketFactory, type LogEntry } from 'kafkajs';
import { TOPICS } from '../../contract/raw-event.js';
import type { Logger } from '../logger.js';
import { createTopicsReady } from './admin.js';
import { DEFAULT_RETENTION, topicConfigs, type TopicRetention } from '../retention.js';

/** The kafkajs client of a process: its log lines through pino, TCP_NODELAY sockets. */
export function createKafka(brokers: string, clientId: string, logger: Logger): Kafka {
  const log = logger.child({ component: 'kafkajs' });
  return new Kafka({
    clientId,
    brokers: brokers
      .split(',')
      .map((b) => b.trim())
      .filter(Boolean),
    // kafkajs logs through pino, so every line of the process is JSON.
    logLevel: logLevel.WARN,
    logCreator:
      () =>
      ({ level, log: entry }: LogEntry) => {
        const { message, ...rest } = entry;
        if (level <= logLevel.ERROR) log.error(rest, message);
        else if (level === logLevel.WARN) log.warn(rest, message);
        else log.debug(rest, message);
      },
    retry: { initialRetryTime: 200, retries: 5 },
    socketFactory: noDelaySocket,
  });
}

/**
 * kafkajs's own socket factory, plus TCP_NODELAY. kafkajs leaves Nagle's algorithm on, so a small
 * produce or fetch request can sit in the kernel until the previous segment is acknowledged; with
 * the broker's delayed ACKs that is up to 40 ms per request (bench: send p99 ~50-70 ms at 100
 * sends/s with it, a few ms without).
 */
const noDelaySocket: ISocketFactory = ({ host, port, ssl, onConnect }) => {
  const socket = ssl ? tlsConnect({ host, port, ...(isIP(host) ? {} : { servername: host }), ...ssl }, onConnect) : netConnect({ host, port }, onConnect);
  socket.setKeepAlive(true, 60_000);
  socket.setNoDelay(true);
  return socket;
};

/**
 * Creates the project's topics when missing, with the configured partitions and replication and each
 * topic's retention (lib/retention.ts: `retention.ms`, daily segments; `history.erasures` compacted).
 * Topics that exist already keep their configs (a broker's AlterConfigs would replace every other
 * setting an operator made); one whose retention differs from the configured one is logged once, with
 * the command that aligns it, since the README's retention promises rest on it.
 */
export async function ensureTopics(
  kafka: Kafka,
  partitions: number,
  replicationFactor: number,
  retention: TopicRetention = DEFAULT_RETENTION,
  logger?: Logger,
): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const configs = topicConfigs(retention);
    const existing = new Set(await admin.listTopics());
    const topics: string[] = Object.values(TOPICS);
    const missing = topics.filter((t) => !existing.has(t));
    if (missing.length > 0) {
      await createTopicsReady(
        admin,
        missing.map((topic) => ({
          topic,
          numPartitions: partitions,
          replicationFactor,
          configEntries: Object.entries(configs[topic] ?? {}).map(([name, value]) => ({ name, value })),
        })),
      );
    }
    const present = topics.filter((t) => existing.has(t));
    if (logger && present.length > 0) await warnOnRetentionDrift(admin, present, configs, logger);
  } finally {
    await admin.disconnect();
  }
}

/** kafkajs's ConfigResourceTypes.TOPIC: its enums are not named exports Node's ESM loader can see. */
const TOPIC_RESOURCE = 2 as ConfigResourceTypes;

async function warnOnRetentionDrift(admin: Admin, topics: string[], configs: Record<string, Record<string, string>>, logger: Logger): Promise<void> {
  try {
    const described = await admin.describeConfigs({
      includeSynonyms: false,
      resources: topics.map((name) => ({ type: TOPIC_RESOURCE, name, configNames: ['retention.ms', 'cleanup.policy'] })),
    });
    for (const r of described.resources) {
      const want = configs[r.resourceName] ?? {};
      for (const entry of r.configEntries) {
        const expected = want[entry.configName];
        if (expected === undefined || entry.configValue === expected) continue;
        logger.warn(
          { topic: r.resourceName, config: entry.configName, is: entry.configValue, configured: expected },
          `topic ${r.resourceName} has ${entry.configName}=${entry.configValue}, not ${expected} as configured; ` +
            `kafka-configs.sh --alter --entity-type topics --entity-name ${r.resourceName} --add-config ${entry.configName}=${expected}`,
        );
      }
    }
  } catch (err) {
    logger.warn({ err: (err as Error).message }, 'could not read the topics’ configs to check their retention');
  }
}
