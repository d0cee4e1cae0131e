import { createHash } from 'node:crypto';
import { MAX_NEEDS, type Need } from '../../contract/query.js';
import type { Dialogue } from '../fold/fold.js';
import { rankNeeds, type NeedCandidate } from './needs-rank.js';
import { RANKING_ID, type HistoryStore } from '../store/store.js';

/**
 * The needs of a topic: people standing at a stage and not past it, ranked (needs-rank.ts), page by page.
 *
 * The first page reads the candidates from the stage indexes (last activity within the window),
 * their dialogues, and ranks them. When the list is longer than a page, the ranked ids are saved in
 * the store for RANKING_TTL_SECONDS (from the first page, not renewed: a saved list of person ids
 * lives that long at most, and an erase takes its person out of it) and the cursor points into that saved
 * list: however the histories change while someone pages, every person of the list comes exactly
 * once, in the order of the first page. People erased or who moved past the need since are left out
 * of later pages (they are no longer a need). People who became a need after the first page are in
 * the next listing, not in this one.
 */
export interface NeedsQuery {
  topic: string;
  /** Stage indexes: the need is [stage, notReached). */
  stage: number;
  notReached: number;
  /** Only dialogues active within this long before `now`. */
  activeWithinMs: number;
  limit: number;
  cursor?: string | undefined;
  now: number;
}

/** A row of the list: the API's `Need` (contract/query.ts). */
export type NeedRow = Need;

export interface NeedsPage {
  rows: NeedRow[];
  /** People in the whole list (all pages). */
  total: number;
  nextCursor: string | null;
  /** The list was cut at MAX_NEEDS candidates (the most recently active). */
  truncated: boolean;
  /** The time scores are computed for: the first page's. */
  asOf: number;
}

export { MAX_NEEDS };
export const RANKING_TTL_SECONDS = 15 * 60;
const CHUNK = 1000;

export class CursorError extends Error {}

interface Cursor {
  v: 1;
  /** Saved ranking id. */
  r: string;
  /** Offset of the next page in it. */
  o: number;
  /** asOf of the first page. */
  n: number;
  /** Which query it belongs to. */
  q: string;
  /** Whether the candidates were truncated. */
  t?: 1;
}

const queryTag = (q: NeedsQuery) =>
  createHash('sha256')
    .update(JSON.stringify([q.topic, q.stage, q.notReached, q.activeWithinMs]))
    .digest('base64url')
    .slice(0, 12);

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify(c)).toString('base64url');
}

export function decodeCursor(s: string): Cursor {
  let c: Partial<Cursor>;
  try {
    c = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as Partial<Cursor>;
  } catch {
    throw new CursorError('this cursor is not one the API gave out: start again without a cursor');
  }
  if (
    c?.v !== 1 ||
    typeof c.r !== 'string' ||
    !RANKING_ID.test(c.r) ||
    !Number.isInteger(c.o) ||
    c.o! < 0 ||
    !Number.isFinite(c.n) ||
    typeof c.q !== 'string'
  ) {
    throw new CursorError('this cursor is not one the API gave out: start again without a cursor');
  }
  return c as Cursor;
}

async function readDialogues(store: HistoryStore, topic: string, persons: readonly string[]): Promise<(Dialogue | null)[]> {
  const out: (Dialogue | null)[] = [];
  for (let i = 0; i < persons.length; i += CHUNK) out.push(...(await store.dialogues(topic, persons.slice(i, i + CHUNK))));
  return out;
}

function toRow(person: string, d: Dialogue, ladder: readonly string[], score: number): NeedRow {
  const reachedAt = d.first[d.stage] ?? 0;
  return {
    person,
    stage: ladder[d.stage] ?? String(d.stage),
    lastActivity: new Date(d.last).toISOString(),
    stageReachedAt: reachedAt ? new Date(reachedAt).toISOString() : null,
    interactions: d.counts.reduce((a, b) => a + b, 0),
    channels: d.channels,
    score: Math.round(score * 1000) / 1000,
  };
}

export async function queryNeeds(store: HistoryStore, ladder: readonly string[], q: NeedsQuery): Promise<NeedsPage> {
  const inNeed = (d: Dialogue | null): d is Dialogue => !!d && d.stage >= q.stage && d.stage < q.notReached;
  const tag = queryTag(q);

  if (q.cursor !== undefined) {
    const c = decodeCursor(q.cursor);
    if (c.q !== tag)
      throw new CursorError('this cursor belongs to another query: keep topic, stage, notReached and activeWithin as they were on the first page');
    const slice = await store.readRanking(q.topic, c.r, c.o, q.limit);
    if (!slice)
      throw new CursorError(
        `this cursor has expired (a listing is kept ${RANKING_TTL_SECONDS / 60} minutes after its first page): start again without a cursor`,
      );
    const dialogues = await readDialogues(store, q.topic, slice.persons);
    const rows: NeedRow[] = [];
    slice.persons.forEach((person, i) => {
      const d = dialogues[i] ?? null;
      if (inNeed(d)) rows.push(toRow(person, d, ladder, rankNeeds([{ person, last: d.last, counts: d.counts }], c.n)[0]!.score));
    });
    const next = c.o + q.limit;
    return { rows, total: slice.total, nextCursor: next < slice.total ? encodeCursor({ ...c, o: next }) : null, truncated: c.t === 1, asOf: c.n };
  }

  const since = q.now - q.activeWithinMs;
  const members = new Map<string, number>();
  let truncated = false;
  for (let s = q.stage; s < q.notReached; s++) {
    const found = await store.stageMembers(q.topic, ladder[s]!, since, MAX_NEEDS);
    if (found.length === MAX_NEEDS) truncated = true;
    for (const m of found) members.set(m.person, m.last);
  }
  let persons = [...members.keys()];
  if (persons.length > MAX_NEEDS) {
    truncated = true;
    persons = persons.sort((a, b) => members.get(b)! - members.get(a)!).slice(0, MAX_NEEDS);
  }
  const dialogues = await readDialogues(store, q.topic, persons);
  const candidates: NeedCandidate[] = [];
  const byPerson = new Map<string, Dialogue>();
  persons.forEach((person, i) => {
    const d = dialogues[i] ?? null;
    // The index is updated just after the person's hash: trust the hash.
    if (!inNeed(d) || d.last < since) return;
    candidates.push({ person, last: d.last, counts: d.counts });
    byPerson.set(person, d);
  });
  const ranked = rankNeeds(candidates, q.now);
  const rows = ranked.slice(0, q.limit).map((r) => toRow(r.person, byPerson.get(r.person)!, ladder, r.score));
  let nextCursor: string | null = null;
  if (ranked.length > q.limit) {
    const id = await store.saveRanking(
      q.topic,
      ranked.map((r) => r.person),
      RANKING_TTL_SECONDS,
    );
    nextCursor = encodeCursor({ v: 1, r: id, o: q.limit, n: q.now, q: tag, ...(truncated ? { t: 1 as const } : {}) });
  }
  return { rows, total: ranked.length, nextCursor, truncated, asOf: q.now };
}
