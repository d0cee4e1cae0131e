import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Readable } from 'node:stream';
import { parse } from 'csv-parse';
import { PERSON_ID, TOPICS, traitProblem, type TraitRefusal, type TraitValue } from '../contract/raw-event.js';
import { pickTraits, toRawMessage, type EventInput } from '../ingest/raw.js';
import { compileSites, loadSites, type Site } from '../ingest/sites.js';
import { parseEnv } from '../lib/config.js';
import type { LogMessage, LogProducer } from '../lib/log.js';
import { createLogger } from '../lib/logger.js';
import { openLog } from './shared/backends.js';

/**
 * `npm run import-traits -- --site SITE [--every N] [--dry-run] FILE.csv`
 * The company's own data about its customers (plan, tier, country...) as identify records on
 * `clicks.raw`, one per row, built by ingest's own builder (ingest/raw.ts) under the site's
 * allow-list: the workers fold them into the people's traits like any identify's.
 */
const USAGE = `usage: npm run import-traits -- --site SITE [--sites FILE] [--every N] [--dry-run] FILE.csv

  FILE.csv   a header row, then one row per customer:
               user_id,plan,seats:number,trial:boolean
               u-1001,pro,12,false
             user_id is the id your site identifies the person with. A column is a trait the
             site allow-lists (privacy.traits in the sites file); its values are text unless
             the header types it (:number, :boolean). An empty cell leaves that trait as it is.
  --site     the site whose people these are, as in the sites file (INGEST_SITES, or --sites)
  --every    print progress every N rows (default 10000)
  --dry-run  check the file against the site and print the summary; send nothing

Columns the site does not allow-list are refused and their values never sent. A row is refused
whole (and counted by reason) when its user id is not one, it has more than 32 traits, a value is
longer than 63 bytes, a typed value is not of its type, or nothing is left to send.

Needs KAFKA_BROKERS: the records go to clicks.raw and the workers fold them. The embedded mode
(npm start without Kafka) keeps its log inside that one process, so another process cannot
write to it: run the import against the real stack.`;

/** Why a row was not sent. */
export type RowRefusal = TraitRefusal | 'too_many_traits' | 'bad_user_id' | 'bad_value' | 'column_not_allowed' | 'no_traits' | 'bad_row';

export interface ImportSummary {
  /** Data rows read (the header not counted). */
  rows: number;
  /** Identify records sent (or, in a dry run, that would be). */
  sent: number;
  refused: Partial<Record<RowRefusal, number>>;
  /** The first refusals, with the file's line, for the operator to look at. */
  examples: { line: number; reason: RowRefusal; detail: string }[];
  /** Header columns that are not sent, and why. */
  columnsRefused: { column: string; reason: 'column_not_allowed' | 'bad_name'; detail: string }[];
  /** Non-empty cells of refused columns in rows that were sent otherwise. */
  valuesNotSent: number;
}

export interface ImportOptions {
  /** The CSV, as bytes or text. */
  input: Readable;
  site: Site;
  /** Null: a dry run. */
  producer: LogProducer | null;
  now?: () => number;
  /** Progress every this many rows (and once at the end). */
  every?: number;
  onProgress?: (s: ImportSummary) => void;
  /** Records per send: the producer is awaited between them, so a large file never piles up in memory. */
  chunk?: number;
}

/** A header problem that stops the import before anything is sent. */
export class ImportError extends Error {}

type Column = { index: number; name: string; type: 'string' | 'number' | 'boolean' };

const USER_COLUMN = 'user_id';
const MAX_EXAMPLES = 10;
/** Beyond this a line is not a customer row; csv-parse skips it (counted as bad_row) instead of buffering it. */
const MAX_RECORD_BYTES = 4 * 1024 * 1024;

/** The header's columns: the user id's, the traits to send, the ones refused. */
interface Header {
  user: number;
  columns: Column[];
  refused: ImportSummary['columnsRefused'];
  /** Where the refused columns are in a row. */
  refusedAt: number[];
}

