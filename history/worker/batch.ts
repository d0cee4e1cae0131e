import { excerptOf, type DeadLetter } from '../../contract/dead-letter.js';
import { PERSON_ID, RAW_LIMITS, RawEvent, SITE_ID, TOPICS } from '../../contract/raw-event.js';
import type { Transition } from '../../contract/transition.js';
import type { BatchHandler, ConsumedMessage, LogProducer } from '../../lib/log.js';
import type { Logger } from '../../lib/logger.js';
import type { FoldEvent } from '../fold/fold.js';
import type { BatchRecord } from '../fold/person-batch.js';
import type { HistoryStore } from '../store/store.js';
import type { TopicMap, Verdict } from '../fold/topic-map.js';
import type { WorkerMetrics } from './metrics.js';

export interface WorkerDeps {
  store: HistoryStore;
  topicMap: TopicMap;
  /** Where transitions and dead letters go (`history.transitions`, `clicks.invalid`). */
  producer: LogProducer;
  /** In-process listeners (the live feed); called after the transitions are on the log. */
  onTransitions?: (transitions: Transition[]) => void;
  logger: Logger;
  metrics?: WorkerMetrics | undefined;
}

/** Where in the worker a record was refused: it travels with the dead letter. */
export type WorkerStep = 'parse' | 'classify' | 'budget' | 'fold';

/** A record the worker will not fold, and why. */
interface Refused {
  m: ConsumedMessage;
  step: WorkerStep;
  reason: string;
  detail: string;
}

/** Turns a raw record and its classification into what the fold needs. */
function foldEventOf(e: RawEvent, v: Verdict & { kind: 'topic' }, ladderLength: number): FoldEvent {
  const isTop = v.stage === ladderLength - 1;
  return { id: e.id, ts: e.ts, channel: e.channel, topic: v.topic, stage: v.stage, value: isTop ? e.value : undefined };
}

/** Turns a raw record into what the fold needs, or null when no topic-map rule takes it. */
export function toFoldEvent(e: RawEvent, map: TopicMap): FoldEvent | null {
  const v = map.classifyEvent(e);
  return v.kind === 'topic' ? foldEventOf(e, v, map.ladder.length) : null;
}

/**
 * The worker's batch step: parse, classify, admit new sites and topics under their caps, fold
 * (through the store, atomically per person), publish transitions. Resolves only when all of that
 * is durable; the consumer commits after.
 *
 * Per-record isolation: whatever one record does (bad JSON, a field out of bounds, a topic too
 * long, a cap reached, a history that cannot be folded) ends as a dead letter on `clicks.invalid`
 * with the step and the reason, and the batch goes on. Only what is not about a record (Kafka or
 * Redis unreachable, Redis out of memory) rejects, so the consumer retries the batch.
 */
