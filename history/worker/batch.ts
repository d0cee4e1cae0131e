import { type RawEvent, TOPICS } from '../../contract/raw-event.js';
import type { HistoryEvent } from '../../contract/transition.js';
import { crashPoint } from '../../lib/crash-points.js';
import { uncommittedControl, type BatchHandler, type ConsumedMessage, type LogProducer } from '../../lib/log.js';
import type { Logger } from '../../lib/logger.js';
import type { FoldOutcome } from '../fold/fold-batch.js';
import type { FoldEvent } from '../fold/fold.js';
import type { BatchRecord } from '../fold/person-batch.js';
import type { TopicMap, Verdict } from '../fold/topic-map.js';
import type { HistoryStore } from '../store/store.js';
import { DeadLetters, type Refusal } from './dead-letters.js';
import type { WorkerMetrics } from './metrics.js';
import { readRecord } from './read-record.js';

export type { WorkerStep } from './dead-letters.js';

export interface WorkerDeps {
  store: HistoryStore;
  topicMap: TopicMap;
  /**
   * Where transitions and dead letters go (`history.transitions`, `clicks.invalid`) when the
   * handler runs without a consumer's BatchControl (tests, the bench); a consumer publishes them
   * with the batch's commit.
   */
  producer: LogProducer;
  /** In-process listeners (the live feed); called after the transitions (stalls, audience changes) are on the log. */
  onTransitions?: (transitions: HistoryEvent[]) => void;
  logger: Logger;
  metrics?: WorkerMetrics | undefined;
  /**
   * Gives the event loop a turn after every this many records read (a process that also answers
   * HTTP: `npm start`); unset, a batch is read in one go (the standalone worker).
   */
  yieldEvery?: number | undefined;
}

/** A turn of the event loop: I/O callbacks (HTTP requests, Kafka acknowledgements) run, then this resolves. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** What a step made of one record: go on with a value, drop it (counted), or refuse it (dead-lettered). */
type Step<T> = { ok: T } | { drop: 'unmatched' } | { refuse: Refusal };

/** A record that passed reading and classification, on its way to the fold. */
interface Candidate {
  m: ConsumedMessage;
  raw: RawEvent;
  record: BatchRecord;
}

/** Turns a raw record and its classification into what the fold needs. */
function foldEventOf(e: RawEvent, v: Verdict & { kind: 'topic' }, ladderLength: number): FoldEvent {
  const isTop = v.stage === ladderLength - 1;
  const event: FoldEvent = { id: e.id, ts: e.ts, channel: e.channel, topic: v.topic, stage: v.stage, value: isTop ? e.value : undefined };
  if (v.signal) event.signal = v.signal;
  return event;
}

/** Turns a raw record into what the fold needs, or null when no topic-map rule takes it. */
export function toFoldEvent(e: RawEvent, map: TopicMap): FoldEvent | null {
  const v = map.classifyEvent(e);
  return v.kind === 'topic' ? foldEventOf(e, v, map.ladder.length) : null;
}

/** Step 1 and 2: read the record, classify it, and say what the fold should do with it. */
function prepare(m: ConsumedMessage, map: TopicMap): Step<Omit<Candidate, 'm'>> & { hintIgnored?: boolean } {
  const read = readRecord(m.value);
  if (!read.ok) return { refuse: { step: 'parse', reason: read.reason, detail: read.detail } };
  const raw = read.event;
  // A tick carries no event: it only asks the fold to look at the person's stalls and audiences.
  if (raw.type === 'tick') return { ok: { raw, record: { offset: Number(m.offset), person: raw.person, event: null, tick: true, rt: raw.rt } } };
  const verdict = map.classifyEvent(raw);
  if (verdict.kind === 'refused') return { refuse: { step: 'classify', reason: verdict.reason, detail: verdict.detail }, hintIgnored: verdict.hintIgnored };
  const event = verdict.kind === 'topic' ? foldEventOf(raw, verdict, map.ladder.length) : null;
  // identify links the anonymous visitor to the known person; its history merges once.
  const link = raw.type === 'identify' && raw.visitor && raw.visitor !== raw.person ? raw.visitor : undefined;
  // An identify that only sets traits (the import CLI's, a server's) still changes the person.
  const traits = raw.type === 'identify' && raw.traits && Object.keys(raw.traits).length > 0 ? raw.traits : undefined;
  if (!event && !link && !traits) return { drop: 'unmatched', hintIgnored: verdict.hintIgnored };
  return {
    ok: { raw, record: { offset: Number(m.offset), person: raw.person, event, link, at: raw.ts, channel: raw.channel, rt: raw.rt, traits } },
    hintIgnored: verdict.hintIgnored,
  };
}

