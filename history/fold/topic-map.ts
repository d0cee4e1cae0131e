import { z } from 'zod';
import { MAX_STALL_RULES, StallRule, type ParsedStallRule } from '../../contract/stall-rule.js';
import type { FoldOptions } from './fold.js';
import { W_MAX as W_LIMIT } from '../store/rank-key.js';
import { DEFAULT_SEEN_SIZE } from '../store/store.js';

/**
 * The topic map: per-site rules that classify an event into (topic, stage).
 * Compiled once at start; `classify` is pure and runs per event on the worker's hot path.
 */
const stageName = z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, 'a stage is a lower-case word');

/** A signal's name (`inquiry`, `complaint`): short, because every dialogue that carries it stores it. */
export const SIGNAL_NAME = /^[a-z][a-z0-9_-]{0,31}$/;
/** Signals per map, and so per dialogue: a dialogue's signals live in its one hash field. */
export const MAX_SIGNALS = 16;
const signalName = z.string().regex(SIGNAL_NAME, 'a signal is a lower-case word: a letter, then up to 31 letters, digits, _ and -');

/** A topic is at most this many characters, after normalising (see `normaliseTopic`). */
export const TOPIC_MAX_LENGTH = 128;

/**
 * What a sender can grow, capped. Defaults here; a map may change them (`limits`), and a site of the
 * map may change its own (`sites.<id>.limits`). README, section Limits, says what happens past each.
 */
export const Limits = z
  .object({
    /** Dialogues kept per person; past it the dialogue quiet the longest is dropped. */
    dialoguesPerPerson: z.number().int().min(1).max(100_000).default(200),
    /** Visitor ids that may be linked to one person; past it new links are refused (dead-lettered). */
    linksPerPerson: z.number().int().min(0).max(100_000).default(100),
    /** Distinct topics a site may create; past it events of new topics are dead-lettered. */
    topicsPerSite: z.number().int().min(0).max(100_000_000).default(100_000),
    /** Distinct sites the worker accepts on clicks.raw; past it events of new sites are dead-lettered. */
    sites: z.number().int().min(1).max(1_000_000).default(10_000),
  })
  .strict();
export type Limits = z.infer<typeof Limits>;
export const DEFAULT_LIMITS: Limits = Limits.parse({});

/**
 * `/products/:sku` takes any one path segment; `/products/:sku([A-Za-z0-9-]{1,40})` only one that
 * matches the pattern (tested on the segment as it stands in the URL, before decoding).
 */
const PARAM = /^:([A-Za-z_][A-Za-z0-9_]*)(?:\((.+)\))?$/;

export const Rule = z
  .object({
    /** A path pattern: `/products/:sku/specs`; `*` matches the rest of the path. */
    url: z
      .string()
      .max(1024)
      .startsWith('/')
      .superRefine((u, ctx) => {
        for (const seg of u.split('/')) {
          if (!seg.startsWith(':')) continue;
          const m = PARAM.exec(seg);
          if (!m) ctx.addIssue({ code: 'custom', message: `"${seg}": a capture is :name or :name(pattern), with no / in the pattern` });
          else if (m[2] !== undefined) {
            try {
              new RegExp(m[2]);
            } catch (err) {
              ctx.addIssue({ code: 'custom', message: `"${seg}": not a regular expression: ${(err as Error).message}` });
            }
          }
        }
      })
      .optional(),
    /** The channel the event came through: web, email, call, chat, app... */
    channel: z.string().optional(),
    /** The event's name (track events) or type (page, click). */
    event: z.string().optional(),
    /** A template: `product:{sku}` takes `sku` from the URL, `{props.product}` from the event. */
    topic: z.string().min(1).max(TOPIC_MAX_LENGTH),
    stage: stageName,
    /** Marks the event as this signal on its dialogue (declared in the map's `signals`): raised, or with `close`, settled. */
    signal: signalName.optional(),
    close: z.boolean().optional(),
  })
  .strict()
  .refine((r) => r.url !== undefined || r.channel !== undefined || r.event !== undefined, {
    message: 'a rule needs at least one of url, channel, event',
  })
  .refine((r) => r.close === undefined || r.signal !== undefined, { message: 'close needs the signal it closes', path: ['close'] });
export type Rule = z.infer<typeof Rule>;

