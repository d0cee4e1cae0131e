import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { LogMessage } from './log.js';
import type { Logger } from './logger.js';
import { PartitionedLog } from './log-memory.js';
import type { RetentionLimits } from './log-retention.js';
import { SegmentRecords } from './log-segments.js';
import { chunkLines, readLatestSnapshot, writeSnapshot } from './snapshot-file.js';

/**
 * `npm start` with a data directory: the in-process log of lib/log-memory.ts, its records in
 * segment files (lib/log-segments.ts), and snapshots that hold, taken at one instant, the
 * consumer groups' committed offsets and the state of whoever folds the log (the in-memory
 * history store, given by `snapshotWith`). A restart loads the newest snapshot and the groups go on
 * from its offsets: what was folded after it is folded again onto the state it had then, so
 * nothing is lost or counted twice, with the same rules as a Kafka consumer over Redis.
 *
 *   <dir>/LOCK                    the pid of the process using the directory
 *   <dir>/meta.json               the partition count (keys must keep their partition)
 *   <dir>/log/<id>.seg            the records
 *   <dir>/snapshots/<seq>.snap    the newest two snapshots
 *
 * Order of durability: the producer's send resolves once its records are on the disk (ingest
 * answers 202 then); a snapshot is written only after every record its state includes is on the
 * disk; retention drops only records that the newest snapshot has folded (`protect`).
 */
export interface DurableLogOptions {
  dir: string;
  partitions: number;
  logger?: Logger | undefined;
  retention: RetentionLimits;
  /** Groups whose records stay until a snapshot has folded them: the worker's on clicks.raw. */
  protect: readonly { group: string; topic: string }[];
  /** A snapshot this often when anything changed, ms. */
  snapshotIntervalMs: number;
  /** Segment files roll at this size at most (tests use small ones). */
  maxSegmentBytes?: number;
}

interface SnapshotHeader {
  format: 1;
  at: number;
  partitions: number;
  /** group → topic → committed offset per partition. */
  groups: Record<string, Record<string, number[]>>;
  /** [topic, partition, next offset] when the snapshot was taken. */
  ends: [string, number, number][];
}

/** What a restart gives the owner of the state: the lines its snapshot function wrote. */
export interface Restored {
  lines: string[];
  at: number;
}

const META = 'meta.json';

export class DurableLog extends PartitionedLog {
  private readonly segments: SegmentRecords;
  private state: (() => Iterable<string>) | null = null;
  /** The committed offsets in the newest snapshot on disk: retention's floor. */
  private saved = new Map<string, Map<string, number[]>>();
  private seq = 0;
  private snapshotting: Promise<void> | null = null;
  private again = false;
  private lastFingerprint = '';
  private timer: NodeJS.Timeout | undefined;
  private closing = false;

  private constructor(
    private readonly opts: DurableLogOptions,
    segments: SegmentRecords,
  ) {
    super(opts.partitions, { logger: opts.logger, records: segments, protect: opts.protect });
    this.segments = segments;
  }

  /**
   * Opens (or creates) the data directory: takes its lock, reads the segments back, loads the newest
   * snapshot's committed offsets. Answers the log and the state lines to restore before any
   * consumer runs (null when there is no snapshot yet: the groups start from the beginning).
   */
  static async open(opts: DurableLogOptions): Promise<{ log: DurableLog; restored: Restored | null }> {
    mkdirSync(opts.dir, { recursive: true });
    const unlock = lock(opts.dir);
    let segments: SegmentRecords | undefined;
    try {
      checkMeta(opts.dir, opts.partitions);
      segments = SegmentRecords.open(join(opts.dir, 'log'), { limits: opts.retention, logger: opts.logger, maxSegmentBytes: opts.maxSegmentBytes });
      const log = new DurableLog(opts, segments);
      log.unlock = unlock;
      const snap = await readLatestSnapshot<SnapshotHeader>(join(opts.dir, 'snapshots'));
      let restored: Restored | null = null;
      if (snap) {
        log.seq = snap.seq;
        log.restoreGroups(snap.header);
        restored = { lines: snap.lines, at: snap.header.at };
        log.lastFingerprint = log.fingerprint();
      }
      log.lastSnapshotAt = Date.now();
      log.timer = setInterval(() => log.tick(), Math.min(opts.snapshotIntervalMs, 10_000));
      log.timer.unref();
      opts.logger?.info(
        {
          dir: opts.dir,
          kept: segments.size(),
          snapshot: snap ? { seq: snap.seq, at: new Date(snap.header.at).toISOString(), lines: snap.lines.length } : null,
        },
        'opened the embedded log',
      );
      return { log, restored };
    } catch (err) {
      segments?.close();
      unlock();
      throw err;
    }
  }

