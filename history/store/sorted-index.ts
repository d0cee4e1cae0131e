/**
 * A sorted set for the in-memory store (Redis: a sorted set): members with a score, kept in the
 * needs order (higher score first, equal scores by the larger member, as ZREVRANGE), with the reads
 * the store needs in O(log n + what is read): a member's score, counts above a floor, and the members
 * after a position. Chunked sorted arrays (at most CHUNK members each) rather than one array: an
 * insert moves at most a chunk, so folding a million people into one topic stays linear-ish.
 */
const CHUNK = 512;

/** Whether (sa, ma) comes before (sb, mb) in the index order. */
const before = (sa: number, ma: string, sb: number, mb: string) => sa > sb || (sa === sb && ma > mb);

interface Chunk {
  scores: number[];
  members: string[];
}

export class SortedIndex {
  private readonly byMember = new Map<string, number>();
  private chunks: Chunk[] = [];

  get size(): number {
    return this.byMember.size;
  }

  score(member: string): number | undefined {
    return this.byMember.get(member);
  }

  entries(): IterableIterator<[string, number]> {
    return this.byMember.entries();
  }

  [Symbol.iterator](): IterableIterator<[string, number]> {
    return this.byMember.entries();
  }

  set(member: string, score: number): void {
    const old = this.byMember.get(member);
    if (old === score) return;
    if (old !== undefined) this.removeAt(old, member);
    this.byMember.set(member, score);
    if (this.chunks.length === 0) {
      this.chunks.push({ scores: [score], members: [member] });
      return;
    }
    const ci = this.chunkFor(score, member);
    const c = this.chunks[ci]!;
    const i = this.indexIn(c, score, member);
    c.scores.splice(i, 0, score);
    c.members.splice(i, 0, member);
    if (c.scores.length > CHUNK) {
      const half = c.scores.length >> 1;
      this.chunks.splice(ci + 1, 0, { scores: c.scores.splice(half), members: c.members.splice(half) });
    }
  }

  delete(member: string): boolean {
    const old = this.byMember.get(member);
    if (old === undefined) return false;
    this.byMember.delete(member);
    this.removeAt(old, member);
    return true;
  }

  /** Members with a score at or above `min`. */
  countFrom(min: number): number {
    let n = 0;
    for (const c of this.chunks) {
      if (c.scores[c.scores.length - 1]! >= min) {
        n += c.scores.length;
        continue;
      }
      for (const s of c.scores) if (s >= min) n++;
      break;
    }
    return n;
  }

  /**
   * Members in index order, starting after (score, member) (from the top without), while their score
   * is at or above `min`.
   */
  *from(after: { score: number; person: string } | undefined, min = -Infinity): Generator<{ person: string; score: number }> {
    let ci = 0;
    let i = 0;
    if (after) {
      ci = this.chunkFor(after.score, after.person);
      const c = this.chunks[ci];
      if (!c) return;
      i = this.indexIn(c, after.score, after.person);
      if (c.members[i] === after.person && c.scores[i] === after.score) i++;
    }
    for (; ci < this.chunks.length; ci++, i = 0) {
      const c = this.chunks[ci]!;
      for (; i < c.scores.length; i++) {
        if (c.scores[i]! < min) return;
        yield { person: c.members[i]!, score: c.scores[i]! };
      }
    }
  }

  /** The chunk a (score, member) belongs in: the first whose last member does not come before it. */
  private chunkFor(score: number, member: string): number {
    let lo = 0;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const c = this.chunks[mid]!;
      const last = c.scores.length - 1;
      if (before(c.scores[last]!, c.members[last]!, score, member)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The first position in `c` whose member does not come before (score, member). */
  private indexIn(c: Chunk, score: number, member: string): number {
    let lo = 0;
    let hi = c.scores.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (before(c.scores[mid]!, c.members[mid]!, score, member)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private removeAt(score: number, member: string): void {
    const ci = this.chunkFor(score, member);
    const c = this.chunks[ci];
    if (!c) return;
    const i = this.indexIn(c, score, member);
    if (c.members[i] !== member) return;
    c.scores.splice(i, 1);
    c.members.splice(i, 1);
    if (c.scores.length === 0) this.chunks.splice(ci, 1);
  }
}
