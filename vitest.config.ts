import { defineConfig } from 'vitest/config';

// One run covers every tier; the global setup starts real Kafka and Redis unless KAFKA_BROKERS and
// REDIS_URL point at running ones. Tiers are named in file names: *.unit, *.int, *.e2e.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', '{contract,ingest,history,apps,lib,tracker-snippet}/**/*.unit.test.ts'],
    exclude: ['node_modules/**', 'dist/**', 'test/faults/**'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    // One file at a time: most integration and end-to-end files run a worker on the shared clicks.raw
    // and read the shared history.transitions; two at once fold each other's records and publish
    // each other's transitions again (a CI run with two workers failed on exactly that).
    maxWorkers: 1,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    env: { LOG_LEVEL: 'silent' },
  },
});
