import { createHash } from 'node:crypto';
import type { Need } from '../../contract/query.js';
import { ltvOf } from '../crm/model.js';
import type { Dialogue } from '../fold/fold.js';
import { floorOf, scoreAt } from '../store/rank-key.js';
import { RANKING_ID, type HistoryStore, type RankedEntry } from '../store/store.js';
import { DEFAULT_LTV_HORIZON_DAYS } from './crm.js';

/**
 * The needs of a topic: people standing at a stage and not past it, ranked (needs-rank.ts), page by page.
 *
 * Read, not computed: the stage indexes are ordered by the ranking itself (../store/rank-key.ts), so a
 * page is a range read of the indexes [stage, notReached) at any size and depth, and only its own
 * people's dialogues are read. The first page opens a listing in the store (HistoryStore.needsPage)
 * when more pages follow, for RANKING_TTL_SECONDS; the cursor names it and the last person given.
 * However the histories change while someone pages, every person of the list as it stood at the first
 * page comes exactly once, in that order: people who move keep their place in the listing. People
 * erased since are left out, people who moved past the need since are left out of the rows (they are
 * no longer a need), people who became a need after the first page are in the next listing.
 *
 * The window: a person is listed while their score is at least that of a single interaction
 * `activeWithin` ago, i.e. last + τ·ln(intensity) >= now − activeWithin (τ = half-life / ln 2, about
 * 4.3 days). For a single look this is "last active within activeWithin"; a more intense dialogue
 * stays listed longer (up to about 11 days at the largest intensity). It is the one window that is a
 * range of the ranking, so the first page, any later one and the total are each one range read.
 */
export interface NeedsQuery {
  topic: string;
  /** Stage indexes: the need is [stage, notReached). */
  stage: number;
  notReached: number;
  /** The window (see above), ms before `now`. */
  activeWithinMs: number;
  limit: number;
  cursor?: string | undefined;
  now: number;
  /**
   * Only dialogues that carry this signal (`open`: true only while open, false only once closed).
   * Read from each page's own dialogues, after the range read: a page can hold fewer rows than
   * `limit` (none, even) while `nextCursor` still leads on, and `total` counts the list unfiltered.
   */
  signal?: { name: string; open?: boolean | undefined } | undefined;
  /**
   * Only people whose lifetime value is at least this: the projection when there is one, else the
   * value to date (no fitted model, or a history the fit leaves out). Filtered as `signal` is: from
   * each page's own rows, after the range read (fewer rows than `limit`, `total` unfiltered).
   */
  minLtv?: number | undefined;
  /** The horizon of the projected lifetime value, days (CRM_LTV_HORIZON_DAYS); default DEFAULT_LTV_HORIZON_DAYS. */
  ltvHorizonDays?: number | undefined;
}

/** A row of the list: the API's `Need` (contract/query.ts). */
export type NeedRow = Need;

export interface NeedsPage {
  rows: NeedRow[];
  /** People in the whole list (all pages), as it stood at the first page. */
  total: number;
  nextCursor: string | null;
  /** Never true any more (the list is not cut); kept in the answer for the clients that read it. */
  truncated: boolean;
  /** The time scores are computed for: the first page's. */
  asOf: number;
}

export const RANKING_TTL_SECONDS = 15 * 60;
/** Rows per store read when a whole list is exported. */
export const EXPORT_CHUNK = 1000;

export class CursorError extends Error {}

interface Cursor {
  v: 2;
  /** The listing (HistoryStore.needsPage). */
  r: string;
  /** The last entry given: its index score and person. */
  s: number;
  m: string;
  /** asOf of the first page. */
  n: number;
  /** Which query it belongs to. */
  q: string;
  /** The total of the first page. */
  t: number;
}

const queryTag = (q: NeedsQuery) =>
  createHash('sha256')
    .update(
      JSON.stringify([
        ...(q.signal
          ? [q.topic, q.stage, q.notReached, q.activeWithinMs, q.signal.name, q.signal.open ?? null]
          : [q.topic, q.stage, q.notReached, q.activeWithinMs]),
        // Absent: the tag of the queries before minLtv existed, so their cursors stay valid.
        ...(q.minLtv === undefined ? [] : [{ minLtv: q.minLtv }]),
      ]),
    )
    .digest('base64url')
    .slice(0, 12);

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify(c)).toString('base64url');
}

const NOT_OURS = 'this cursor is not one the API gave out: start again without a cursor';

/** A cursor is attacker-controlled: every field is checked before anything reads with it. */
export function decodeCursor(s: string): Cursor {
  let c: Partial<Cursor>;
  try {
    c = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as Partial<Cursor>;
  } catch {
    throw new CursorError(NOT_OURS);
  }
  if (
    typeof c !== 'object' ||
    c === null ||
    c.v !== 2 ||
    typeof c.r !== 'string' ||
    !RANKING_ID.test(c.r) ||
    !Number.isSafeInteger(c.s) ||
    typeof c.m !== 'string' ||
    c.m.length === 0 ||
    c.m.length > 128 ||
    !Number.isFinite(c.n) ||
    typeof c.q !== 'string' ||
    !Number.isSafeInteger(c.t) ||
    c.t! < 0
  ) {
    throw new CursorError(NOT_OURS);
  }
  return c as Cursor;
}