  private unlock: () => void = () => {};
  private lastSnapshotAt = 0;

  private restoreGroups(header: SnapshotHeader): void {
    for (const [group, topics] of Object.entries(header.groups)) {
      const live = new Map<string, number[]>();
      const saved = new Map<string, number[]>();
      for (const [topic, offsets] of Object.entries(topics)) {
        const clamped = offsets.map((o, p) => {
          const end = this.records.end(topic, p);
          if (o > end)
            this.logger?.error(
              { group, topic, partition: p, snapshot: o, end },
              'the embedded log ends before its snapshot: records are missing from the disk',
            );
          return Math.min(o, end);
        });
        live.set(topic, [...clamped]);
        saved.set(topic, clamped);
      }
      this.groups.set(group, live);
      this.saved.set(group, saved);
    }
  }

  /** What a snapshot saves besides the offsets: lines of JSON, read synchronously at one instant. */
  snapshotWith(state: () => Iterable<string>): void {
    this.state = state;
  }

  /** The producer's send: appended at once, answered once on the disk (one fdatasync per group of concurrent sends). */
  protected override async send(topic: string, messages: LogMessage[]): Promise<void> {
    this.append(topic, messages);
    await this.segments.flush();
  }

  /** Retention's floor: what the newest snapshot has not folded stays. */
  protected override floor(topic: string, partition: number): number | undefined {
    let floor: number | undefined;
    for (const g of this.protect) {
      if (g.topic !== topic) continue;
      const saved = this.saved.get(g.group)?.get(topic)?.[partition] ?? this.records.start(topic, partition);
      const live = this.groups.get(g.group)?.get(topic)?.[partition] ?? saved;
      const at = Math.min(saved, live);
      floor = floor === undefined ? at : Math.min(floor, at);
    }
    return floor;
  }

  protected override trim(now = Date.now()): { dropped: number; blocked: boolean } {
    const r = super.trim(now);
    // Held back by the snapshot rather than by the worker: a newer snapshot lets it go.
    // In a task of its own: the snapshot is taken between two steps of the process, not inside this append.
    if (r.blocked && !this.closing && this.liveAhead()) setImmediate(() => void this.snapshot('retention').catch(() => {}));
    return r;
  }

  /** Whether a protected group has committed past what the newest snapshot holds. */
  private liveAhead(): boolean {
    for (const g of this.protect) {
      const live = this.groups.get(g.group)?.get(g.topic);
      if (!live) continue;
      const saved = this.saved.get(g.group)?.get(g.topic);
      if (live.some((o, p) => o > (saved?.[p] ?? this.records.start(g.topic, p)))) return true;
    }
    return false;
  }

  private tick(): void {
    const now = Date.now();
    if (this.records.over(now)) this.trim(now);
    // A timer may fire a little early: within 100 ms of the interval is on time.
    if (now - this.lastSnapshotAt >= this.opts.snapshotIntervalMs - 100) void this.snapshot('interval').catch(() => {});
  }

  /** Committed offsets and log ends, to tell whether anything changed since the last snapshot. */
  private fingerprint(): string {
    return JSON.stringify([this.groupOffsets(), this.segments.partitionEnds()]);
  }

  private groupOffsets(): SnapshotHeader['groups'] {
    const out: SnapshotHeader['groups'] = {};
    for (const [group, topics] of this.groups) {
      if (this.ephemeralGroups.has(group)) continue;
      out[group] = Object.fromEntries([...topics].map(([t, offsets]) => [t, [...offsets]]));
    }
    return out;
  }