export function createBatchHandler(deps: WorkerDeps): BatchHandler {
  const { store, topicMap, producer, logger, metrics } = deps;
  const ladderLength = topicMap.ladder.length;

  return async (batch) => {
    const timer = metrics?.batchSeconds.startTimer();
    const refused: Refused[] = [];
    const candidates: { m: ConsumedMessage; raw: RawEvent; record: BatchRecord }[] = [];
    let unmatched = 0;
    let hintsIgnored = 0;

    for (const m of batch.messages) {
      try {
        const parsed = parseRaw(m.value);
        if (!parsed.ok) {
          refused.push({ m, step: 'parse', reason: parsed.reason, detail: parsed.detail });
          continue;
        }
        const raw = parsed.event;
        const verdict = topicMap.classifyEvent(raw);
        if (verdict.hintIgnored) hintsIgnored++;
        if (verdict.kind === 'refused') {
          refused.push({ m, step: 'classify', reason: verdict.reason, detail: verdict.detail });
          continue;
        }
        const event = verdict.kind === 'topic' ? foldEventOf(raw, verdict, ladderLength) : null;
        // identify links the anonymous visitor to the known person; its history merges once.
        const link = raw.type === 'identify' && raw.visitor && raw.visitor !== raw.person ? raw.visitor : undefined;
        if (!event && !link) {
          unmatched++;
          continue;
        }
        candidates.push({ m, raw, record: { offset: Number(m.offset), person: raw.person, event, link, at: raw.ts, channel: raw.channel } });
      } catch (err) {
        // Pure code throwing on a record is a bug, but a bug one record must not turn into a stall.
        refused.push({ m, step: 'classify', reason: 'worker_error', detail: (err as Error).message });
      }
    }

    const records = await admitted(candidates, refused);
    const outcome = records.length > 0 ? await store.foldBatch(String(batch.partition), records) : null;
    if (outcome && outcome.refused.length > 0) {
      const byOffset = new Map(batch.messages.map((m) => [Number(m.offset), m]));
      for (const r of outcome.refused) refused.push({ m: byOffset.get(r.offset)!, step: 'fold', reason: r.reason, detail: r.detail });
    }

    const deadLetters = refused.length > 0 ? deadLetter(batch.partition, refused) : Promise.resolve();
    const transitions = outcome?.transitions ?? [];
    if (transitions.length > 0) {
      // Published after the fold is durable (it sits in each person's outbox until then), and
      // before the offsets are committed: a crash in between publishes again, never loses one.
      await producer.send(
        TOPICS.transitions,
        transitions.map((t) => ({ key: t.person, value: JSON.stringify(t) })),
      );
      deps.onTransitions?.(transitions);
      await outcome!.published();
    }
    await deadLetters;

    if (metrics) {
      const folded = records.length - (outcome?.refused.length ?? 0);
      if (folded > 0) metrics.records.inc({ outcome: 'folded' }, folded);
      if (unmatched > 0) metrics.records.inc({ outcome: 'unmatched' }, unmatched);
      if (refused.length > 0) metrics.records.inc({ outcome: 'dead_lettered' }, refused.length);
      for (const r of refused) metrics.deadLetters.inc({ reason: r.reason });
      if (hintsIgnored > 0) metrics.ignored.inc({ reason: 'hint_topic' }, hintsIgnored);
      if (transitions.length > 0) metrics.transitions.inc(transitions.length);
      timer?.();
    }
  };

  /** Keeps the records whose site and topics fit the caps; the others join `refused`. */
  async function admitted(candidates: { m: ConsumedMessage; raw: RawEvent; record: BatchRecord }[], refused: Refused[]): Promise<BatchRecord[]> {
    const topicsBySite = new Map<string, Set<string>>();
    for (const c of candidates) {
      let topics = topicsBySite.get(c.raw.site);
      if (!topics) topicsBySite.set(c.raw.site, (topics = new Set()));
      if (c.record.event) topics.add(c.record.event.topic);
    }
    const verdicts = new Map<string, { site: boolean; topics: Map<string, boolean> }>();
    for (const [site, topics] of topicsBySite) {
      const limits = topicMap.limits(site);
      const list = [...topics];
      const a = await store.admit(site, list, { sites: limits.sites, topicsPerSite: limits.topicsPerSite });
      verdicts.set(site, { site: a.site, topics: new Map(list.map((t, i) => [t, a.topics[i]!])) });
    }
    const out: BatchRecord[] = [];
    for (const c of candidates) {
      const v = verdicts.get(c.raw.site)!;
      if (!v.site) {
        refused.push({ m: c.m, step: 'budget', reason: 'site_budget', detail: `site "${c.raw.site}" is new and the worker already knows the most sites allowed` });
      } else if (c.record.event && !v.topics.get(c.record.event.topic)) {
        const cap = topicMap.limits(c.raw.site).topicsPerSite;
        refused.push({ m: c.m, step: 'budget', reason: 'topic_budget', detail: `site "${c.raw.site}" has created ${cap} topics, the most allowed; "${c.record.event.topic}" is new` });
      } else {
        out.push(c.record);
      }
    }
    return out;
  }

  async function deadLetter(partition: number, refused: Refused[]): Promise<void> {
    const first = refused[0]!;
    logger.warn({ partition, count: refused.length, step: first.step, reason: first.reason, detail: first.detail.slice(0, 200) }, 'records refused by the worker, dead-lettered');
    await producer.send(
      TOPICS.invalid,
      refused.map(({ m, step, reason, detail }) => {
        const letter: DeadLetter = { stage: 'worker', step, reason, detail: excerptOf(detail, 1024), partition, offset: m.offset, rt: Date.now(), payload: excerptOf(m.value) };
        return { key: m.key ?? '', value: JSON.stringify(letter) };
      }),
    );
  }
}

const TYPES = new Set(['page', 'click', 'track', 'identify']);
const str = (v: unknown, max: number) => typeof v === 'string' && v.length <= max;
const optStr = (v: unknown, max: number) => v === undefined || str(v, max);
const optId = (v: unknown) => v === undefined || (typeof v === 'string' && PERSON_ID.test(v));

/**
 * The fields the worker reads, checked by hand against the contract's bounds: this runs on every
 * record, and the full zod parse (a tenth of the worker's CPU) runs only to explain a record that
 * fails here.
 */
function readable(j: unknown): j is RawEvent {
  if (typeof j !== 'object' || j === null) return false;
  const r = j as Record<string, unknown>;
  return (
    r.v === 1 &&
    typeof r.id === 'string' &&
    r.id.length > 0 &&
    r.id.length <= RAW_LIMITS.idLength &&
    typeof r.site === 'string' &&
    SITE_ID.test(r.site) &&
    typeof r.person === 'string' &&
    PERSON_ID.test(r.person) &&
    typeof r.channel === 'string' &&
    r.channel.length <= 32 &&
    /^[a-z][a-z0-9_-]*$/.test(r.channel) &&
    TYPES.has(r.type as string) &&
    Number.isFinite(r.ts) &&
    Number.isFinite(r.rt) &&
    optStr(r.url, RAW_LIMITS.textLength) &&
    optStr(r.topic, RAW_LIMITS.nameLength) &&
    optStr(r.stage, 64) &&
    optStr(r.name, RAW_LIMITS.nameLength) &&
    optId(r.visitor) &&
    optId(r.user) &&
    (r.value === undefined || Number.isFinite(r.value)) &&
    (r.props === undefined || (typeof r.props === 'object' && r.props !== null && !Array.isArray(r.props)))
  );
}

type Parsed = { ok: true; event: RawEvent } | { ok: false; reason: 'invalid_json' | 'invalid_record'; detail: string };

export function parseRaw(value: string): Parsed {
  let json: unknown;
  try {
    json = JSON.parse(value);
  } catch (err) {
    return { ok: false, reason: 'invalid_json', detail: `not JSON: ${(err as Error).message}` };
  }
  if (readable(json)) return { ok: true, event: json };
  const r = RawEvent.safeParse(json);
  if (r.success) return { ok: true, event: r.data };
  return { ok: false, reason: 'invalid_record', detail: `not a raw event: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}` };
}
