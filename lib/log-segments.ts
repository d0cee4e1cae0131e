import {
  closeSync,
  fdatasync,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { LogUnavailableError, type ConsumedMessage, type LogMessage } from './log.js';
import type { Logger } from './logger.js';
import type { EmbeddedRecords } from './log-memory.js';
import { decodeFrame, encodeHeader, encodeRecords, FRAME_HEADER, MAX_BODY, type FrameHeader, type FrameRecord } from './log-frame.js';
import { partitionKey, SegmentBook, splitKey, type RetentionFloor, type RetentionLimits, type SegmentInfo } from './log-retention.js';

/**
 * The durable embedded log's records: append-only segment files (`<dir>/<id>.seg`, frames of
 * lib/log-frame.ts, every topic and partition in append order), and in memory only where each
 * record is (about 24 bytes per record kept). Retention deletes whole segment files, oldest first.
 *
 * Durability: every append is written to the file at once (a killed process loses nothing the
 * kernel has), and `flush()` resolves once it is on the disk: one fdatasync for every append made
 * while the previous one ran (group commit), so concurrent senders share the cost. A segment is
 * synced before the next one is started, so after a power loss only the newest segment can end in
 * a torn record, which opening cuts off (it was never acknowledged).
 */
const SEGMENT = /^(\d{20})\.seg$/;
const POS = 2 ** 32;
/** The most bytes one read() takes from a file (records of other partitions lie in between). */
const MAX_SPAN = 8 * 1024 * 1024;
const SCAN_CHUNK = 8 * 1024 * 1024;

interface Segment {
  id: number;
  fd: number;
  size: number;
}

/** Where each kept record of one partition is: its segment and position, its size, its append time. */
class PartitionIndex {
  first = 0;
  /** segment id × 2^32 + position in the file. */
  loc: number[] = [];
  size: number[] = [];
  ts: number[] = [];

  get end(): number {
    return this.first + this.loc.length;
  }

  push(segment: number, pos: number, size: number, ts: number): void {
    this.loc.push(segment * POS + pos);
    this.size.push(size);
    this.ts.push(ts);
  }

  /** Forgets every record before `offset`. */
  dropBefore(offset: number): void {
    const n = Math.min(this.loc.length, offset - this.first);
    if (n <= 0) return;
    this.loc.splice(0, n);
    this.size.splice(0, n);
    this.ts.splice(0, n);
    this.first += n;
  }
}

const segmentName = (id: number) => `${String(id).padStart(20, '0')}.seg`;

export class SegmentRecords implements EmbeddedRecords {
  private readonly index = new Map<string, PartitionIndex>();
  private readonly segments = new Map<number, Segment>();
  private readonly book: SegmentBook;
  private active!: Segment;
  private readonly dirFd: number;
  private written = 0;
  private synced = 0;
  private syncing = false;
  private readonly dirty = new Set<number>();
  private waiters: { seq: number; resolve: () => void; reject: (err: Error) => void }[] = [];
  /** Dropped segments whose file descriptor a running fdatasync may still use. */
  private closeLater: number[] = [];
  private closed = false;
  /** Partitions met while opening (a header or a record): where each starts is settled. */
  private readonly known = new Set<string>();

  private constructor(
    private readonly dir: string,
    limits: RetentionLimits,
    private readonly logger: Logger | undefined,
    maxSegmentBytes: number | undefined,
  ) {
    mkdirSync(dir, { recursive: true });
    this.dirFd = openSync(dir, 'r');
    this.book = new SegmentBook(limits, 1, maxSegmentBytes);
  }

  /**
   * Opens the segments of `dir` (creating it), reading every record's place back and cutting off
   * a torn record at the end of the newest segment. A damaged record anywhere else stops the start:
   * the files are left for an operator to look at rather than silently shortened.
   */
  static open(dir: string, opts: { limits: RetentionLimits; logger?: Logger | undefined; maxSegmentBytes?: number }): SegmentRecords {
    const r = new SegmentRecords(dir, opts.limits, opts.logger, opts.maxSegmentBytes);
    r.recover();
    return r;
  }

  private part(topic: string, partition: number): PartitionIndex {
    const key = partitionKey(topic, partition);
    let p = this.index.get(key);
    if (!p) this.index.set(key, (p = new PartitionIndex()));
    return p;
  }

  private recover(): void {
    const ids = readdirSync(this.dir)
      .flatMap((f) => {
        const m = SEGMENT.exec(f);
        return m ? [Number(m[1])] : [];
      })
      .sort((a, b) => a - b);
    for (const [i, id] of ids.entries()) this.scan(id, i === ids.length - 1);
    if (ids.length === 0) this.createSegment(1);
    else this.active = this.segments.get(ids.at(-1)!)!;
  }

  /** Reads one segment back into the index and the book. */
  private scan(id: number, newest: boolean): void {
    const path = join(this.dir, segmentName(id));
    const fd = openSync(path, 'r+');
    const fileSize = fstatSync(fd).size;
    const info: SegmentInfo = { id, events: 0, bytes: 0, firstTs: 0, lastTs: 0, last: new Map() };
    let buf = Buffer.allocUnsafe(SCAN_CHUNK);
    let base = 0; // file position of buf[0]
    let filled = 0;
    let pos = 0; // file position of the next frame
    let sawHeader = false;
    /** Makes the file's bytes [pos, pos + need) readable in buf; false when the file ends before. */
    const ensure = (need: number): boolean => {
      if (pos + need > fileSize) return false;
      if (pos >= base && pos + need <= base + filled) return true;
      if (need > buf.length) buf = Buffer.allocUnsafe(need);
      base = pos;
      filled = readSync(fd, buf, 0, Math.min(buf.length, fileSize - pos), pos);
      return filled >= need;
    };
    const damaged = (why: string) => {
      if (!newest)
        throw new Error(
          `the embedded log's segment ${path} is damaged at byte ${pos} (${why}); move it and the newer segments away to start with the records before it`,
        );
      this.logger?.warn(
        { segment: path, at: pos, discardedBytes: fileSize - pos, why },
        'cutting off a torn record at the end of the embedded log (never acknowledged)',
      );
      ftruncateSync(fd, pos);
    };
    while (pos < fileSize) {
      if (!ensure(FRAME_HEADER)) {
        damaged('short');
        break;
      }
      const len = buf.readUInt32LE(pos - base);
      if (len < 1 || len > MAX_BODY || !ensure(FRAME_HEADER + len)) {
        damaged(len < 1 || len > MAX_BODY ? 'length' : 'short');
        break;
      }
      const d = decodeFrame(buf, pos - base, filled);
      if ('torn' in d) {
        damaged(d.torn);
        break;
      }
      if (!this.take(d.frame, id, pos, d.size, info, sawHeader, damaged)) break;
      sawHeader = true;
      pos += d.size;
    }
    const seg = { id, fd, size: Math.min(pos, fileSize) };
    this.segments.set(id, seg);
    if (!sawHeader) {
      // A segment created just before a crash: start it properly.
      if (!newest) throw new Error(`the embedded log's segment ${path} has no header; move it and the newer segments away`);
      ftruncateSync(fd, 0);
      seg.size = 0;
      this.active = seg;
      this.writeHeader();
    }
    this.book.restore(info);
  }

  /** Indexes one frame read back; false (after `damaged`) when it does not fit the log. */
  private take(
    frame: FrameRecord | FrameHeader,
    id: number,
    pos: number,
    size: number,
    info: SegmentInfo,
    sawHeader: boolean,
    damaged: (why: string) => void,
  ): boolean {
    if (frame.kind === 'header') {
      if (sawHeader) {
        damaged('a second header');
        return false;
      }
      for (const [topic, partition, next] of frame.ends) {
        const key = partitionKey(topic, partition);
        const p = this.part(topic, partition);
        if (!this.known.has(key)) {
          this.known.add(key);
          p.first = next;
        } else if (p.end !== next) {
          throw new Error(`the embedded log's segment ${segmentName(id)} starts ${topic}/${partition} at ${next}, but the segments before it end at ${p.end}`);
        }
      }
      return true;
    }
    if (!sawHeader) {
      damaged('no header');
      return false;
    }
    const key = partitionKey(frame.topic, frame.partition);
    const p = this.part(frame.topic, frame.partition);
    // A topic that began after this segment's header: its first record says where it starts.
    if (!this.known.has(key)) {
      this.known.add(key);
      p.first = frame.offset;
    }
    if (frame.offset !== p.end) {
      damaged(`${frame.topic}/${frame.partition} offset ${frame.offset} where ${p.end} was next`);
      return false;
    }
    p.push(id, pos, size, frame.timestamp);
    if (info.events === 0) info.firstTs = frame.timestamp;
    info.events++;
    info.bytes += size;
    info.lastTs = frame.timestamp;
    info.last.set(key, frame.offset);
    return true;
  }

  private createSegment(id: number): void {
    const fd = openSync(join(this.dir, segmentName(id)), 'wx+');
    // The new file's name must survive a power loss as much as its records.
    fsyncSync(this.dirFd);
    this.active = { id, fd, size: 0 };
    this.segments.set(id, this.active);
    this.writeHeader();
  }

  private writeHeader(): void {
    const ends: FrameHeader['ends'] = [];
    for (const [key, p] of this.index) {
      const { topic, partition } = splitKey(key);
      ends.push([topic, partition, p.end]);
    }
    const buf = encodeHeader(ends);
    writeSync(this.active.fd, buf, 0, buf.length, this.active.size);
    this.active.size += buf.length;
    this.dirty.add(this.active.fd);
  }

  /** Closes the active segment (synced first, so that only the newest can hold a torn record) and starts the next. */
  private roll(): void {
    const old = this.active;
    // Nothing past its last record (a write that failed half way) may stay in a segment that is no longer the newest.
    ftruncateSync(old.fd, old.size);
    fdatasyncSync(old.fd);
    this.dirty.delete(old.fd);
    this.book.startSegment(old.id + 1);
    this.createSegment(old.id + 1);
  }

  append(topic: string, parts: ReadonlyMap<number, readonly LogMessage[]>, timestamp: number): void {
    if (this.closed) throw new LogUnavailableError('the embedded log is closed');
    if (this.book.shouldRoll(timestamp)) this.roll();
    const bufs: Buffer[] = [];
    const placed: { partition: number; p: PartitionIndex; sizes: number[] }[] = [];
    for (const [partition, messages] of parts) {
      if (messages.length === 0) continue;
      const p = this.part(topic, partition);
      const { buf, sizes } = encodeRecords(topic, partition, p.end, timestamp, messages);
      bufs.push(buf);
      placed.push({ partition, p, sizes });
    }
    const all = bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs);
    const at = this.active.size;
    try {
      let done = 0;
      while (done < all.length) done += writeSync(this.active.fd, all, done, all.length - done, at + done);
    } catch (err) {
      // A disk that is full or failing: nothing of this append may stay, or the next append would follow a torn record.
      try {
        ftruncateSync(this.active.fd, at);
      } catch {
        // the truncate failing too leaves a torn tail, which the next start cuts off
      }
      throw new LogUnavailableError(`the embedded log could not write to disk: ${(err as Error).message}`, { cause: err });
    }
    // Indexed once written: a reader never meets a record that is not in the file.
    let pos = at;
    for (const { partition, p, sizes } of placed) {
      for (const size of sizes) {
        this.book.add(topic, partition, p.end, size, timestamp);
        p.push(this.active.id, pos, size, timestamp);
        pos += size;
      }
    }
    this.active.size += all.length;
    this.dirty.add(this.active.fd);
    this.written++;
  }

  /** Resolves once everything appended so far is on the disk (see the class comment). */
  flush(): Promise<void> {
    if (this.synced >= this.written && this.dirty.size === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.push({ seq: this.written, resolve, reject });
      this.syncRound();
    });
  }

  private syncRound(): void {
    if (this.syncing || this.waiters.length === 0) return;
    this.syncing = true;
    const seq = this.written;
    const fds = [...this.dirty];
    this.dirty.clear();
    Promise.all(fds.map((fd) => new Promise<void>((res, rej) => fdatasync(fd, (err) => (err ? rej(err) : res())))))
      .then(
        () => {
          this.synced = Math.max(this.synced, seq);
          this.settle(seq, null);
        },
        (err: Error) => {
          // The kernel may have dropped what it could not write: the appends are not acknowledged (senders retry).
          this.logger?.error({ err: err.message }, 'the embedded log could not be synced to disk');
          for (const fd of fds) this.dirty.add(fd);
          this.settle(seq, new LogUnavailableError(`the embedded log could not be synced to disk: ${err.message}`, { cause: err }));
        },
      )
      .finally(() => {
        this.syncing = false;
        for (const fd of this.closeLater.splice(0)) closeSync(fd);
        this.syncRound();
      });
  }

  private settle(seq: number, err: Error | null): void {
    const due = this.waiters.filter((w) => w.seq <= seq);
    this.waiters = this.waiters.filter((w) => w.seq > seq);
    for (const w of due) err ? w.reject(err) : w.resolve();
  }

  start(topic: string, partition: number): number {
    return this.index.get(partitionKey(topic, partition))?.first ?? 0;
  }

  end(topic: string, partition: number): number {
    return this.index.get(partitionKey(topic, partition))?.end ?? 0;
  }

  /** Every partition the log has (for snapshots and tests). */
  partitionEnds(): [string, number, number][] {
    return [...this.index].map(([key, p]) => {
      const { topic, partition } = splitKey(key);
      return [topic, partition, p.end];
    });
  }

  read(topic: string, partition: number, from: number, max: number): ConsumedMessage[] {
    const p = this.index.get(partitionKey(topic, partition));
    if (!p) return [];
    const out: ConsumedMessage[] = [];
    let i = Math.max(0, from - p.first);
    const last = Math.min(p.loc.length, i + Math.min(max, p.loc.length));
    while (i < last) {
      // One read for a run of records in the same segment, as long as the span stays small.
      const segId = Math.floor(p.loc[i]! / POS);
      const startPos = p.loc[i]! % POS;
      let j = i;
      while (j + 1 < last && Math.floor(p.loc[j + 1]! / POS) === segId && (p.loc[j + 1]! % POS) + p.size[j + 1]! - startPos <= MAX_SPAN) j++;
      const endPos = (p.loc[j]! % POS) + p.size[j]!;
      const seg = this.segments.get(segId)!;
      const buf = Buffer.allocUnsafe(endPos - startPos);
      readSync(seg.fd, buf, 0, buf.length, startPos);
      for (let k = i; k <= j; k++) {
        // Written by this process or checked when the log was opened: no CRC on the way back.
        const d = decodeFrame(buf, (p.loc[k]! % POS) - startPos, buf.length, false);
        if ('torn' in d || d.frame.kind !== 'record') throw new Error(`the embedded log cannot read ${topic}/${partition} offset ${p.first + k}`);
        out.push({ offset: String(d.frame.offset), key: d.frame.key, value: d.frame.value, timestamp: d.frame.timestamp });
      }
      i = j + 1;
    }
    return out;
  }

  seek(topic: string, partition: number, timestamp: number): number {
    const p = this.index.get(partitionKey(topic, partition));
    if (!p) return 0;
    let lo = 0;
    let hi = p.ts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (p.ts[mid]! < timestamp) lo = mid + 1;
      else hi = mid;
    }
    return p.first + lo;
  }

  over(now: number): boolean {
    return this.book.over(now) || (this.book.limits.maxAgeMs < Infinity && this.book.shouldRoll(now));
  }

  trim(floor: RetentionFloor, now: number): { dropped: number; blocked: boolean } {
    if (this.closed) return { dropped: 0, blocked: false };
    if (this.book.shouldRoll(now)) this.roll();
    const { dropped, blocked } = this.book.takeDroppable(floor, now);
    let n = 0;
    for (const s of dropped) {
      n += s.events;
      for (const [key, last] of s.last) this.index.get(key)?.dropBefore(last + 1);
      const seg = this.segments.get(s.id)!;
      this.segments.delete(s.id);
      unlinkSync(join(this.dir, segmentName(s.id)));
      this.dirty.delete(seg.fd);
      if (this.syncing) this.closeLater.push(seg.fd);
      else closeSync(seg.fd);
    }
    return { dropped: n, blocked };
  }

  size(): { events: number; bytes: number; segments: number } {
    return { events: this.book.events, bytes: this.book.bytes, segments: this.book.segments.length };
  }

  /** Syncs what is left and closes every file. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fd of this.dirty) fdatasyncSync(fd);
    this.dirty.clear();
    this.synced = this.written;
    this.settle(this.written, null);
    for (const seg of this.segments.values()) closeSync(seg.fd);
    for (const fd of this.closeLater.splice(0)) closeSync(fd);
    closeSync(this.dirFd);
  }
}