function toRow(person: string, d: Dialogue, ladder: readonly string[], score: number, ltv: NeedRow['ltv']): NeedRow {
  const reachedAt = d.first[d.stage] ?? 0;
  return {
    person,
    stage: ladder[d.stage] ?? String(d.stage),
    lastActivity: new Date(d.last).toISOString(),
    stageReachedAt: reachedAt ? new Date(reachedAt).toISOString() : null,
    interactions: d.counts.reduce((a, b) => a + b, 0),
    channels: d.channels,
    score: Math.round(score * 1000) / 1000,
    ltv,
  };
}

export async function queryNeeds(store: HistoryStore, ladder: readonly string[], q: NeedsQuery): Promise<NeedsPage> {
  const tag = queryTag(q);
  let c: Cursor | undefined;
  if (q.cursor !== undefined) {
    c = decodeCursor(q.cursor);
    if (c.q !== tag)
      throw new CursorError(
        'this cursor belongs to another query: keep topic, stage, notReached, activeWithin, signal, open and minLtv as they were on the first page',
      );
  }
  const asOf = c?.n ?? q.now;
  // One more than the page: whether another page follows, without an empty last page.
  const res = await store.needsPage({
    topic: q.topic,
    from: q.stage,
    to: q.notReached,
    min: floorOf(asOf - q.activeWithinMs),
    limit: q.limit + 1,
    ttlSeconds: RANKING_TTL_SECONDS,
    listing: c ? { id: c.r, after: { person: c.m, score: c.s } } : undefined,
  });
  if (!res)
    throw new CursorError(`this cursor has expired (a listing is kept ${RANKING_TTL_SECONDS / 60} minutes after its first page): start again without a cursor`);
  const entries = res.entries.slice(0, q.limit);
  const more = res.entries.length > q.limit;
  const total = c ? c.t : (res.total ?? entries.length);
  const listing = c ? c.r : (res.listing ?? null);
  const rows = await rowsOf(store, ladder, q, entries, asOf);
  const last = entries.at(-1);
  const nextCursor = more && listing && last ? encodeCursor({ v: 2, r: listing, s: last.score, m: last.person, n: asOf, q: tag, t: total }) : null;
  return { rows, total, nextCursor, truncated: false, asOf };
}

function carries(d: Dialogue, want: NeedsQuery['signal']): boolean {
  if (!want) return true;
  const s = d.signals?.find((x) => x.name === want.name);
  return s !== undefined && (want.open === undefined || s.open === want.open);
}

/**
 * The rows of a page: each entry's current dialogue (people past the need or erased since are left
 * out), scored as ranked, with its lifetime value at `asOf`. The model is read once per page, and
 * the RFM inputs of the rows the dialogue filter keeps in one pipelined round (one HGET each).
 */
async function rowsOf(store: HistoryStore, ladder: readonly string[], q: NeedsQuery, entries: readonly RankedEntry[], asOf: number): Promise<NeedRow[]> {
  const dialogues = await store.dialogues(
    q.topic,
    entries.map((e) => e.person),
  );
  const kept: { e: RankedEntry; d: Dialogue }[] = [];
  entries.forEach((e, i) => {
    const d = dialogues[i] ?? null;
    // The index is updated just after the person's hash: trust the hash.
    if (d && d.stage >= q.stage && d.stage < q.notReached && carries(d, q.signal)) kept.push({ e, d });
  });
  if (kept.length === 0) return [];
  const horizon = q.ltvHorizonDays ?? DEFAULT_LTV_HORIZON_DAYS;
  const [model, rfms] = await Promise.all([store.crmModel(), store.rfms(kept.map(({ e }) => e.person))]);
  const rows: NeedRow[] = [];
  kept.forEach(({ e, d }, i) => {
    const v = ltvOf(model, rfms[i] ?? null, asOf, horizon);
    if (q.minLtv !== undefined && !((v.projected ?? v.toDate) >= q.minLtv)) return;
    rows.push(toRow(e.person, d, ladder, scoreAt(e.score, asOf).score, { toDate: v.toDate, projected: v.projected }));
  });
  return rows;
}

/**
 * The whole list (from `cursor` on, if given), page by page of EXPORT_CHUNK: what the exports stream.
 * One page is read only when the consumer asks for more (a pull), so memory stays one page whatever
 * the length, and a slow reader slows the reads (back-pressure). The first value is the first page's
 * figures, then one row at a time.
 */
export async function* needsList(
  store: HistoryStore,
  ladder: readonly string[],
  q: Omit<NeedsQuery, 'limit'>,
): AsyncGenerator<NeedRow | { total: number; asOf: number }, void, undefined> {
  let page = await queryNeeds(store, ladder, { ...q, limit: EXPORT_CHUNK });
  yield { total: page.total, asOf: page.asOf };
  for (;;) {
    yield* page.rows;
    if (!page.nextCursor) return;
    page = await queryNeeds(store, ladder, { ...q, limit: EXPORT_CHUNK, cursor: page.nextCursor });
  }
}
