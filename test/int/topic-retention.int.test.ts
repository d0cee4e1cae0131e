import { Kafka, logLevel, type ConfigResourceTypes } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { TOPICS } from '../../contract/raw-event.js';
import { createKafka, ensureTopics } from '../../lib/kafka/client.js';
import { parseEnv, retentionOf } from '../../lib/config.js';
import { DAY_MS, DEFAULT_RETENTION } from '../../lib/retention.js';
import { captureLogs } from '../support/log-capture.js';
import { kafkaBrokers } from '../support/services.js';

/**
 * The retention the README's Privacy section states, as the broker holds it: the run's topics were
 * created by ensureTopics (test/global-setup.ts) with the default retention.
 */
const admin = new Kafka({ clientId: 'retention-test', brokers: kafkaBrokers().split(','), logLevel: logLevel.NOTHING }).admin();
afterAll(() => admin.disconnect());

async function configsOf(topic: string): Promise<Record<string, string>> {
  const { resources } = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [{ type: 2 as ConfigResourceTypes, name: topic, configNames: ['retention.ms', 'cleanup.policy', 'segment.ms'] }],
  });
  return Object.fromEntries(resources[0]!.configEntries.map((e) => [e.configName, e.configValue]));
}

describe('topic retention', () => {
  it('creates every topic with an explicit retention and daily segments; history.erasures compacted and kept past clicks.raw', async () => {
    await admin.connect();
    const day = String(DAY_MS);
    expect(await configsOf(TOPICS.raw)).toEqual({ 'cleanup.policy': 'delete', 'retention.ms': String(30 * DAY_MS), 'segment.ms': day });
    expect(await configsOf(TOPICS.invalid)).toEqual({ 'cleanup.policy': 'delete', 'retention.ms': String(7 * DAY_MS), 'segment.ms': day });
    expect(await configsOf(TOPICS.transitions)).toEqual({ 'cleanup.policy': 'delete', 'retention.ms': String(7 * DAY_MS), 'segment.ms': day });
    expect(await configsOf(TOPICS.webhooksParked)).toEqual({ 'cleanup.policy': 'delete', 'retention.ms': String(14 * DAY_MS), 'segment.ms': day });
    expect(await configsOf(TOPICS.erasures)).toEqual({ 'cleanup.policy': 'compact,delete', 'retention.ms': String(32 * DAY_MS), 'segment.ms': day });
  });

  it('takes the retention from the environment, and says which existing topic keeps another one and how to align it', async () => {
    const env = parseEnv({ KAFKA_RAW_RETENTION_DAYS: '2', KAFKA_TRANSITIONS_RETENTION_DAYS: '0.5' });
    expect(retentionOf(env)).toEqual({ ...DEFAULT_RETENTION, rawMs: 2 * DAY_MS, transitionsMs: DAY_MS / 2 });
    expect(() => parseEnv({ KAFKA_RAW_RETENTION_DAYS: '0' })).toThrow(/KAFKA_RAW_RETENTION_DAYS/);
    const { logger, lines } = captureLogs();
    await ensureTopics(createKafka(kafkaBrokers(), 'retention-test', logger), 3, 1, retentionOf(env), logger);
    const drift = lines.filter((l) => l.level === 40 && l.config === 'retention.ms').map((l) => [l.topic, l.configured]);
    expect(drift.sort()).toEqual(
      [
        [TOPICS.raw, String(2 * DAY_MS)],
        [TOPICS.transitions, String(DAY_MS / 2)],
        [TOPICS.erasures, String(4 * DAY_MS)],
      ].sort(),
    );
    expect(lines.find((l) => l.topic === TOPICS.raw)?.msg).toContain(`kafka-configs.sh --alter --entity-type topics --entity-name ${TOPICS.raw}`);
    // Nothing was changed on the broker.
    expect((await configsOf(TOPICS.raw))['retention.ms']).toBe(String(30 * DAY_MS));
  });
});
