import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import type { Cluster, Redis } from 'ioredis';
import {
  AUDIENCE_MAX_CONDITIONS,
  AUDIENCE_NAME,
  AudienceDefinition,
  audienceShapeProblem,
  type Condition,
  DialogueCondition,
  RfmCondition,
  LtvCondition,
} from '../../contract/audience.js';
import type { LogProducer } from '../../lib/log.js';
import type { Logger } from '../../lib/logger.js';
import { AudienceError, type CompiledAudience, compileAudience } from '../audiences/membership.js';
import type { CompiledStallRule } from '../stalls/rules.js';
import { type HistoryStore, keys } from '../store/store.js';
import { type BackfillProgress, runBackfill } from './backfill.js';
import { type AutomationConfig, createAutomation } from './evaluate.js';

/**
 * The audience definitions: named, validated against the topic map when written, kept where every
 * process reads them (Redis: the hash `keys.audiences` and its version counter; the embedded mode:
 * memory, with DATA_DIR also a file), and compiled into the fold's Automation by every process that
 * folds (`watch`). Definitions come from the API (`source: 'api'`) or from AUDIENCES_FILE (`'file'`:
 * the file is their source of truth, so the API may read them but not change them).
 *
 * Every write is a compare-and-set of one record (one hash field, one cluster slot), so two writers
 * never lose each other's change; the version counter is bumped after the record, so a poller that
 * sees the new count reads the new record. A bump lost to a crash in between is caught by the
 * pollers' periodic full read.
 */
export const MAX_AUDIENCES = 64;
/** Of a definition's JSON text: the evaluation runs for every folded person, so definitions stay small. */
export const MAX_DEFINITION_BYTES = 16 * 1024;

export interface AudienceRecord {
  name: string;
  /** As written (durations as strings): what the API answers and what is compiled again on every read. */
  definition: unknown;
  /** 1 when created, +1 on every change of the definition. */
  version: number;
  source: 'file' | 'api';
  /** Epoch ms of the last change of the definition. */
  updatedAt: number;
  backfill: BackfillProgress | null;
}

export interface Issue {
  path: string;
  message: string;
}

/** A name or definition the registry refuses; `issues` name where (`name`, `definition.all.0.topic`) and why. */
export class AudienceInputError extends Error {
  constructor(readonly issues: Issue[]) {
    super(issues.map((i) => `${i.path}: ${i.message}`).join('; '));
  }
}

/** A valid request the registry's state refuses. */
export class AudienceConflictError extends Error {
  constructor(
    readonly code: 'read_only_audience' | 'too_many_audiences',
    message: string,
  ) {
    super(message);
  }
}

// --- backends ----------------------------------------------------------------------------------

/** Where the records are kept: name -> JSON record, and a counter bumped on every change. */
export interface DefinitionsBackend {
  version(): Promise<number>;
  bump(): Promise<void>;
  all(): Promise<Map<string, string>>;
  get(name: string): Promise<string | null>;
  /**
   * Sets `name` to `next` (null: deletes it) if it holds `expect` now (null: absent), and, when it
   * adds a name, only while fewer than `cap` are kept.
   */
  swap(name: string, expect: string | null, next: string | null, cap: number): Promise<'ok' | 'changed' | 'full'>;
}

/** One process's definitions; with a path, kept in that file too (the embedded mode's DATA_DIR), written whole and renamed into place. */
export class MemoryDefinitions implements DefinitionsBackend {
  private readonly records = new Map<string, string>();
  private counter = 0;
  private writing: Promise<void> = Promise.resolve();

  private constructor(private readonly path: string | undefined) {}

