/**
 * What the dashboard shows, worked out without the DOM (client.ts puts it on the page): the funnel
 * figures of every topic box, and the plain words marketers read. Bundled into the browser code,
 * so it imports nothing heavy: the API's shapes as types only, and the funnel arithmetic from the
 * API itself (history/query/funnel.ts), so that a box and `GET /v1/topics/{topic}/funnel` never
 * disagree.
 */
import type { FunnelFigures, TopicSummary } from '../../contract/query.js';
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
