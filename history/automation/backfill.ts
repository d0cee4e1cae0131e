import type { Condition } from '../../contract/audience.js';
import type { LogProducer } from '../../lib/log.js';
import { topicPattern, type TopicPattern } from '../fold/topic-pattern.js';
import type { AutomationEntry, HistoryStore } from '../store/store.js';
import { TICK_TOPIC, tickMessage } from './tick.js';

/**
 * The backfill of a new or changed audience: the fold evaluates audiences only for the people it
 * folds, so without it the audience would fill only as people act. It sends a tick (tick.ts) to every
 * person who could be in the audience now; each tick makes the fold evaluate that person with the
 * definitions in force, through the same path (and the same exactly-once write) as their events.
 *
 * Who could be in it: the people of every stage index of the topics its dialogue conditions can
 * match, and everyone in the audience now (a changed definition may let them out). A condition that
 * can hold with no matching dialogue (a `not`, an `rfm`) makes that every topic.
 *
 * Memory: the candidates are deduplicated in one set of ids, read topic by topic and stage by stage
 * (the store answers a stage index whole), so it holds the distinct people of the matched topics
 * once, plus one stage index at a time; the ticks go out in chunks of TICK_CHUNK.
 */
export const TICK_CHUNK = 1000;

export interface BackfillProgress {
  state: 'running' | 'done' | 'failed';
  /** Distinct people to evaluate. */
  total: number;
  /** People sent a tick so far. */
  done: number;
  /** Epoch ms. */
  startedAt: number;
  finishedAt: number | null;
}

export interface BackfillDeps {
  store: Pick<HistoryStore, 'topics' | 'stageMembers' | 'automationPage'>;
  producer: LogProducer;
  ladder: readonly string[];
  now: () => number;
  /**
   * Keeps the progress (after the candidates are read, after each chunk, at the end). Resolves false
   * when the backfill is no longer wanted (the definition changed or was deleted since): it stops.
   */
  progress(p: BackfillProgress): Promise<boolean>;
  /** Aborts between reads and chunks (the process stops, a newer backfill of the same audience starts). */
  signal?: AbortSignal | undefined;
  chunk?: number;
  /** When the backfill counts as started (the registry writes it with the definition); default: now. */
  startedAt?: number;
}

/**
 * The topic patterns a person must have a dialogue in for `c` to hold, or null when it can hold
 * without one. `all` needs what any one of its parts needs (the narrowest is taken), `any` what
 * each of its parts needs.
 */
export function candidateTopics(c: Condition): TopicPattern[] | null {
  const needs = (x: Condition): string[] | null => {
    if ('all' in x) {
      const parts = x.all.map(needs).filter((p): p is string[] => p !== null);
      if (parts.length === 0) return null;
      // Exact topics over prefixes, fewer over more: the smallest set of candidates that is still complete.
      const width = (p: string[]) => p.reduce((n, t) => n + (t === '*' ? 1e6 : t.endsWith('*') ? 1e3 : 1), 0);
      return parts.reduce((best, p) => (width(p) < width(best) ? p : best));
    }
    if ('any' in x) {
      const out: string[] = [];
      for (const part of x.any) {
        const p = needs(part);
        if (p === null) return null;
        out.push(...p);
      }
      return out;
    }
    // A trait holds without a dialogue; the candidates are still those with one (the stage indexes
    // are all there is to list people by), so a person who has only traits joins on their next record.
    if ('not' in x || 'rfm' in x || 'ltv' in x || 'trait' in x) return null;
    return [x.topic ?? '*'];
  };
  const patterns = needs(c);
  if (patterns === null || patterns.includes('*')) return null;
  return [...new Set(patterns)].map(topicPattern);
}

/** Sends the ticks; resolves with the last progress kept (the caller logs failures). */
export async function runBackfill(audience: string, definition: Condition, deps: BackfillDeps): Promise<BackfillProgress> {
  const chunk = deps.chunk ?? TICK_CHUNK;
  const p: BackfillProgress = { state: 'running', total: 0, done: 0, startedAt: deps.startedAt ?? deps.now(), finishedAt: null };
  const stopped = () => deps.signal?.aborted === true;
  try {
    if (!(await deps.progress({ ...p }))) return p;
    const candidates = new Set<string>();
    const patterns = candidateTopics(definition);
    for (const topic of await deps.store.topics()) {
      if (stopped()) return p;
      if (patterns !== null && !patterns.some((t) => t.matches(topic))) continue;
      for (const stage of deps.ladder) {
        for (const m of await deps.store.stageMembers(topic, stage, 0, Number.MAX_SAFE_INTEGER)) candidates.add(m.person);
      }
    }
    let after: AutomationEntry | undefined;
    for (;;) {
      if (stopped()) return p;
      const page = await deps.store.automationPage({ audience }, after, chunk);
      for (const e of page) candidates.add(e.person);
      after = page.at(-1);
      if (page.length < chunk) break;
    }
    p.total = candidates.size;
    if (!(await deps.progress({ ...p }))) return p;

    let batch: string[] = [];
    const flush = async (): Promise<boolean> => {
      if (batch.length === 0) return true;
      // One instant per chunk: the fold takes the earlier of a tick's time and its own clock.
      const at = deps.now();
      await deps.producer.send(
        TICK_TOPIC,
        batch.map((person) => tickMessage(person, at)),
      );
      p.done += batch.length;
      batch = [];
      return deps.progress({ ...p });
    };
    for (const person of candidates) {
      batch.push(person);
      if (batch.length >= chunk) {
        if (stopped() || !(await flush())) return p;
      }
    }
    if (stopped() || !(await flush())) return p;
    p.state = 'done';
    p.finishedAt = deps.now();
    await deps.progress({ ...p });
    return p;
  } catch (err) {
    p.state = 'failed';
    p.finishedAt = deps.now();
    await deps.progress({ ...p }).catch(() => false);
    throw err;
  }
}
