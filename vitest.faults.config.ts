import { defineConfig } from 'vitest/config';

// `npm run test:faults`: the fault scenarios, one after the other, each on a Kafka broker and a
// Redis of its own (so no global setup). Separate from `npm test` because each restarts services.
export default defineConfig({
  test: {
    include: ['test/faults/**/*.fault.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 120_000,
    env: { LOG_LEVEL: 'silent' },
  },
});
