import { describe, expect, it } from 'vitest';
import { TOPICS, type RawEvent } from '../../contract/raw-event.js';
import { createIngestApp } from '../../ingest/app.js';
import { compileSites, SitesFile } from '../../ingest/sites.js';
import { PartitionedLog } from '../../lib/log-memory.js';
import { createLogger } from '../../lib/logger.js';
import { goodSegmentSurfaceCase, KEY, MAX_BODY, ORIGIN, RUN, SITE, segmentSurfaceCases, type Case } from '../support/hostile-cases.js';
import { recordsOf } from '../support/log-records.js';

/**
 * The hostile cases of the Segment surface (analytics.js's short paths and settings, CORS,
 * RudderStack's form-labelled JSON), each kind many times against the embedded ingest, mixed with
 * valid calls: every answer as expected, every refusal dead-lettered with its reason, every valid
 * event once, and nothing else. test/int/hostile-input.int.test.ts sends the same kinds over HTTP
 * into real Kafka, among all the others.
 */
describe('hostile input on the Segment surface (embedded)', () => {
  it('answers each kind as expected, dead-letters every refusal and keeps every valid event once', async () => {
    const log = new PartitionedLog(2);
    const app = createIngestApp({
      producer: log.producer(),
      logger: createLogger('test', 'silent'),
      maxBodyBytes: MAX_BODY,
      retryAfterSeconds: 1,
      sites: compileSites(SitesFile.parse({ sites: [{ id: SITE, origins: [ORIGIN], writeKeys: [KEY] }] })),
      deadLettersPerSecond: 1_000_000,
    });
    const cases: Case[] = [];
    for (let round = 0; round < 12; round++) {
      for (const kind of segmentSurfaceCases) cases.push(kind());
      cases.push(goodSegmentSurfaceCase());
    }
    const failures: string[] = [];
    for (const [i, k] of cases.entries()) {
      const res = await app.request(k.path, { method: k.method, headers: { ...k.headers, 'x-request-id': `s${RUN}-${i}` }, body: k.body });
      if (res.status !== k.status) failures.push(`${i} ${k.kind}: ${res.status}, expected ${k.status}: ${(await res.text()).slice(0, 200)}`);
    }
    expect(failures).toEqual([]);
    expect(new Set(cases.filter((k) => k.status >= 400).map((k) => k.kind)).size).toBe(segmentSurfaceCases.length);

    const letters = recordsOf<{ rid: string; index?: number; reason: string; payload?: string }>(log, TOPICS.invalid);
    const wrong: string[] = [];
    cases.forEach((k, i) => {
      const got = letters
        .filter((d) => d.rid === `s${RUN}-${i}`)
        .map((d) => `${d.index ?? -1}:${d.reason}`)
        .sort();
      const want = k.dead.map(([index, reason]) => `${index}:${reason}`).sort();
      if (got.join() !== want.join()) wrong.push(`${i} ${k.kind}: [${got.join(' ')}], expected [${want.join(' ')}]`);
    });
    expect(wrong).toEqual([]);
    // A write key never reaches a dead letter, whatever carried it (JSON, a form, a path).
    expect(letters.filter((d) => d.payload?.includes(KEY))).toEqual([]);

    const valid = cases.flatMap((k) => k.valid);
    const landed = recordsOf<RawEvent>(log, TOPICS.raw).map((r) => r.id);
    expect(landed.sort()).toEqual(valid.sort());
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