  static async open(path?: string): Promise<MemoryDefinitions> {
    const m = new MemoryDefinitions(path);
    if (path) {
      let text: string | undefined;
      try {
        text = await readFile(path, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      if (text !== undefined) {
        let saved: { records?: Record<string, string> };
        try {
          saved = JSON.parse(text) as typeof saved;
        } catch (err) {
          throw new Error(`${path}: the saved audience definitions are not valid JSON (${(err as Error).message}); restore or remove the file`);
        }
        for (const [name, record] of Object.entries(saved?.records ?? {})) if (typeof record === 'string') m.records.set(name, record);
      }
    }
    return m;
  }

  async version(): Promise<number> {
    return this.counter;
  }

  async bump(): Promise<void> {
    this.counter++;
  }

  async all(): Promise<Map<string, string>> {
    return new Map(this.records);
  }

  async get(name: string): Promise<string | null> {
    return this.records.get(name) ?? null;
  }

  async swap(name: string, expect: string | null, next: string | null, cap: number): Promise<'ok' | 'changed' | 'full'> {
    const cur = this.records.get(name) ?? null;
    if (cur !== expect) return 'changed';
    if (next === null) this.records.delete(name);
    else if (cur === null && this.records.size >= cap) return 'full';
    else this.records.set(name, next);
    await this.save();
    return 'ok';
  }

  private save(): Promise<void> {
    const path = this.path;
    if (!path) return Promise.resolve();
    const text = JSON.stringify({ records: Object.fromEntries(this.records) });
    // Writes queue up so that the file ends with the last state, never an older one.
    this.writing = this.writing
      .catch(() => {})
      .then(async () => {
        const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
        await writeFile(tmp, text, 'utf8');
        await rename(tmp, path);
      });
    return this.writing;
  }
}

const SWAP = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur == false then cur = '' end
if cur ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
if cur == '' and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
`;

type SwapClient = (Redis | Cluster) & {
  clickfoldAudienceSwap(hash: string, name: string, expect: string, next: string, cap: string): Promise<number>;
};

/** The definitions in Redis, shared by every process of a namespace. Records are never empty strings, which the script uses for "absent". */
export class RedisDefinitions implements DefinitionsBackend {
  private readonly redis: SwapClient;

  constructor(
    redis: Redis | Cluster,
    private readonly ns = '',
  ) {
    if (!('clickfoldAudienceSwap' in redis)) redis.defineCommand('clickfoldAudienceSwap', { numberOfKeys: 1, lua: SWAP });
    this.redis = redis as SwapClient;
  }

  async version(): Promise<number> {
    return Number((await this.redis.get(keys.audiencesVersion(this.ns))) ?? 0);
  }

  async bump(): Promise<void> {
    await this.redis.incr(keys.audiencesVersion(this.ns));
  }

  async all(): Promise<Map<string, string>> {
    return new Map(Object.entries(await this.redis.hgetall(keys.audiences(this.ns))));
  }

  async get(name: string): Promise<string | null> {
    return this.redis.hget(keys.audiences(this.ns), name);
  }

  async swap(name: string, expect: string | null, next: string | null, cap: number): Promise<'ok' | 'changed' | 'full'> {
    const r = await this.redis.clickfoldAudienceSwap(keys.audiences(this.ns), name, expect ?? '', next ?? '', String(cap));
    return r === 1 ? 'ok' : r === -1 ? 'full' : 'changed';
  }
}

// --- validation --------------------------------------------------------------------------------

const NAME_HELP = 'an audience name is 1 to 64 lower-case letters, digits, - and _, starting with a letter or digit';
const CONDITION_HELP =
  'a condition is an object: {"all": [...]}, {"any": [...]}, {"not": {...}}, {"rfm": {...}}, {"ltv": {...}} or a dialogue condition (topic, atLeast, exactly, notReached, activeWithin, stalled)';
const DIALOGUE_KEYS = ['topic', 'atLeast', 'exactly', 'notReached', 'activeWithin', 'stalled'];
const MAX_ISSUES = 10;

const join = (path: string, key: string | number) => `${path}.${key}`;
const quote = (s: string) => JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s);

/**
 * The problems of a definition, worded for the person who wrote it. zod's union reports every
 * branch it tried ("Invalid input"); this walk knows which branch the object means by its keys and
 * reports that branch's problem at its path. Recursion is bounded: it runs after the iterative shape
 * check (depth and count), and descends only through all/any/not.
 */
function definitionIssues(v: unknown, path: string, out: Issue[]): void {
  if (out.length >= MAX_ISSUES) return;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    out.push({ path, message: CONDITION_HELP });
    return;
  }
  const o = v as Record<string, unknown>;
  const ks = Object.keys(o);
  const lead = ks.find((k) => k === 'all' || k === 'any' || k === 'not' || k === 'rfm' || k === 'ltv');
  if (lead === undefined) {
    const r = DialogueCondition.safeParse(o);
    if (r.success) return;
    for (const i of r.error.issues) {
      if (i.code === 'unrecognized_keys') {
        for (const k of i.keys) out.push({ path: join(path, k), message: `unknown key ${quote(k)}: a dialogue condition has ${DIALOGUE_KEYS.join(', ')}` });
      } else {
        out.push({ path: i.path.length ? `${path}.${i.path.map(String).join('.')}` : path, message: i.message });
      }
    }
    return;
  }
  if (ks.length > 1) {
    out.push({
      path,
      message: `"${lead}" stands alone in its object (found also ${ks
        .filter((k) => k !== lead)
        .slice(0, 5)
        .map(quote)
        .join(', ')}): wrap several conditions in {"all": [...]}`,
    });
    return;
  }
  if (lead === 'not') {
    definitionIssues(o.not, join(path, 'not'), out);
    return;
  }
  if (lead === 'rfm' || lead === 'ltv') {
    const r = (lead === 'rfm' ? RfmCondition : LtvCondition).safeParse(o);
    if (!r.success) for (const i of r.error.issues) out.push({ path: [path, ...i.path.map(String)].join('.'), message: i.message });
    return;
  }
  const list = o[lead];
  if (!Array.isArray(list) || list.length === 0 || list.length > AUDIENCE_MAX_CONDITIONS) {
    out.push({ path: join(path, lead), message: `"${lead}" takes a list of 1 to ${AUDIENCE_MAX_CONDITIONS} conditions` });
    return;
  }
  for (const [i, x] of list.entries()) definitionIssues(x, join(path, `${lead}.${i}`), out);
}

export interface DefinitionContext {
  ladder: readonly string[];
  quietMs: number;
  /** The topic map's stall rules, by name. */
  stallRules: ReadonlySet<string>;
  /** The topic map's signals, by name. */
  signals?: ReadonlySet<string> | undefined;
}

export interface ValidDefinition {
  /** The definition as JSON text (what is stored). */
  json: string;
  parsed: Condition;
  compiled: CompiledAudience;
}

/** Checks a name and a definition (size, shape, grammar, the topic map's stages and rules); throws AudienceInputError. */
export function validateDefinition(name: string, definition: unknown, ctx: DefinitionContext): ValidDefinition {
  if (typeof name !== 'string' || !AUDIENCE_NAME.test(name)) throw new AudienceInputError([{ path: 'name', message: NAME_HELP }]);
  let json: string | undefined;
  try {
    json = JSON.stringify(definition);
  } catch {
    json = undefined;
  }
  if (json === undefined) throw new AudienceInputError([{ path: 'definition', message: 'the definition is not a JSON value' }]);
  const bytes = Buffer.byteLength(json);
  if (bytes > MAX_DEFINITION_BYTES)
    throw new AudienceInputError([{ path: 'definition', message: `a definition has at most ${MAX_DEFINITION_BYTES} bytes of JSON (this one ${bytes})` }]);
  const shape = audienceShapeProblem(definition);
  if (shape) throw new AudienceInputError([{ path: 'definition', message: shape }]);
  const r = AudienceDefinition.safeParse(definition);
  if (!r.success) {
    const issues: Issue[] = [];
    definitionIssues(definition, 'definition', issues);
    // The walk and the schema should agree; if they ever do not, zod's own words are better than nothing.
    if (issues.length === 0)
      for (const i of r.error.issues.slice(0, MAX_ISSUES)) issues.push({ path: ['definition', ...i.path.map(String)].join('.'), message: i.message });
    throw new AudienceInputError(issues);
  }
  try {
    return { json, parsed: r.data, compiled: compileAudience(r.data, ctx) };
  } catch (err) {
    if (err instanceof AudienceError) throw new AudienceInputError([{ path: 'definition', message: err.message }]);
    throw err;
  }
}

/** A stored record, or null when it is not one (a hand edit of the hash): it is left out, not fatal. */
export function parseRecord(text: string): AudienceRecord | null {
  try {
    const r = JSON.parse(text) as Partial<AudienceRecord>;
    if (
      typeof r === 'object' &&
      r !== null &&
      typeof r.name === 'string' &&
      Number.isSafeInteger(r.version) &&
      (r.source === 'api' || r.source === 'file') &&
      Number.isFinite(r.updatedAt) &&
      'definition' in r
    ) {
      return { name: r.name, definition: r.definition, version: r.version!, source: r.source, updatedAt: r.updatedAt!, backfill: r.backfill ?? null };
    }
  } catch {
    // falls through
  }
  return null;
}

// --- the file ----------------------------------------------------------------------------------

/** AUDIENCES_FILE: `{"audiences": {"name": definition, ...}}`. Checked against the topic map when the registry takes it (`syncFile`). */
export async function loadAudiencesFile(path: string): Promise<Record<string, unknown>> {
  const text = await readFile(path, 'utf8');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not valid JSON: ${(err as Error).message}`);
  }
  const audiences = (doc as { audiences?: unknown } | null)?.audiences;
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc) || typeof audiences !== 'object' || audiences === null || Array.isArray(audiences)) {
    throw new Error(`${path}: expected {"audiences": {"name": definition, ...}}`);
  }
  const extra = Object.keys(doc).filter((k) => k !== 'audiences');
  if (extra.length) throw new Error(`${path}: unknown key ${quote(extra[0]!)}: the file holds only "audiences"`);
  return audiences as Record<string, unknown>;
}

