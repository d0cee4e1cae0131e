import { defineConfig } from 'vitest/config';

// One run covers every tier; the global setup starts real Kafka and Redis unless KAFKA_BROKERS and
// REDIS_URL point at running ones. Tiers are named in file names: *.unit, *.int, *.e2e.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', '{contract,ingest,history,apps,lib,tracker-snippet}/**/*.unit.test.ts'],
    exclude: ['node_modules/**', 'dist/**', 'test/faults/**'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    // Two files at a time: most of a file's time is spent waiting on Kafka, Redis and the processes it
    // starts, so two overlap well on CI's two cores (the whole run: 245-300 s instead of about 490 s).
    // Files use consumer groups, Redis prefixes, ids and ports of their own; those that share a topic
    // (clicks.raw) assert only on their own records, and wait for them rather than for a quiet topic.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    env: { LOG_LEVEL: 'silent' },
  },
});
