/**
 * The V8 flags the ingest process runs with: `npm run ingest` carries them (package.json, checked by
 * test/unit/node-flags.unit.test.ts), the README's supervisor command too, and the bench starts
 * its ingest process and the producer and HTTP floors it is compared with under the same flags.
 *
 * Why: every collect request keeps its objects alive until Kafka acknowledges it (milliseconds,
 * with a hundred requests in flight), which with V8's default young generation (16 MiB
 * semi-spaces) outlives two scavenges: the objects are promoted and die in the old generation,
 * which is far dearer to collect. With 32 MiB they die young. `npm run bench -- --only ingest,raw`
 * measured ingest at 27.1 µs of CPU per event with the default and 20.6 µs with 32 MiB (the same
 * records and floors). The worker is not given them: its batches' objects die within the batch,
 * and the same runs measured its CPU per event higher with larger semi-spaces, not lower.
 */
export const INGEST_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32'];