// --- the registry ------------------------------------------------------------------------------

export interface AudienceRegistryOptions {
  /** The store whose members are counted and dropped, and whose stage indexes a backfill reads. */
  store: HistoryStore;
  /** The topic map's compiled stall rules (definitions may name them in `stalled`). */
  stallRules: readonly CompiledStallRule[];
  /** Where backfill ticks are sent (`clicks.raw`); without one, a new audience fills as people act. */
  producer?: LogProducer | undefined;
  logger?: Logger | undefined;
  now?: () => number;
  /**
   * How long a backfill waits before its first tick, so that every folding process has compiled
   * the new definition (their `watch` polls every second) before the ticks reach them. Also how
   * long after a delete the audience's members are dropped a second time (a fold that had the old
   * definition for a moment may have added someone). Default 3 s.
   */
  settleMs?: number;
}

export interface PutResult {
  record: AudienceRecord;
  created: boolean;
  /** False when the same definition was already stored (nothing was written). */
  changed: boolean;
}

export interface AutomationWatch {
  /** Reads the definitions now and applies them if they changed. */
  refresh(): Promise<void>;
  stop(): Promise<void>;
}

const RETRIES = 5;

export class AudienceRegistry {
  private readonly store: HistoryStore;
  private readonly ctx: DefinitionContext;
  private readonly now: () => number;
  private readonly settleMs: number;
  private readonly backfills = new Map<string, { abort: AbortController; done: Promise<void> }>();
  private readonly timers = new Set<{ abort: AbortController; done: Promise<void> }>();
  private readonly watchers = new Set<AutomationWatch>();
  private closed = false;

