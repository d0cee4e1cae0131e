import { defineConfig } from 'vitest/config';

// The inner loop: the unit tier only, no Kafka, no Redis, no browser (npm run test:unit).
export default defineConfig({
  test: {
    include: ['test/unit/**/*.unit.test.ts', '{contract,ingest,history,apps,lib,tracker-snippet}/**/*.unit.test.ts'],
    exclude: ['node_modules/**', 'dist/**'],
    pool: 'forks',
    testTimeout: 30_000,
    env: { LOG_LEVEL: 'silent' },
  },
});