function readHeader(header: string[], site: Site): Header {
  const names = header.map((h) => h.trim());
  const user = names.indexOf(USER_COLUMN);
  if (user < 0) throw new ImportError(`the header has no ${USER_COLUMN} column (it has: ${names.join(', ').slice(0, 300)})`);
  const columns: Column[] = [];
  const refused: ImportSummary['columnsRefused'] = [];
  const refusedAt: number[] = [];
  const seen = new Set<string>();
  names.forEach((raw, index) => {
    if (index === user) return;
    const colon = raw.lastIndexOf(':');
    const typed = colon > 0 ? raw.slice(colon + 1) : '';
    const type = typed === 'number' || typed === 'boolean' || typed === 'string' ? typed : 'string';
    const name = type === typed ? raw.slice(0, colon) : raw;
    if (seen.has(name)) throw new ImportError(`column "${name}" appears twice in the header`);
    seen.add(name);
    const bad = traitProblem(name, '');
    if (bad) refused.push({ column: raw, reason: 'bad_name', detail: bad.message });
    else if (!site.privacy.allowsTrait(name)) {
      refused.push({ column: raw, reason: 'column_not_allowed', detail: `site "${site.id}" does not allow-list trait "${name}" (privacy.traits)` });
    } else {
      columns.push({ index, name, type });
      return;
    }
    refusedAt.push(index);
  });
  return { user, columns, refused, refusedAt };
}

function cellValue(cell: string, type: Column['type']): TraitValue | undefined {
  if (type === 'string') return cell;
  if (type === 'boolean') return cell === 'true' ? true : cell === 'false' ? false : undefined;
  const n = Number(cell);
  return cell.trim() !== '' && Number.isFinite(n) ? n : undefined;
}

/**
 * Reads the CSV, refuses what the site would not keep, and sends one identify record per row to
 * `clicks.raw` keyed by the user id (so a person's records fold in file order: a later row wins).
 * Throws ImportError for a header it cannot use; every row problem is counted instead.
 */
export async function importTraits(opts: ImportOptions): Promise<ImportSummary> {
  const now = opts.now ?? Date.now;
  const every = opts.every ?? 10_000;
  const chunk = opts.chunk ?? 500;
  const s: ImportSummary = { rows: 0, sent: 0, refused: {}, examples: [], columnsRefused: [], valuesNotSent: 0 };
  const refuse = (line: number, reason: RowRefusal, detail: string) => {
    s.refused[reason] = (s.refused[reason] ?? 0) + 1;
    if (s.examples.length < MAX_EXAMPLES) s.examples.push({ line, reason, detail: detail.slice(0, 200) });
  };
  let pending: LogMessage[] = [];
  const flush = async () => {
    if (pending.length === 0) return;
    const batch = pending;
    pending = [];
    if (opts.producer) await opts.producer.send(TOPICS.raw, batch);
    s.sent += batch.length;
  };

  const parser = opts.input.pipe(
    parse({
      bom: true,
      info: true,
      relax_column_count: true,
      skip_empty_lines: true,
      skip_records_with_error: true,
      max_record_size: MAX_RECORD_BYTES,
      on_skip: (err) => {
        s.rows++;
        refuse(Number(err?.lines) || 0, 'bad_row', err?.message ?? 'not a CSV row');
        return undefined;
      },
    }),
  );
  let header: Header | null = null;
  let width = 0;
  for await (const { record, info } of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
    if (!header) {
      header = readHeader(record, opts.site);
      s.columnsRefused = header.refused;
      width = record.length;
      continue;
    }
    s.rows++;
    const line = info.lines;
    const row = ((): { reason: RowRefusal; detail: string } | { user: string; props: Record<string, TraitValue>; notSent: number } => {
      if (record.length !== width) return { reason: 'bad_row', detail: `${record.length} cells, the header has ${width}` };
      const user = (record[header.user] ?? '').trim();
      if (!PERSON_ID.test(user))
        return { reason: 'bad_user_id', detail: `"${user.slice(0, 64)}" is not a user id (1 to 128 letters, digits and . _ : @ + - | = ~ ! $ *)` };
      const props: Record<string, TraitValue> = {};
      for (const c of header.columns) {
        const cell = record[c.index] ?? '';
        if (cell === '') continue;
        const value = cellValue(cell, c.type);
        if (value === undefined) return { reason: 'bad_value', detail: `${c.name}: "${cell.slice(0, 64)}" is not a ${c.type}` };
        props[c.name] = value;
      }
      const notSent = header.refusedAt.filter((i) => (record[i] ?? '') !== '').length;
      if (Object.keys(props).length === 0) {
        return notSent > 0
          ? { reason: 'column_not_allowed', detail: 'its only values are in columns the site does not allow-list' }
          : { reason: 'no_traits', detail: 'every trait cell is empty' };
      }
      const picked = pickTraits(props);
      const first = picked.dropped[0];
      if (first) return { reason: first.reason, detail: `${first.name}: ${first.reason.replaceAll('_', ' ')}` };
      return { user, props, notSent };
    })();
    if ('reason' in row) {
      refuse(line, row.reason, row.detail);
    } else {
      s.valuesNotSent += row.notSent;
      const at = now();
      const input: EventInput = {
        id: `imp-${randomUUID()}`,
        site: opts.site.id,
        person: row.user,
        user: row.user,
        channel: 'import',
        type: 'identify',
        ts: at,
        props: row.props,
      };
      pending.push(toRawMessage(input, { rt: at, ua: undefined, bot: false, ip: undefined }, opts.site.privacy));
      if (pending.length >= chunk) await flush();
    }
    if (s.rows % every === 0) {
      await flush();
      opts.onProgress?.(s);
    }
  }
  if (!header) throw new ImportError('the file is empty: it needs a header row (user_id,<trait>,...)');
  await flush();
  opts.onProgress?.(s);
  return s;
}

