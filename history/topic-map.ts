import { z } from 'zod';

/**
 * The topic map: per-site rules that classify an event into (topic, stage).
 * Compiled once at start; `classify` is pure and runs per event on the worker's hot path.
 */
const stageName = z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, 'a stage is a lower-case word');

export const Rule = z
  .object({
    /** A path pattern: `/products/:sku/specs`; `*` matches the rest of the path. */
    url: z.string().startsWith('/').optional(),
    /** The channel the event came through: web, email, call, chat, app... */
    channel: z.string().optional(),
    /** The event's name (track events) or type (page, click). */
    event: z.string().optional(),
    /** A template: `product:{sku}` takes `sku` from the URL, `{props.product}` from the event. */
    topic: z.string().min(1).max(128),
    stage: stageName,
  })
  .strict()
  .refine((r) => r.url !== undefined || r.channel !== undefined || r.event !== undefined, {
    message: 'a rule needs at least one of url, channel, event',
  });
export type Rule = z.infer<typeof Rule>;

export const TopicMapConfig = z
  .object({
    ladder: z.array(stageName).min(2).max(8).default(['intro', 'detail', 'purchase']),
    /** A dialogue quiet for this long expires; the next interaction starts a new one. */
    quietDays: z.number().positive().max(3650).default(30),
    /** Whether `data-topic`/`data-stage` hints on an event override the rules. */
    hints: z.boolean().default(true),
    rules: z.array(Rule).default([]),
    /** Rules per site, tried before the shared ones; the ladder is shared by every site and channel. */
    sites: z.record(z.string().min(1).max(64), z.object({ rules: z.array(Rule) }).strict()).default({}),
  })
  .strict()
  .superRefine((m, ctx) => {
    if (new Set(m.ladder).size !== m.ladder.length) ctx.addIssue({ code: 'custom', path: ['ladder'], message: 'stages must be distinct' });
    const check = (rules: Rule[], path: (string | number)[]) =>
      rules.forEach((r, i) => {
        if (!m.ladder.includes(r.stage)) {
          ctx.addIssue({ code: 'custom', path: [...path, i, 'stage'], message: `"${r.stage}" is not on the ladder (${m.ladder.join(' < ')})` });
        }
      });
    check(m.rules, ['rules']);
    for (const [site, s] of Object.entries(m.sites)) check(s.rules, ['sites', site, 'rules']);
  });
export type TopicMapConfig = z.infer<typeof TopicMapConfig>;

/** The demo shop's map, and the default when no map is configured. */
export const DEFAULT_TOPIC_MAP: TopicMapConfig = TopicMapConfig.parse({
  rules: [
    { url: '/products/:sku', topic: 'product:{sku}', stage: 'intro' },
    { url: '/products/:sku/specs', topic: 'product:{sku}', stage: 'detail' },
    { url: '/checkout/:sku', topic: 'product:{sku}', stage: 'purchase' },
  ],
});

/** The parts of an event that classification looks at. */
export interface Classifiable {
  site?: string | undefined;
  channel: string;
  type: string;
  name?: string | undefined;
  url?: string | undefined;
  topic?: string | undefined;
  stage?: string | undefined;
  props?: Record<string, unknown> | undefined;
}

export interface Classification {
  topic: string;
  /** Index into the ladder. */
  stage: number;
}

interface CompiledRule {
  path: RegExp | null;
  params: string[];
  channel: string | undefined;
  event: string | undefined;
  topic: string;
  stage: number;
}

export interface TopicMap {
  readonly ladder: readonly string[];
  readonly quietMs: number;
  classify(e: Classifiable): Classification | null;
}

function compilePath(pattern: string): { re: RegExp; params: string[] } {
  const params: string[] = [];
  const body = pattern
    .replace(/\/+$/, '')
    .split('/')
    .map((seg) => {
      if (seg === '*') return '.*';
      if (seg.startsWith(':')) {
        params.push(seg.slice(1));
        return '([^/]+)';
      }
      return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('/');
  return { re: new RegExp(`^${body}/?$`), params };
}

/** URLs repeat heavily (every visitor of a product page), and parsing one is the costliest step here. */
const paths = new Map<string, string | null>();
const PATH_CACHE_SIZE = 10_000;

function pathOf(url: string): string | null {
  const hit = paths.get(url);
  if (hit !== undefined) return hit;
  let path: string | null;
  try {
    // Relative URLs (server-side channels often send just a path) resolve against a dummy origin.
    path = new URL(url, 'http://x').pathname;
  } catch {
    path = null;
  }
  if (paths.size >= PATH_CACHE_SIZE) paths.clear();
  paths.set(url, path);
  return path;
}

const TEMPLATE = /\{([\w.]+)\}/g;

function fill(template: string, params: Record<string, string>, props: Record<string, unknown> | undefined): string | null {
  let missing = false;
  const out = template.replace(TEMPLATE, (_, name: string) => {
    const v = name.startsWith('props.') ? props?.[name.slice(6)] : params[name];
    if (v === undefined || v === null || v === '') {
      missing = true;
      return '';
    }
    return String(v);
  });
  return missing ? null : out.toLowerCase();
}

export function compileTopicMap(config: TopicMapConfig): TopicMap {
  const ladder = config.ladder;
  const compile = (r: Rule): CompiledRule => {
    const p = r.url ? compilePath(r.url) : null;
    return {
      path: p?.re ?? null,
      params: p?.params ?? [],
      channel: r.channel,
      event: r.event,
      topic: r.topic,
      stage: ladder.indexOf(r.stage),
    };
  };
  const shared = config.rules.map(compile);
  // Per site: its own rules first, then the shared ones. A Map, so a site named __proto__ is just a site.
  const bySite = new Map(Object.entries(config.sites).map(([site, s]) => [site, [...s.rules.map(compile), ...shared]]));

  function byRules(e: Classifiable, path: string | null): Classification | null {
    const rules = (e.site !== undefined && bySite.get(e.site)) || shared;
    for (const r of rules) {
      if (r.channel !== undefined && r.channel !== e.channel) continue;
      if (r.event !== undefined && r.event !== e.name && r.event !== e.type) continue;
      const params: Record<string, string> = {};
      if (r.path) {
        if (path === null) continue;
        const m = r.path.exec(path);
        if (!m) continue;
        r.params.forEach((name, i) => {
          params[name] = decodeURIComponent(m[i + 1] ?? '');
        });
      }
      const topic = fill(r.topic, params, e.props);
      if (topic !== null) return { topic, stage: r.stage };
    }
    return null;
  }

  return {
    ladder,
    quietMs: config.quietDays * 86_400_000,
    classify(e) {
      const path = e.url ? pathOf(e.url) : null;
      if (config.hints && (e.topic || e.stage)) {
        const hintedStage = e.stage ? ladder.indexOf(e.stage.toLowerCase()) : -1;
        const fromRules = e.topic && hintedStage >= 0 ? null : byRules(e, path);
        const topic = e.topic ? e.topic.toLowerCase() : fromRules?.topic;
        const stage = hintedStage >= 0 ? hintedStage : fromRules && fromRules.topic === topic ? fromRules.stage : e.topic ? 0 : -1;
        if (topic && stage >= 0) return { topic, stage };
      }
      return byRules(e, path);
    },
  };
}
