/**
 * Prepared records: the scenario's batches through the real ingest code, captured instead of
 * produced. They are exactly the RawEvent records (value) and keys ingest writes to clicks.raw;
 * the raw-producer, fold and collapse measurements all use them.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CollectBatch } from '../contract/collect.js';
import { TOPICS, type RawEvent } from '../contract/raw-event.js';
import { compileTopicMap, DEFAULT_TOPIC_MAP } from '../history/fold/topic-map.js';
import { createIngestApp } from '../ingest/app.js';
import type { LogMessage, LogProducer } from '../lib/log.js';
import { createLogger } from '../lib/logger.js';
import { CONTENT_TYPE, createScenario } from '../load/scenario.js';

export interface Prepared {
  /** The records, `key\tvalue` per line (bench/proc.ts reads them). */
  file: string;
  records: number;
  /** Key + value bytes of all the records. */
  rawBytes: number;
  /** The records that build dialogues (the topic map classifies them, or identify), and their bytes. */
  buildingRecords: number;
  buildingBytes: number;
  avgRecordBytes: number;
  avgRequestBytes: number;
  people: number;
}

/** Captures `events` records from the scenario (seed 42) into `dir`/records.tsv. */
export async function prepareRecords(events: number, dir: string): Promise<Prepared> {
  const captured: LogMessage[] = [];
  const capture: LogProducer = {
    send: async (topic, messages) => {
      if (topic !== TOPICS.raw) throw new Error(`unexpected produce to ${topic}: a scenario batch was refused`);
      for (const m of messages) captured.push(m);
    },
    ready: () => true,
    close: async () => {},
  };
  const app = createIngestApp({
    producer: capture,
    logger: createLogger('bench', 'silent'),
    maxBodyBytes: 256 * 1024,
    retryAfterSeconds: 2,
    clientIp: () => '127.0.0.1',
  });
  const scenario = createScenario({ seed: 42 });
  let bodyBytes = 0;
  let batches = 0;
  while (captured.length < events) {
    const b = scenario.nextBatch(Date.now());
    if (batches < 200 && !CollectBatch.safeParse(b.body).success) throw new Error('the scenario made a batch that contract/collect.ts refuses');
    const body = JSON.stringify(b.body);
    bodyBytes += Buffer.byteLength(body);
    batches++;
    const res = await app.request('/v1/collect', { method: 'POST', headers: { 'content-type': CONTENT_TYPE, 'user-agent': b.userAgent }, body });
    if (res.status !== 202) throw new Error(`ingest answered ${res.status} to a scenario batch: ${await res.text()}`);
  }
  const records = captured.slice(0, events);
  const file = join(dir, 'records.tsv');
  writeFileSync(file, `${records.map((m) => `${m.key}\t${m.value}`).join('\n')}\n`);
  const size = (m: LogMessage) => Buffer.byteLength(m.key) + Buffer.byteLength(m.value);
  const rawBytes = records.reduce((n, m) => n + size(m), 0);
  // The records that built dialogues: those the topic map classifies, and identify (which merges
  // a visitor's dialogues into the person's). The rest stays in Kafka and never reaches Redis.
  const map = compileTopicMap(DEFAULT_TOPIC_MAP);
  const building = records.filter((m) => {
    const e = JSON.parse(m.value) as RawEvent;
    return e.type === 'identify' || map.classify(e) !== null;
  });
  const buildingBytes = building.reduce((n, m) => n + size(m), 0);
  return {
    file,
    records: records.length,
    rawBytes,
    buildingRecords: building.length,
    buildingBytes,
    avgRecordBytes: rawBytes / records.length,
    avgRequestBytes: bodyBytes / batches,
    people: new Set(records.map((r) => r.key)).size,
  };
}
