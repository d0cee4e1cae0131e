import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/**
 * Snapshot files of the durable embedded mode (`<dir>/<seq>.snap`): a JSON header line, the
 * state's lines as its owner wrote them, and a trailer line with their count. Written to a
 * temporary file, synced, renamed, and the directory synced: a snapshot is there whole or not at
 * all, and the previous one stays until a newer one is. Lines are JSON, so none holds a line break.
 */
const SNAPSHOT = /^(\d{20})\.snap$/;
const name = (seq: number) => `${String(seq).padStart(20, '0')}.snap`;
/** State lines are written in chunks of about this many characters. */
const CHUNK = 1 << 20;

export interface Snapshot<H> {
  seq: number;
  header: H;
  lines: string[];
}

/** The newest snapshot whose trailer checks out, or null when there is none. */
export async function readLatestSnapshot<H>(dir: string): Promise<Snapshot<H> | null> {
  await mkdir(dir, { recursive: true });
  const seqs = (await readdir(dir))
    .flatMap((f) => {
      const m = SNAPSHOT.exec(f);
      return m ? [Number(m[1])] : [];
    })
    .sort((a, b) => b - a);
  for (const seq of seqs) {
    const lines: string[] = [];
    // Line by line: a large state never becomes one string.
    const rl = createInterface({ input: createReadStream(join(dir, name(seq)), { encoding: 'utf8' }), crlfDelay: Infinity });
    for await (const line of rl) lines.push(line);
    const trailer = parse(lines.at(-1)) as { end?: boolean; lines?: number } | null;
    const header = parse(lines[0]) as H | null;
    if (header && trailer?.end === true && trailer.lines === lines.length - 2) return { seq, header, lines: lines.slice(1, -1) };
  }
  return null;
}

function parse(line: string | undefined): unknown {
  try {
    return line === undefined ? null : JSON.parse(line);
  } catch {
    return null;
  }
}

/**
 * Writes snapshot `seq` (header, then `chunks`: state lines already joined with line breaks, each
 * ending with one) and deletes every snapshot older than the one before it.
 */
export async function writeSnapshot(dir: string, seq: number, header: object, chunks: readonly string[], lineCount: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `${name(seq)}.tmp`);
  const file = await open(tmp, 'w');
  try {
    await file.write(`${JSON.stringify(header)}\n`);
    for (const c of chunks) await file.write(c);
    await file.write(`${JSON.stringify({ end: true, lines: lineCount })}\n`);
    await file.datasync();
  } finally {
    await file.close();
  }
  await rename(tmp, join(dir, name(seq)));
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
  for (const f of await readdir(dir)) {
    const m = SNAPSHOT.exec(f) ?? /^(\d{20})\.snap\.tmp$/.exec(f);
    if (m && Number(m[1]) < seq - 1) await unlink(join(dir, f)).catch(() => {});
  }
}

/** Joins state lines into chunks (each line ends with a line break); answers them and the count. */
export function chunkLines(lines: Iterable<string>): { chunks: string[]; count: number } {
  const chunks: string[] = [];
  let current: string[] = [];
  let size = 0;
  let count = 0;
  for (const line of lines) {
    current.push(line);
    size += line.length + 1;
    count++;
    if (size >= CHUNK) {
      chunks.push(`${current.join('\n')}\n`);
      current = [];
      size = 0;
    }
  }
  if (current.length > 0) chunks.push(`${current.join('\n')}\n`);
  return { chunks, count };
}