  /**
   * Takes a snapshot now (one already running is waited for, then one more is taken). Skipped
   * when nothing changed since the last one.
   */
  snapshot(reason: string): Promise<void> {
    if (this.snapshotting) {
      this.again = true;
      return this.snapshotting;
    }
    this.snapshotting = this.writeOne(reason).finally(() => {
      this.snapshotting = null;
      if (this.again && !this.closing) {
        this.again = false;
        void this.snapshot(reason).catch(() => {});
      }
    });
    return this.snapshotting;
  }

  private async writeOne(reason: string): Promise<void> {
    this.lastSnapshotAt = Date.now();
    const fingerprint = this.fingerprint();
    if (fingerprint === this.lastFingerprint) return;
    const started = performance.now();
    // One synchronous step: the offsets and the state belong to the same instant.
    const groups = this.groupOffsets();
    const header: SnapshotHeader = { format: 1, at: Date.now(), partitions: this.partitions, groups, ends: this.segments.partitionEnds() };
    const { chunks, count } = chunkLines(this.state?.() ?? []);
    const captureMs = performance.now() - started;
    try {
      // Every record the state has folded is on the disk before the state is.
      await this.segments.flush();
      const seq = this.seq + 1;
      await writeSnapshot(join(this.opts.dir, 'snapshots'), seq, header, chunks, count);
      this.seq = seq;
      this.lastFingerprint = fingerprint;
      this.saved = new Map(Object.entries(groups).map(([g, topics]) => [g, new Map(Object.entries(topics))]));
      this.logger?.debug(
        {
          reason,
          seq,
          lines: count,
          bytes: chunks.reduce((n, c) => n + c.length, 0),
          captureMs: Math.round(captureMs),
          ms: Math.round(performance.now() - started),
        },
        'wrote a snapshot of the embedded mode',
      );
    } catch (err) {
      this.logger?.error(
        { err: (err as Error).message, reason },
        'could not write a snapshot of the embedded mode (the log keeps everything since the last one)',
      );
      throw err;
    }
    if (!this.closing && this.records.over(Date.now())) this.trim();
  }

  /** What the log keeps now and the newest snapshot (for the logs, the soak and the tests). */
  stats(): { kept: { events: number; bytes: number; segments: number }; snapshotSeq: number } {
    return { kept: this.segments.size(), snapshotSeq: this.seq };
  }

  /**
   * Closes without a last snapshot: for a start that failed before the state was restored, whose
   * snapshot would replace the good one with an empty state.
   */
  async abandon(): Promise<void> {
    this.closing = true;
    clearInterval(this.timer);
    await super.close();
    await this.snapshotting?.catch(() => {});
    this.segments.close();
    this.unlock();
  }

  /** Stops the consumers, takes a last snapshot (a clean restart folds nothing again), closes the files. */
  override async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.timer);
    await super.close();
    try {
      while (this.snapshotting) await this.snapshotting.catch(() => {});
      await this.writeOne('close');
    } catch {
      // Logged; the next start folds again from the previous snapshot.
    } finally {
      this.segments.close();
      this.unlock();
    }
  }
}

/**
 * One process per data directory: a second `npm start` on it would interleave appends. The lock
 * names the pid; one left by a process that no longer runs (killed) is taken over.
 */
function lock(dir: string): () => void {
  const path = join(dir, 'LOCK');
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(path, 'utf8') === String(process.pid)) unlinkSync(path);
        } catch {
          // already gone
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
      const pid = Number(readFileSync(path, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
        throw new Error(`the data directory ${dir} is in use by process ${pid} (one process per DATA_DIR; if that process is not clickfold, delete ${path})`);
      }
      unlinkSync(path);
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Keys are routed by partition count: a directory written with another count would scatter people's records. */
function checkMeta(dir: string, partitions: number): void {
  const path = join(dir, META);
  if (existsSync(path)) {
    const meta = JSON.parse(readFileSync(path, 'utf8')) as { partitions: number };
    if (meta.partitions !== partitions) {
      throw new Error(`the data directory ${dir} was written with KAFKA_PARTITIONS=${meta.partitions}; start with that, or with another DATA_DIR`);
    }
    return;
  }
  // Written whole or not at all: a start cut short must not leave a file the next start cannot read.
  writeFileSync(`${path}.tmp`, `${JSON.stringify({ format: 1, partitions })}\n`);
  renameSync(`${path}.tmp`, path);
}
