/**
 * Collapse, after the fold: MEMORY USAGE of every key Redis holds, per dialogue, against the
 * key + value bytes of the Kafka records that built the dialogues.
 */
import { Redis } from 'ioredis';
import type { Services } from '../harness.js';
import type { Prepared } from '../records.js';
import { round, type Figure } from '../report.js';
import { meets, targetText, TARGETS } from '../targets.js';

/** Key kinds of history/store/store.ts `keys`, by prefix. */
const KEY_KINDS: [string, string][] = [
  ['h:{', 'person hashes'],
  ['ix:{', 'stage indexes'],
  ['l:{', 'linked ids'],
  ['r:{', 'event fingerprints (expiring)'],
  ['x:{', 'transition outboxes'],
  ['topics', 'topics set'],
  // The CRM steps' keys (WORKER_CRM_STEPS): per topic or per purchaser, not per dialogue.
  ['ih:{', 'stage hour counters'],
  ['tr:{', 'trend counters'],
  ['xs:{', 'cross-selling counters'],
  ['pu', 'purchasers'],
  ['rtx', 'latest transitions'],
];
/** Kinds that do not last: they are left out of the durable bytes. */
const TRANSIENT = ['event fingerprints (expiring)', 'transition outboxes'];

export interface CollapseResult {
  /** Raw bytes per dialogue over its durable Redis bytes. */
  ratio: number;
  figures: { redisBytesPerDialogue: Figure; ratio: Figure };
  details: {
    collapse: {
      dialogues: number;
      bytes: Record<string, number>;
      keys: Record<string, number>;
      rawBytes: number;
      buildingBytes: number;
      eventsPerDialogue: number;
      allEventsPerDialogue: number;
      personHashEncodings: Record<string, number>;
    };
  };
}

export async function measureCollapse(services: Pick<Services, 'redis'>, prepared: Prepared): Promise<CollapseResult> {
  const redis = new Redis(services.redis.url);
  const bytes: Record<string, number> = {};
  const count: Record<string, number> = {};
  let dialogues = 0;
  const encodings: Record<string, number> = {};
  let cursor = '0';
  try {
    do {
      const [next, keys] = await redis.scan(cursor, 'COUNT', 1000);
      cursor = next;
      const pipe = redis.pipeline();
      for (const k of keys) {
        pipe.memory('USAGE', k, 'SAMPLES', '0');
        pipe.object('ENCODING', k);
        if (k.startsWith('h:{')) pipe.hkeys(k);
        else pipe.echo('');
      }
      const res = (await pipe.exec()) ?? [];
      keys.forEach((k, i) => {
        const kind = KEY_KINDS.find(([prefix]) => k.startsWith(prefix))?.[1] ?? 'other';
        bytes[kind] = (bytes[kind] ?? 0) + Number(res[i * 3]?.[1] ?? 0);
        count[kind] = (count[kind] ?? 0) + 1;
        if (kind === 'person hashes') {
          const enc = String(res[i * 3 + 1]?.[1]);
          encodings[enc] = (encodings[enc] ?? 0) + 1;
          dialogues += ((res[i * 3 + 2]?.[1] as string[] | undefined) ?? []).filter((f) => f.startsWith('d:')).length;
        }
      });
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  const durable = Object.entries(bytes)
    .filter(([k]) => !TRANSIENT.includes(k))
    .reduce((n, [, b]) => n + b, 0);
  const total = Object.values(bytes).reduce((n, b) => n + b, 0);
  const rawPerDialogue = prepared.buildingBytes / dialogues;
  const ratio = rawPerDialogue / (durable / dialogues);
  const parts = Object.entries(bytes)
    .sort((a, b) => b[1] - a[1])
    .map(([k, b]) => `${k} ${round(b / dialogues)}`)
    .join(', ');
  return {
    ratio,
    figures: {
      redisBytesPerDialogue: {
        key: 'collapse.redisBytesPerDialogue',
        what: `Redis bytes per dialogue, durable (MEMORY USAGE of person hashes, indexes, links, topics), ${dialogues.toLocaleString('en-US')} dialogues`,
        unit: 'B',
        value: round(durable / dialogues),
        note: `per dialogue: ${parts}; with the expiring fingerprints ${round(total / dialogues)} B; person hash encodings ${JSON.stringify(encodings)}`,
      },
      ratio: {
        key: 'collapse.ratio',
        what: `collapse: raw Kafka bytes that built a dialogue (${round(rawPerDialogue).toLocaleString('en-US')} B key+value, ${round(prepared.buildingRecords / dialogues, 1)} events) / its durable Redis bytes`,
        unit: 'x',
        value: round(ratio, 1),
        target: targetText(TARGETS.collapse),
        ok: meets(TARGETS.collapse, ratio),
        note: `counting the expiring fingerprints and outboxes too: ${round(rawPerDialogue / (total / dialogues), 1)}x; counting every record on clicks.raw (${round(prepared.records / dialogues, 1)} per dialogue, with the browsing that matches no topic): ${round(prepared.rawBytes / durable, 1)}x`,
      },
    },
    details: {
      collapse: {
        dialogues,
        bytes,
        keys: count,
        rawBytes: prepared.rawBytes,
        buildingBytes: prepared.buildingBytes,
        eventsPerDialogue: prepared.buildingRecords / dialogues,
        allEventsPerDialogue: prepared.records / dialogues,
        personHashEncodings: encodings,
      },
    },
  };
}
