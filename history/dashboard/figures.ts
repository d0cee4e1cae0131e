/**
 * What the dashboard shows, worked out without the DOM (client.ts puts it on the page): the funnel
 * figures of every topic box, and the plain words marketers read. Bundled into the browser code,
 * so it imports nothing heavy: the API's shapes as types only, and the funnel arithmetic from the
 * API itself (history/query/funnel.ts), so that a box and `GET /v1/topics/{topic}/funnel` never
 * disagree.
 */
import type { AudienceBackfill, Dialogue, FunnelFigures, TopicSummary, Trend } from '../../contract/query.js';
import { computeFunnel } from '../query/funnel.js';

// --- words ------------------------------------------------------------------------------------

/** Plain names for the default ladder's stages; other ladders show their own stage names. */
const STEP_NAMES: Record<string, string> = { intro: 'Had a first look', detail: 'Looked at the details', purchase: 'Bought' };
const STEP_VERBS: Record<string, string> = { intro: 'had a first look at', detail: 'looked at the details of', purchase: 'bought' };
export const STEP_HELP: Record<string, string> = {
  intro: 'opened the product’s page',
  detail: 'read the specs, compared, or clicked a link about it in an e-mail',
  purchase: 'went to the checkout or paid',
};
export const stepName = (stage: string) => STEP_NAMES[stage] ?? stage.charAt(0).toUpperCase() + stage.slice(1);
export const stepVerb = (stage: string) => STEP_VERBS[stage] ?? `reached “${stage}” on`;
export const people = (n: number) => `${n.toLocaleString()} ${n === 1 ? 'person' : 'people'}`;
export const percent = (r: number) => `${Math.round(r * 100)}%`;

/** A dialogue's signals in words, open ones first, then by name: "complaint ×2 open", "inquiry ×1 settled". */
export const signalWords = (signals: Dialogue['signals']): string[] =>
  Object.entries(signals)
    .sort(([a, x], [b, y]) => Number(y.open) - Number(x.open) || (a < b ? -1 : 1))
    .map(([name, s]) => `${name} ×${s.count} ${s.open ? 'open' : 'settled'}`);

export function ago(ms: number, now = Date.now()): string {
  const s = Math.max(0, (now - ms) / 1000);
  if (s < 45) return 'just now';
  if (s < 90) return 'a minute ago';
  if (s < 3600) return `${Math.round(s / 60)} minutes ago`;
  if (s < 5400) return 'an hour ago';
  if (s < 86400) return `${Math.round(s / 3600)} hours ago`;
  if (s < 172800) return 'yesterday';
  return `${Math.round(s / 86400)} days ago`;
}
export const fullDate = (ms: number) => new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });

// --- funnels -----------------------------------------------------------------------------------

/**
 * A topic's funnel over all time, from the people per stage that `GET /v1/topics` lists, by the
 * same arithmetic as the API's funnel endpoint (which the page asks when a time window is picked).
 */
export function topicFunnel(ladder: readonly string[], topic: Pick<TopicSummary, 'stages'>): FunnelFigures {
  return computeFunnel(
    ladder,
    ladder.map((s) => topic.stages[s] ?? 0),
  );
}

/** One bar of a topic box. */
export interface FunnelBar {
  stage: string;
  name: string;
  /** The number on the bar: people who got at least this far. */
  count: string;
  /** Bar length, % of the first stage's. */
  width: number;
  title: string;
  /** Below the bar, toward the next: "↓ 67% went on"; null for the last stage or nobody here. */
  wentOn: string | null;
}

/** What a topic box shows for a funnel: the total, then one bar per stage. */
export function funnelBox(f: FunnelFigures): { total: string; bars: FunnelBar[] } {
  const top = Math.max(1, f.stages[0]?.reached ?? 0);
  return {
    total: people(f.people),
    bars: f.stages.map((s, i) => ({
      stage: s.stage,
      name: stepName(s.stage),
      count: String(s.reached),
      width: (s.reached / top) * 100,
      title: `${people(s.reached)} got at least this far; ${people(s.atStage)} stopped here`,
      wentOn: i + 1 < f.stages.length && s.conversionToNext !== null ? `↓ ${percent(s.conversionToNext)} went on` : null,
    })),
  };
}

// --- stalls and audiences ----------------------------------------------------------------------

const UNITS: [number, string][] = [
  [7 * 86_400_000, 'week'],
  [86_400_000, 'day'],
  [3_600_000, 'hour'],
  [60_000, 'minute'],
  [1000, 'second'],
];
const SHORT_UNITS: Record<string, number> = { w: 7 * 86_400_000, d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000 };

/** A rule's wait in words, by the largest unit that divides it: 3 days, not 72 hours. */
export function durationWords(ms: number): string {
  for (const [size, unit] of UNITS) {
    if (ms >= size && ms % size === 0) return `${ms / size} ${unit}${ms === size ? '' : 's'}`;
  }
  const s = Math.max(1, Math.round(ms / 1000));
  return `${s} second${s === 1 ? '' : 's'}`;
}

/** A duration as configuration writes it (7d) in words; anything else as it was written. */
function durationTextWords(s: string): string {
  const m = /^(\d+)([smhdw])$/.exec(s.trim());
  return m ? durationWords(Number(m[1]) * SHORT_UNITS[m[2]!]!) : s;
}

