import { RawEvent, TOPICS } from '../contract/raw-event.js';
import type { Transition } from '../contract/transition.js';
import type { BatchHandler, ConsumedMessage, LogProducer } from '../lib/log.js';
import type { Logger } from '../lib/logger.js';
import type { FoldEvent } from './fold.js';
import type { BatchRecord } from './person-batch.js';
import type { HistoryStore } from './store.js';
import type { TopicMap } from './topic-map.js';

export interface WorkerDeps {
  store: HistoryStore;
  topicMap: TopicMap;
  /** Where transitions and dead letters go (`history.transitions`, `clicks.invalid`). */
  producer: LogProducer;
  /** In-process listeners (the live feed); called after the transitions are on the log. */
  onTransitions?: (transitions: Transition[]) => void;
  logger: Logger;
}

/** Turns a raw record into what the fold needs, or null when no topic-map rule matches it. */
export function toFoldEvent(e: RawEvent, map: TopicMap): FoldEvent | null {
  const c = map.classify(e);
  if (!c) return null;
  const isTop = c.stage === map.ladder.length - 1;
  return { id: e.id, ts: e.ts, channel: e.channel, topic: c.topic, stage: c.stage, value: isTop ? e.value : undefined };
}

/**
 * The worker's batch step: parse, classify, fold (through the store, atomically per person),
 * publish transitions. Resolves only when all of that is durable; the consumer commits after.
 * A record that is not a valid raw event goes to `clicks.invalid` instead of stopping the partition.
 */
export function createBatchHandler(deps: WorkerDeps): BatchHandler {
  const { store, topicMap, producer, logger } = deps;
  return async (batch) => {
    const records: BatchRecord[] = [];
    const invalid: { m: ConsumedMessage; reason: string }[] = [];
    for (const m of batch.messages) {
      const parsed = parseRaw(m.value);
      if (typeof parsed === 'string') {
        invalid.push({ m, reason: parsed });
        continue;
      }
      const event = toFoldEvent(parsed, topicMap);
      // identify links the anonymous visitor to the known person; its history merges once.
      const link = parsed.type === 'identify' && parsed.visitor && parsed.visitor !== parsed.person ? parsed.visitor : undefined;
      if (event || link) records.push({ offset: Number(m.offset), person: parsed.person, event, link, at: parsed.ts, channel: parsed.channel });
    }

    if (invalid.length > 0) {
      logger.warn({ partition: batch.partition, count: invalid.length, reason: invalid[0]!.reason }, 'invalid records on the raw topic');
      await producer.send(
        TOPICS.invalid,
        invalid.map(({ m, reason }) => ({
          key: m.key ?? '',
          value: JSON.stringify({ stage: 'worker', reason, partition: batch.partition, offset: m.offset, record: m.value.slice(0, 4096) }),
        })),
      );
    }

    if (records.length === 0) return;
    const outcome = await store.foldBatch(String(batch.partition), records);
    const { transitions } = outcome;
    if (transitions.length > 0) {
      // Published after the fold is durable (it sits in each person's outbox until then), and
      // before the offsets are committed: a crash in between publishes again, never loses one.
      await producer.send(
        TOPICS.transitions,
        transitions.map((t) => ({ key: t.person, value: JSON.stringify(t) })),
      );
      deps.onTransitions?.(transitions);
      await outcome.published();
    }
  };
}

const TYPES = new Set(['page', 'click', 'track', 'identify']);
const str = (v: unknown) => typeof v === 'string';
const optStr = (v: unknown) => v === undefined || typeof v === 'string';

/**
 * The fields the worker reads, checked by hand: ingest wrote the record with the same contract,
 * so the full zod parse (a tenth of the worker's CPU) runs only to explain a record that fails this.
 */
function readable(j: unknown): j is RawEvent {
  if (typeof j !== 'object' || j === null) return false;
  const r = j as Record<string, unknown>;
  return (
    r.v === 1 &&
    str(r.id) &&
    str(r.site) &&
    str(r.person) &&
    str(r.channel) &&
    TYPES.has(r.type as string) &&
    Number.isFinite(r.ts) &&
    Number.isFinite(r.rt) &&
    optStr(r.url) &&
    optStr(r.topic) &&
    optStr(r.stage) &&
    optStr(r.name) &&
    optStr(r.visitor) &&
    optStr(r.user) &&
    (r.value === undefined || Number.isFinite(r.value)) &&
    (r.props === undefined || (typeof r.props === 'object' && r.props !== null && !Array.isArray(r.props)))
  );
}

function parseRaw(value: string): RawEvent | string {
  let json: unknown;
  try {
    json = JSON.parse(value);
  } catch {
    return 'not JSON';
  }
  if (readable(json)) return json;
  const r = RawEvent.safeParse(json);
  return r.success ? r.data : `not a raw event: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`;
}