/** Step 3: the records whose site and topics fit the caps go on; the others are refused. */
async function admit(candidates: Candidate[], map: TopicMap, store: HistoryStore, dead: DeadLetters): Promise<BatchRecord[]> {
  const topicsBySite = new Map<string, Set<string>>();
  for (const c of candidates) {
    if (c.record.tick) continue;
    let topics = topicsBySite.get(c.raw.site);
    if (!topics) topicsBySite.set(c.raw.site, (topics = new Set()));
    if (c.record.event) topics.add(c.record.event.topic);
  }
  const admitted = new Map<string, { site: boolean; topics: Map<string, boolean> }>();
  for (const [site, topics] of topicsBySite) {
    const limits = map.limits(site);
    const list = [...topics];
    const a = await store.admit(site, list, { sites: limits.sites, topicsPerSite: limits.topicsPerSite });
    admitted.set(site, { site: a.site, topics: new Map(list.map((t, i) => [t, a.topics[i]!])) });
  }
  const out: BatchRecord[] = [];
  for (const c of candidates) {
    if (c.record.tick) {
      out.push(c.record);
      continue;
    }
    const a = admitted.get(c.raw.site)!;
    if (!a.site) {
      dead.add(c.m, { step: 'budget', reason: 'site_budget', detail: `site "${c.raw.site}" is new and the worker already knows the most sites allowed` });
    } else if (c.record.event && !a.topics.get(c.record.event.topic)) {
      const cap = map.limits(c.raw.site).topicsPerSite;
      dead.add(c.m, {
        step: 'budget',
        reason: 'topic_budget',
        detail: `site "${c.raw.site}" has created ${cap} topics, the most allowed; "${c.record.event.topic}" is new`,
      });
    } else {
      out.push(c.record);
    }
  }
  return out;
}

/**
 * The worker's batch step: read, classify, admit new sites and topics under their caps, fold
 * (through the store, atomically per person), then publish the transitions and dead letters and
 * commit the batch as one step (`BatchControl.publishAndCommit`: one Kafka transaction when the
 * consumer is transactional). The fold is durable before that step: a crash in between leaves the
 * transitions in the outbox, published with the commit of the batch's redelivery.
 *
 * Per-record isolation: whatever one record does (bad JSON, a field out of bounds, a topic too
 * long, a cap reached, a history that cannot be folded) ends as a dead letter on `clicks.invalid`
 * with the step and the reason, and the batch goes on. Only what is not about a record (Kafka or
 * Redis unreachable, Redis out of memory) rejects, so the consumer retries the batch.
 */
export function createBatchHandler(deps: WorkerDeps): BatchHandler {
  const { store, topicMap, producer, logger, metrics } = deps;

  return async (batch, ctl = uncommittedControl(producer)) => {
    const timer = metrics?.batchSeconds.startTimer();
    const dead = new DeadLetters(batch.partition);
    const candidates: Candidate[] = [];
    let unmatched = 0;
    let hintsIgnored = 0;

    let sinceTurn = 0;
    for (const m of batch.messages) {
      if (deps.yieldEvery !== undefined && ++sinceTurn > deps.yieldEvery) {
        sinceTurn = 1;
        await nextTurn();
      }
      let step: ReturnType<typeof prepare>;
      try {
        step = prepare(m, topicMap);
      } catch (err) {
        // Pure code throwing on a record is a bug, but a bug one record must not turn into a stall.
        step = { refuse: { step: 'classify', reason: 'worker_error', detail: (err as Error).message } };
      }
      if (step.hintIgnored) hintsIgnored++;
      if ('refuse' in step) dead.add(m, step.refuse);
      else if ('drop' in step) unmatched++;
      else candidates.push({ m, ...step.ok });
    }

    const records = await admit(candidates, topicMap, store, dead);
    let outcome: FoldOutcome | null = null;
    if (records.length > 0) {
      outcome = await store.foldBatch(String(batch.partition), records, Number(batch.messages[0]!.offset));
      const byOffset = new Map(candidates.map((c) => [c.record.offset, c.m]));
      for (const r of outcome.refused) dead.add(byOffset.get(r.offset)!, { step: 'fold', reason: r.reason, detail: r.detail });
    }

    const transitions = outcome?.transitions ?? [];
    await ctl.publishAndCommit(
      [dead.records(logger), { topic: TOPICS.transitions, messages: transitions.map((t) => ({ key: t.person, value: JSON.stringify(t) })) }],
      batch.messages.at(-1)!.offset,
    );
    if (transitions.length > 0) {
      crashPoint('committed');
      deps.onTransitions?.(transitions);
      // Done after the commit, so a failure here must not fail the batch: an outbox left behind is
      // recognised as published by the next batch (planPerson's stale outbox).
      await outcome!
        .published()
        .catch((err: unknown) => logger.warn({ partition: batch.partition, err: (err as Error).message }, 'could not clear the outboxes of a committed batch'));
    }

    if (metrics) {
      const erased = outcome?.erased ?? 0;
      const folded = records.length - (outcome?.refused.length ?? 0) - erased;
      if (folded > 0) metrics.records.inc({ outcome: 'folded' }, folded);
      if (erased > 0) metrics.records.inc({ outcome: 'erased' }, erased);
      if (unmatched > 0) metrics.records.inc({ outcome: 'unmatched' }, unmatched);
      if (dead.size > 0) metrics.records.inc({ outcome: 'dead_lettered' }, dead.size);
      for (const r of dead.refused) metrics.deadLetters.inc({ reason: r.reason });
      if (hintsIgnored > 0) metrics.ignored.inc({ reason: 'hint_topic' }, hintsIgnored);
      if (transitions.length > 0) metrics.transitions.inc(transitions.length);
      timer?.();
    }
  };
}