/**
 * Whether a stall rule's `topics` (exact, `prefix*` or `*`) watches a topic, so the page offers only
 * rules the API would accept for it. Stored topics are lower case; rules may be written otherwise.
 */
export function watches(pattern: string, topic: string): boolean {
  const p = pattern.toLowerCase();
  return p.endsWith('*') ? topic.startsWith(p.slice(0, -1)) : p === topic;
}

const topicWords = (t: unknown) => (typeof t !== 'string' || t === '*' ? 'any topic' : t.endsWith('*') ? `any topic starting with ${t.slice(0, -1)}` : t);
const range = (r: { atLeast?: number; atMost?: number }) => `${r.atLeast ?? 1}–${r.atMost ?? 5}`;

/** One condition in words, or null when it is not one the grammar knows (the caller shows the JSON). */
function say(c: unknown, depth: number): string | null {
  if (c === null || typeof c !== 'object' || Array.isArray(c) || depth > 8) return null;
  const o = c as Record<string, unknown>;
  const nested = (x: unknown) => {
    const s = say(x, depth + 1);
    return s !== null && x !== null && typeof x === 'object' && ('all' in x || 'any' in x) ? `(${s})` : s;
  };
  const group = (xs: unknown, joiner: string) => {
    if (!Array.isArray(xs)) return null;
    const parts = xs.map(nested);
    return parts.every((p) => p !== null) ? parts.join(joiner) : null;
  };
  if ('all' in o) return group(o.all, ' and ');
  if ('any' in o) return group(o.any, ' or ');
  if ('not' in o) {
    const s = nested(o.not);
    return s === null ? null : `not ${s}`;
  }
  if ('rfm' in o) {
    const scores = o.rfm;
    if (scores === null || typeof scores !== 'object') return null;
    return Object.entries(scores as Record<string, { atLeast?: number; atMost?: number } | null>)
      .map(([k, r]) => `${k} score ${range(r ?? {})}`)
      .join(', ');
  }
  if ('ltv' in o) {
    const r = o.ltv as { atLeast?: number; atMost?: number } | null;
    if (r === null || typeof r !== 'object') return null;
    const bounds = [r.atLeast !== undefined ? `at least ${r.atLeast}` : null, r.atMost !== undefined ? `at most ${r.atMost}` : null].filter(Boolean);
    return `expected to spend ${bounds.join(' and ')}`;
  }
  const parts: string[] = [];
  const str = (k: string) => (typeof o[k] === 'string' ? (o[k] as string) : null);
  if (str('atLeast')) parts.push(`reached “${stepName(str('atLeast')!)}” or further`);
  if (str('exactly')) parts.push(`at “${stepName(str('exactly')!)}”`);
  if (str('notReached')) parts.push(`not yet at “${stepName(str('notReached')!)}”`);
  if (str('activeWithin')) parts.push(`active in the last ${durationTextWords(str('activeWithin')!)}`);
  if (str('stalled')) parts.push(`gone quiet by rule “${str('stalled')}”`);
  return `${parts.length ? parts.join(', ') : 'seen'} in ${topicWords(o.topic)}`;
}

/** An audience definition in plain words (grammar: contract/audience.ts); its JSON when the words would guess. */
export function describeAudience(definition: unknown): string {
  return say(definition, 0) ?? JSON.stringify(definition);
}

/** What an audience's backfill shows: words, and a bar while it runs. */
export function backfillStatus(b: AudienceBackfill | null): { text: string; progress: number | null; failed: boolean } {
  if (b?.state === 'running') {
    return {
      text: `Finding who belongs: ${b.done.toLocaleString()} of ${b.total.toLocaleString()} checked`,
      progress: b.total ? (b.done / b.total) * 100 : 0,
      failed: false,
    };
  }
  if (b?.state === 'failed') return { text: 'Could not check everyone: some people may be missing', progress: null, failed: true };
  return { text: 'Up to date', progress: null, failed: false };
}

// --- trends ------------------------------------------------------------------------------------

/** What the trend chart draws: x in seconds (uPlot's time scale), one row per stage, and each stage's total. */
export interface TrendFigures {
  xs: number[];
  ys: number[][];
  totals: { stage: string; name: string; total: number }[];
  /** Above the chart: how many steps in the window, in words. */
  summary: string;
}

export function trendFigures(ladder: readonly string[], t: Pick<Trend, 'by' | 'buckets'>): TrendFigures {
  const ys = ladder.map((s) => t.buckets.map((b) => b.counts[s] ?? 0));
  const totals = ladder.map((stage, i) => ({ stage, name: stepName(stage), total: ys[i]!.reduce((a, b) => a + b, 0) }));
  const all = totals.reduce((a, b) => a + b.total, 0);
  const span = t.by === 'hour' ? `${t.buckets.length} hours` : `${t.buckets.length} days`;
  return {
    xs: t.buckets.map((b) => Date.parse(b.start) / 1000),
    ys,
    totals,
    summary: all === 0 ? `Nobody moved a step in the last ${span}.` : `${all.toLocaleString()} step${all === 1 ? '' : 's'} forward in the last ${span}.`,
  };
}