  constructor(
    private readonly backend: DefinitionsBackend,
    private readonly opts: AudienceRegistryOptions,
  ) {
    this.store = opts.store;
    this.ctx = {
      ladder: opts.store.options.ladder,
      quietMs: opts.store.options.quietMs,
      stallRules: new Set(opts.stallRules.map((r) => r.name)),
      signals: new Set(opts.store.options.signals?.keys() ?? []),
    };
    this.now = opts.now ?? Date.now;
    this.settleMs = opts.settleMs ?? 3000;
  }

  /** Every audience, by name. */
  async list(): Promise<AudienceRecord[]> {
    const out: AudienceRecord[] = [];
    for (const [name, text] of await this.backend.all()) {
      const r = parseRecord(text);
      if (r && r.name === name) out.push(r);
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async get(name: string): Promise<AudienceRecord | null> {
    if (!AUDIENCE_NAME.test(name)) return null;
    const text = await this.backend.get(name);
    const r = text === null ? null : parseRecord(text);
    return r && r.name === name ? r : null;
  }

  /**
   * Creates or replaces an API audience. The same definition again changes nothing (no new
   * version, no backfill); a new or changed one is in force in this process when this resolves,
   * in the others within their watch's poll, and starts a backfill.
   */
  async put(name: string, definition: unknown): Promise<PutResult> {
    const valid = validateDefinition(name, definition, this.ctx);
    for (let attempt = 0; attempt < RETRIES; attempt++) {
      const curText = await this.backend.get(name);
      const cur = curText === null ? null : parseRecord(curText);
      if (cur?.source === 'file') throw new AudienceConflictError('read_only_audience', `audience "${name}" comes from the audiences file; change it there`);
      if (cur && JSON.stringify(cur.definition) === valid.json) return { record: cur, created: false, changed: false };
      const record = this.recordOf(name, valid.json, 'api', cur);
      const r = await this.backend.swap(name, curText, JSON.stringify(record), MAX_AUDIENCES);
      if (r === 'full') throw new AudienceConflictError('too_many_audiences', `at most ${MAX_AUDIENCES} audiences: delete one before creating "${name}"`);
      if (r === 'changed') continue;
      await this.changed([{ record, parsed: valid.parsed }]);
      return { record, created: cur === null, changed: true };
    }
    throw new Error(`audience "${name}" changed under ${RETRIES} attempts in a row`);
  }

  /** Deletes an API audience and its members; false when there is none. */
  async delete(name: string): Promise<boolean> {
    if (!AUDIENCE_NAME.test(name)) return false;
    for (let attempt = 0; attempt < RETRIES; attempt++) {
      const curText = await this.backend.get(name);
      if (curText === null) return false;
      if (parseRecord(curText)?.source === 'file')
        throw new AudienceConflictError('read_only_audience', `audience "${name}" comes from the audiences file; remove it there`);
      const r = await this.backend.swap(name, curText, null, MAX_AUDIENCES);
      if (r === 'changed') continue;
      await this.removed(name);
      return true;
    }
    throw new Error(`audience "${name}" changed under ${RETRIES} attempts in a row`);
  }

  /**
   * Makes the file's audiences the registry's `source: 'file'` ones: new and changed ones written
   * (an API audience of the same name is taken over), file audiences no longer in it deleted. Every
   * definition is checked first; any problem throws, naming the file and the audience, and nothing
   * is written. Processes started with the same file agree, so whichever comes first writes.
   */
  async syncFile(defs: Record<string, unknown>, file = 'AUDIENCES_FILE'): Promise<void> {
    const names = Object.keys(defs);
    const problems: string[] = [];
    if (names.length > MAX_AUDIENCES) problems.push(`${file}: at most ${MAX_AUDIENCES} audiences (it has ${names.length})`);
    const wanted = new Map<string, ValidDefinition>();
    for (const name of names.slice(0, MAX_AUDIENCES)) {
      try {
        wanted.set(name, validateDefinition(name, defs[name], this.ctx));
      } catch (err) {
        if (!(err instanceof AudienceInputError)) throw err;
        problems.push(...err.issues.map((i) => `${file}: audiences.${name}${i.path === 'name' ? '' : i.path.slice('definition'.length)}: ${i.message}`));
      }
    }
    if (problems.length) throw new Error(problems.join('\n'));

    const changed: { record: AudienceRecord; parsed: Condition }[] = [];
    for (const [name, valid] of wanted) {
      for (let attempt = 0; ; attempt++) {
        if (attempt === RETRIES) throw new Error(`${file}: audience "${name}" changed under ${RETRIES} attempts in a row`);
        const curText = await this.backend.get(name);
        const cur = curText === null ? null : parseRecord(curText);
        if (cur?.source === 'file' && JSON.stringify(cur.definition) === valid.json) break;
        if (cur?.source === 'api') this.opts.logger?.warn({ audience: name }, 'the audiences file takes over an audience created through the API');
        const record = this.recordOf(name, valid.json, 'file', cur);
        const r = await this.backend.swap(name, curText, JSON.stringify(record), MAX_AUDIENCES);
        if (r === 'full') throw new Error(`${file}: audience "${name}": the registry holds ${MAX_AUDIENCES} audiences already; delete some through the API`);
        if (r === 'ok') {
          changed.push({ record, parsed: valid.parsed });
          break;
        }
      }
    }
    if (changed.length) await this.changed(changed);
    for (const r of await this.list()) {
      if (r.source !== 'file' || wanted.has(r.name)) continue;
      const curText = await this.backend.get(r.name);
      if (curText !== null && parseRecord(curText)?.source === 'file' && (await this.backend.swap(r.name, curText, null, MAX_AUDIENCES)) === 'ok') {
        await this.removed(r.name);
      }
    }
  }

  /**
   * Keeps `store`'s automation in step with the definitions: the stall rules and every audience that
   * compiles, or null when there are neither. Resolves once the current definitions are applied,
   * then polls the version counter every `everyMs` (and reads everything every `refreshMs`, in case
   * a bump was lost). A stored definition that no longer compiles (the topic map changed since) is
   * left out, with an error in the log.
   */
  async watch(
    store: HistoryStore,
    stallRules: readonly CompiledStallRule[],
    opts: { everyMs?: number; refreshMs?: number; crm?: AutomationConfig['crm'] } = {},
  ): Promise<AutomationWatch> {
    const everyMs = opts.everyMs ?? 1000;
    const refreshMs = opts.refreshMs ?? 30_000;
    const ctx: DefinitionContext = {
      ladder: store.options.ladder,
      quietMs: store.options.quietMs,
      stallRules: new Set(stallRules.map((r) => r.name)),
      signals: new Set(store.options.signals?.keys() ?? []),
    };
    const log = this.opts.logger;
    let seenVersion: number | null = null;
    let lastFull = 0;
    let applied: string | null = null;
    const refused = new Set<string>();
    let lastWarned = 0;

    const apply = async (force: boolean) => {
      const version = await this.backend.version();
      const now = Date.now();
      if (!force && version === seenVersion && now - lastFull < refreshMs) return;
      const records = await this.list();
      seenVersion = version;
      lastFull = now;
      const signature = JSON.stringify(records.map((r) => [r.name, r.source, r.version, r.updatedAt]));
      if (signature === applied) return;
      const audiences: { name: string; compiled: CompiledAudience }[] = [];
      for (const r of records) {
        try {
          audiences.push({ name: r.name, compiled: validateDefinition(r.name, r.definition, ctx).compiled });
        } catch (err) {
          const key = `${r.name}@${r.version}:${r.updatedAt}`;
          if (!refused.has(key)) {
            refused.add(key);
            log?.error(
              { audience: r.name, version: r.version, err: (err as Error).message },
              'audience definition does not compile against the topic map; left out',
            );
          }
        }
      }
      store.setAutomation(
        audiences.length > 0 || stallRules.length > 0
          ? createAutomation({ ladder: ctx.ladder, quietMs: ctx.quietMs, stallRules, audiences, crm: opts.crm })
          : null,
      );
      applied = signature;
      log?.info({ audiences: audiences.map((a) => a.name), stallRules: stallRules.length }, 'audience definitions applied');
    };

    // One apply at a time: a refresh asked for while one runs waits for it, then runs its own.
    let running: Promise<void> = Promise.resolve();
    const run = (force: boolean) => {
      running = running.catch(() => {}).then(() => apply(force));
      return running;
    };

    await run(true);
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const loop = () => {
      timer = setTimeout(() => {
        run(false)
          .catch((err) => {
            if (Date.now() - lastWarned >= 30_000) {
              lastWarned = Date.now();
              log?.warn({ err: (err as Error).message }, 'cannot read the audience definitions; the ones in force stay until they can be read');
            }
          })
          .finally(() => {
            if (!stopped) loop();
          });
      }, everyMs);
      timer.unref();
    };
    loop();
    const w: AutomationWatch = {
      refresh: () => run(false),
      stop: async () => {
        stopped = true;
        clearTimeout(timer);
        this.watchers.delete(w);
        await running.catch(() => {});
      },
    };
    this.watchers.add(w);
    return w;
  }

  /** Waits for the backfills and delayed drops in flight (tests; a clean stop). */
  async settled(): Promise<void> {
    while (this.backfills.size > 0 || this.timers.size > 0) {
      await Promise.all([...this.backfills.values(), ...this.timers].map((b) => b.done));
    }
  }

  /** Stops the watches and the backfills in flight (a stopped backfill says `running` until the next write of its audience). */
  async close(): Promise<void> {
    this.closed = true;
    for (const b of [...this.backfills.values(), ...this.timers]) b.abort.abort();
    await Promise.all([...this.watchers].map((w) => w.stop()));
    await this.settled();
  }

  private recordOf(name: string, json: string, source: 'api' | 'file', cur: AudienceRecord | null): AudienceRecord {
    const now = this.now();
    return {
      name,
      definition: JSON.parse(json) as unknown,
      version: (cur?.version ?? 0) + 1,
      source,
      updatedAt: now,
      backfill: this.opts.producer ? { state: 'running', total: 0, done: 0, startedAt: now, finishedAt: null } : null,
    };
  }

  /** After definitions were written: tell the pollers, apply here, backfill. */
  private async changed(list: { record: AudienceRecord; parsed: Condition }[]): Promise<void> {
    await this.backend.bump();
    await Promise.all([...this.watchers].map((w) => w.refresh().catch(() => {})));
    for (const { record, parsed } of list) this.startBackfill(record, parsed);
  }

  private async removed(name: string): Promise<void> {
    this.backfills.get(name)?.abort.abort();
    await this.backend.bump();
    await Promise.all([...this.watchers].map((w) => w.refresh().catch(() => {})));
    await this.store.dropAudience(name);
    // A fold that still had the definition a moment ago may have added someone since.
    this.later(this.settleMs, async () => {
      if ((await this.backend.get(name)) === null) await this.store.dropAudience(name);
    });
  }

  private later(ms: number, task: () => Promise<void>): void {
    if (this.closed) return;
    const abort = new AbortController();
    const entry = {
      abort,
      done: sleep(ms, abort.signal)
        .then(() => (abort.signal.aborted ? undefined : task()))
        .catch((err) => this.opts.logger?.warn({ err: (err as Error).message }, 'dropping a deleted audience’s members failed'))
        .finally(() => this.timers.delete(entry)),
    };
    this.timers.add(entry);
  }

  private startBackfill(record: AudienceRecord, parsed: Condition): void {
    const producer = this.opts.producer;
    if (!producer || this.closed) return;
    this.backfills.get(record.name)?.abort.abort();
    const abort = new AbortController();
    const log = this.opts.logger;
    const progress = async (p: BackfillProgress): Promise<boolean> => {
      for (let attempt = 0; attempt < RETRIES; attempt++) {
        const curText = await this.backend.get(record.name);
        const cur = curText === null ? null : parseRecord(curText);
        // Another write of the definition since: its own backfill takes over.
        if (!cur || cur.version !== record.version || cur.source !== record.source || cur.updatedAt !== record.updatedAt) return false;
        if ((await this.backend.swap(record.name, curText, JSON.stringify({ ...cur, backfill: p }), MAX_AUDIENCES)) === 'ok') return true;
      }
      return false;
    };
    const entry = {
      abort,
      done: sleep(this.settleMs, abort.signal)
        .then(async () => {
          if (abort.signal.aborted) return;
          const p = await runBackfill(record.name, parsed, {
            store: this.store,
            producer,
            ladder: this.ctx.ladder,
            now: this.now,
            progress,
            signal: abort.signal,
            startedAt: record.backfill?.startedAt,
          });
          log?.info({ audience: record.name, version: record.version, state: p.state, total: p.total, done: p.done }, 'audience backfill ended');
        })
        .catch((err) => log?.error({ audience: record.name, err: (err as Error).message }, 'audience backfill failed'))
        .finally(() => {
          if (this.backfills.get(record.name) === entry) this.backfills.delete(record.name);
        }),
    };
    this.backfills.set(record.name, entry);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (ms <= 0 || signal.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}

export interface OpenRegistryOptions extends AudienceRegistryOptions {
  /** Redis and the store's namespace; without, the definitions live in this process (the embedded mode). */
  redis?: { client: Redis | Cluster; ns: string } | undefined;
  /** The embedded mode's file for the definitions (DATA_DIR), so that they survive a restart with the histories. */
  path?: string | undefined;
  /** AUDIENCES_FILE. */
  file?: string | undefined;
}

/** The registry of a process: its backend, and the audiences file synced in (a bad file fails the start, naming the problem). */
export async function openAudienceRegistry(opts: OpenRegistryOptions): Promise<AudienceRegistry> {
  const backend = opts.redis ? new RedisDefinitions(opts.redis.client, opts.redis.ns) : await MemoryDefinitions.open(opts.path);
  // In one process the definitions are in force as soon as they are written: no one else to wait for.
  const registry = new AudienceRegistry(backend, { ...opts, settleMs: opts.settleMs ?? (opts.redis ? 3000 : 0) });
  if (opts.file) await registry.syncFile(await loadAudiencesFile(opts.file), opts.file);
  return registry;
}