export const TopicMapConfig = z
  .object({
    ladder: z.array(stageName).min(2).max(8).default(['intro', 'detail', 'purchase']),
    /** A dialogue quiet for this long expires; the next interaction starts a new one. */
    quietDays: z.number().positive().max(3650).default(30),
    /**
     * Whether `data-topic`/`data-stage` hints on an event override the rules. A topic hint is taken
     * only when some rule could produce that topic (its template read as a pattern) or it matches
     * `hintTopics`; otherwise it is ignored and the rules decide.
     */
    hints: z.boolean().default(true),
    /** More topics a hint may name: exact topics, or `prefix:*` for any topic with that prefix. */
    hintTopics: z.array(z.string().min(1).max(TOPIC_MAX_LENGTH)).max(1000).default([]),
    rules: z.array(Rule).max(1000).default([]),
    /** Stall rules (contract/stall-rule.ts): a dialogue quiet at a stage for a while fires once. */
    stalls: z.array(StallRule).max(MAX_STALL_RULES).default([]),
    limits: Limits.default(DEFAULT_LIMITS),
    /**
     * The signals rules may mark events with, by name. `weight` is added to the needs ranking's
     * weighted interactions while the signal is open on the dialogue (negative lowers it).
     */
    signals: z
      .record(z.string(), z.object({ weight: z.number().int().min(-W_LIMIT).max(W_LIMIT).default(0) }).strict())
      .superRefine((sig, ctx) => {
        const names = Object.keys(sig);
        if (names.length > MAX_SIGNALS) ctx.addIssue({ code: 'custom', message: `at most ${MAX_SIGNALS} signals, not ${names.length}` });
        for (const n of names.slice(0, MAX_SIGNALS + 1)) {
          if (!SIGNAL_NAME.test(n))
            ctx.addIssue({
              code: 'custom',
              path: [n],
              message: `"${n.slice(0, 40)}" is not a signal name: a letter, then up to 31 lower-case letters, digits, _ and -`,
            });
        }
      })
      .default({}),
    /** Rules per site, tried before the shared ones; the ladder is shared by every site and channel. */
    sites: z
      .record(
        z.string().min(1).max(64),
        z
          .object({
            rules: z.array(Rule).max(1000).default([]),
            limits: Limits.pick({ topicsPerSite: true }).partial().optional(),
            hintTopics: z.array(z.string().min(1).max(TOPIC_MAX_LENGTH)).max(1000).optional(),
          })
          .strict(),
      )
      .default({}),
  })
  .strict()
  .superRefine((m, ctx) => {
    if (new Set(m.ladder).size !== m.ladder.length) ctx.addIssue({ code: 'custom', path: ['ladder'], message: 'stages must be distinct' });
    const check = (rules: Rule[], path: (string | number)[]) =>
      rules.forEach((r, i) => {
        if (!m.ladder.includes(r.stage)) {
          ctx.addIssue({ code: 'custom', path: [...path, i, 'stage'], message: `"${r.stage}" is not on the ladder (${m.ladder.join(' < ')})` });
        }
        if (r.signal !== undefined && !Object.hasOwn(m.signals, r.signal)) {
          const known = Object.keys(m.signals);
          ctx.addIssue({
            code: 'custom',
            path: [...path, i, 'signal'],
            message: `"${r.signal}" is not declared in signals${known.length ? ` (${known.slice(0, MAX_SIGNALS).join(', ')})` : ' (none are)'}`,
          });
        }
      });
    check(m.rules, ['rules']);
    const names = new Set<string>();
    m.stalls.forEach((r, i) => {
      if (names.has(r.name)) ctx.addIssue({ code: 'custom', path: ['stalls', i, 'name'], message: `"${r.name}" is named twice` });
      names.add(r.name);
      if (!m.ladder.includes(r.stage)) {
        ctx.addIssue({ code: 'custom', path: ['stalls', i, 'stage'], message: `"${r.stage}" is not on the ladder (${m.ladder.join(' < ')})` });
      }
      // A dialogue quiet for the quiet period has ended: a rule that waits as long would never fire.
      if (r.after >= m.quietDays * 86_400_000) {
        ctx.addIssue({ code: 'custom', path: ['stalls', i, 'after'], message: 'must be shorter than quietDays, which ends a dialogue' });
      }
    });
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

/** A signal an event carries on its dialogue: raised, or settled (`close`). */
export interface SignalMark {
  name: string;
  close?: boolean | undefined;
}

export interface Classification {
  topic: string;
  /** Index into the ladder. */
  stage: number;
  /** Set when the rule that decided marks the event as a signal. */
  signal?: SignalMark | undefined;
}

/**
 * What classification made of an event: a (topic, stage), no rule matched (the event stays in Kafka
 * and never reaches the history), or a rule matched but its topic cannot be kept (dead-lettered).
 * `hintIgnored`: the event named a topic the map does not allow; the rules decided instead.
 */
export type Verdict =
  | ({ kind: 'topic'; hintIgnored: boolean } & Classification)
  | { kind: 'unmatched'; hintIgnored: boolean }
  | { kind: 'refused'; reason: 'topic_too_long'; detail: string; hintIgnored: boolean };

interface CompiledRule {
  path: RegExp | null;
  params: string[];
  channel: string | undefined;
  event: string | undefined;
  topic: string;
  stage: number;
  signal: SignalMark | undefined;
  /** The topics this rule can produce, for judging `data-topic` hints. */
  produces: RegExp;
}

export interface TopicMap {
  readonly ladder: readonly string[];
  readonly quietMs: number;
  /** The stall rules, as configured (history/stalls/rules.ts compiles them). */
  readonly stalls: readonly ParsedStallRule[];
  /** The declared signals, name -> needs weight while open, in the map's order. */
  readonly signals: ReadonlyMap<string, number>;
  /** The caps of `site` (the map's, with the site's own overrides). */
  limits(site: string | undefined): Limits;
  classifyEvent(e: Classifiable): Verdict;
  /** `classifyEvent`, reduced to the (topic, stage) or null. */
  classify(e: Classifiable): Classification | null;
}

// Characters that could break what a topic is written into: control characters (an SSE line, a
// log line) and braces (a Redis Cluster hash tag).
const UNSAFE_IN_TOPIC = /[\u0000-\u001f\u007f-\u009f\u2028\u2029{}]/g;

/**
 * The one form a topic is stored, indexed and published in: trimmed, lower case, well-formed
 * UTF-16, with the unsafe characters above percent-escaped (`{` → `%7b`). Idempotent, so a stored
 * topic given back (a hint, a query) names itself; `%` is left alone for that reason, which makes
 * `a{b` and `a%7bb` one topic. Callers check the length against TOPIC_MAX_LENGTH.
 */
export function normaliseTopic(raw: string): string {
  return raw
    .toWellFormed()
    .trim()
    .toLowerCase()
    .replace(UNSAFE_IN_TOPIC, (c) => encodeURIComponent(c).toLowerCase());
}

/** decodeURIComponent that never throws: a malformed escape stays as it was sent. */
export function safeDecode(s: string): string {
  if (!s.includes('%')) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function compilePath(pattern: string): { re: RegExp; params: string[]; constraints: Map<string, string> } {
  const params: string[] = [];
  const constraints = new Map<string, string>();
  const body = pattern
    .replace(/\/+$/, '')
    .split('/')
    .map((seg) => {
      if (seg === '*') return '.*';
      const m = PARAM.exec(seg);
      if (m) {
        params.push(m[1]!);
        if (m[2] === undefined) return '([^/]+)';
        constraints.set(m[1]!, m[2]);
        // Non-capturing inside, so the pattern's own groups do not shift the captures' numbers.
        return `((?:${m[2]})(?![^/]))`;
      }
      return escapeRe(seg);
    })
    .join('/');
  return { re: new RegExp(`^${body}/?$`), params, constraints };
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
  return missing ? null : out;
}

/**
 * A rule's topic template read as a pattern of the topics it can produce: `product:{sku}` accepts
 * `product:` and then what the capture accepts (its own pattern when the URL constrains it, else
 * anything non-empty).
 */
function templatePattern(template: string, constraints: Map<string, string>): RegExp {
  let re = '';
  let last = 0;
  for (const m of template.matchAll(TEMPLATE)) {
    re += escapeRe(normaliseTopic(template.slice(last, m.index)));
    const c = constraints.get(m[1]!);
    re += c === undefined ? '.+' : `(?:${c})`;
    last = m.index + m[0].length;
  }
  re += escapeRe(normaliseTopic(template.slice(last)));
  return new RegExp(`^${re}$`, 'i');
}

/** `hintTopics` entries: exact topics, or `prefix:*`. */
function allowList(entries: readonly string[]): (topic: string) => boolean {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  for (const e of entries) {
    if (e.endsWith('*')) prefixes.push(normaliseTopic(e.slice(0, -1)));
    else exact.add(normaliseTopic(e));
  }
  return (t) => exact.has(t) || prefixes.some((p) => t.startsWith(p));
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
      signal: r.signal === undefined ? undefined : r.close ? { name: r.signal, close: true } : { name: r.signal },
      produces: templatePattern(r.topic, p?.constraints ?? new Map()),
    };
  };
  const shared = config.rules.map(compile);
  const sharedAllows = allowList(config.hintTopics);
  interface SiteRules {
    rules: CompiledRule[];
    allows: (topic: string) => boolean;
    limits: Limits;
  }
  const sharedSite: SiteRules = { rules: shared, allows: sharedAllows, limits: config.limits };
  // Per site: its own rules first, then the shared ones. A Map, so a site named __proto__ is just a site.
  const bySite = new Map<string, SiteRules>(
    Object.entries(config.sites).map(([site, s]) => {
      const own = allowList(s.hintTopics ?? []);
      return [
        site,
        { rules: [...s.rules.map(compile), ...shared], allows: (t: string) => own(t) || sharedAllows(t), limits: { ...config.limits, ...s.limits } },
      ];
    }),
  );
  const siteOf = (site: string | undefined) => (site !== undefined && bySite.get(site)) || sharedSite;

  function byRules(e: Classifiable, path: string | null, rules: readonly CompiledRule[]): Verdict {
    for (const r of rules) {
      if (r.channel !== undefined && r.channel !== e.channel) continue;
      if (r.event !== undefined && r.event !== e.name && r.event !== e.type) continue;
      const params: Record<string, string> = {};
      if (r.path) {
        if (path === null) continue;
        const m = r.path.exec(path);
        if (!m) continue;
        r.params.forEach((name, i) => {
          params[name] = safeDecode(m[i + 1] ?? '');
        });
      }
      const filled = fill(r.topic, params, e.props);
      if (filled === null) continue;
      const topic = normaliseTopic(filled);
      if (topic === '') continue;
      if (topic.length > TOPIC_MAX_LENGTH) {
        return {
          kind: 'refused',
          reason: 'topic_too_long',
          detail: `the topic has ${topic.length} characters, more than ${TOPIC_MAX_LENGTH}`,
          hintIgnored: false,
        };
      }
      return r.signal
        ? { kind: 'topic', topic, stage: r.stage, signal: r.signal, hintIgnored: false }
        : { kind: 'topic', topic, stage: r.stage, hintIgnored: false };
    }
    return { kind: 'unmatched', hintIgnored: false };
  }

  const hintAllowed = (s: SiteRules, topic: string) =>
    topic !== '' && topic.length <= TOPIC_MAX_LENGTH && (s.allows(topic) || s.rules.some((r) => r.produces.test(topic)));

  function classifyEvent(e: Classifiable): Verdict {
    const path = e.url ? pathOf(e.url) : null;
    const site = siteOf(e.site);
    if (!config.hints || (!e.topic && !e.stage)) return byRules(e, path, site.rules);

    const hintedStage = e.stage ? ladder.indexOf(e.stage.toLowerCase()) : -1;
    if (e.topic) {
      const hinted = normaliseTopic(e.topic);
      if (!hintAllowed(site, hinted)) {
        // A topic no rule could produce: the hint (its stage too, which was about that topic) is
        // ignored, and the event counts for what its URL says.
        return { ...byRules(e, path, site.rules), hintIgnored: true };
      }
      if (hintedStage >= 0) return { kind: 'topic', topic: hinted, stage: hintedStage, hintIgnored: false };
      const fromRules = byRules(e, path, site.rules);
      const stage = fromRules.kind === 'topic' && fromRules.topic === hinted ? fromRules.stage : 0;
      return { kind: 'topic', topic: hinted, stage, hintIgnored: false };
    }
    // A stage hint alone moves the rules' topic to that stage.
    const fromRules = byRules(e, path, site.rules);
    if (fromRules.kind === 'topic' && hintedStage >= 0) return { ...fromRules, stage: hintedStage };
    return fromRules;
  }

  return {
    ladder,
    quietMs: config.quietDays * 86_400_000,
    stalls: config.stalls,
    signals: new Map(Object.entries(config.signals).map(([name, s]) => [name, s.weight])),
    limits: (site) => siteOf(site).limits,
    classifyEvent,
    classify(e) {
      const v = classifyEvent(e);
      if (v.kind !== 'topic') return null;
      return v.signal ? { topic: v.topic, stage: v.stage, signal: v.signal } : { topic: v.topic, stage: v.stage };
    },
  };
}

/** The fold's options for a map: its ladder and quiet period, and the per-person caps. */
export function foldOptionsOf(map: TopicMap, seenSize: number = DEFAULT_SEEN_SIZE): FoldOptions {
  const l = map.limits(undefined);
  const opts: FoldOptions = { ladder: map.ladder, quietMs: map.quietMs, seenSize, maxDialogues: l.dialoguesPerPerson, maxLinks: l.linksPerPerson };
  if (map.signals.size > 0) opts.signals = map.signals;
  return opts;
}