export function formatSummary(s: ImportSummary, dryRun = false): string {
  const refused = Object.values(s.refused).reduce((a, b) => a + (b ?? 0), 0);
  const lines = [`${s.rows} rows read, ${s.sent} records ${dryRun ? 'to send (dry run: none sent)' : 'sent'}, ${refused} rows refused`];
  for (const [reason, n] of Object.entries(s.refused).sort((a, b) => (b[1] ?? 0) - (a[1] ?? 0))) lines.push(`  ${reason}: ${n}`);
  for (const e of s.examples) lines.push(`  line ${e.line}: ${e.reason}: ${e.detail}`);
  for (const c of s.columnsRefused) lines.push(`column "${c.column}" refused (${c.reason}): ${c.detail}`);
  if (s.valuesNotSent > 0) {
    lines.push(`${s.valuesNotSent} value${s.valuesNotSent === 1 ? '' : 's'} in refused columns not sent (their rows were, without them)`);
  }
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  let values: {
    site?: string | undefined;
    sites?: string | undefined;
    every?: string | undefined;
    'dry-run'?: boolean | undefined;
    help?: boolean | undefined;
  };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        site: { type: 'string' },
        sites: { type: 'string' },
        every: { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help || !values.site || positionals.length !== 1) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  const every = values.every === undefined ? 10_000 : Number(values.every);
  if (!Number.isInteger(every) || every < 1) {
    console.error(`--every: "${values.every}" is not a whole number of rows`);
    return 2;
  }
  const env = parseEnv();
  const dryRun = values['dry-run'] === true;
  if (!dryRun && !env.KAFKA_BROKERS) {
    console.error('import-traits needs KAFKA_BROKERS: the embedded mode has no log another process can write to (--dry-run checks the file without it)');
    return 2;
  }
  let site: Site | undefined;
  try {
    site = compileSites(await loadSites(values.sites ?? env.INGEST_SITES)).byId(values.site);
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }
  if (!site) {
    console.error(`site "${values.site}" is not in the sites file (${values.sites ?? env.INGEST_SITES ?? 'none set: the demo site only'})`);
    return 2;
  }
  const logger = createLogger('import-traits', env.LOG_LEVEL === 'info' ? 'warn' : env.LOG_LEVEL);
  const log = dryRun ? null : await openLog(env, logger, { clientId: `${env.KAFKA_CLIENT_ID}-import-traits` });
  const started = Date.now();
  try {
    const summary = await importTraits({
      input: createReadStream(positionals[0]!),
      site,
      producer: log?.producer() ?? null,
      every,
      onProgress: (p) => {
        const seconds = Math.max((Date.now() - started) / 1000, 0.001);
        const refused = Object.values(p.refused).reduce((a, b) => a + (b ?? 0), 0);
        process.stderr.write(`${p.rows} rows, ${p.sent} sent, ${refused} refused, ${Math.round(p.rows / seconds)} rows/s\n`);
      },
    });
    console.log(formatSummary(summary, dryRun));
    return 0;
  } catch (err) {
    console.error(err instanceof ImportError ? `${positionals[0]}: ${err.message}` : (err as Error).message);
    return err instanceof ImportError ? 2 : 1;
  } finally {
    await log?.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main(process.argv.slice(2));
}
