/**
 * Cross-selling from the histories themselves, pure: when a person buys Y (a dialogue reaches the
 * top stage) having bought X before, the pair X→Y is counted. The topics people who bought X went
 * on to buy are then the suggestions for a buyer of X who has not bought them yet.
 *
 * Memory is bounded per bought topic: its followers are kept with the Space-Saving algorithm
 * (Metwally, Agrawal & El Abbadi, 2005), at most `capacity` counters. The heavy followers are kept
 * exactly enough: a follower bought more often after X than the smallest kept count is never lost,
 * and each count overstates by at most its `error`, which is shown with it. So a site's memory is
 * (bought topics) × capacity counters, whatever the traffic.
 */

export interface Counter {
  count: number;
  /** How much of `count` may come from the counter it replaced (Space-Saving's overestimate). */
  error: number;
}

export type Followers = Map<string, Counter>;

export const DEFAULT_FOLLOWER_CAPACITY = 32;

/** Counts one more purchase of `topic` after the topic these followers belong to. */
export function countFollower(followers: Followers, topic: string, capacity = DEFAULT_FOLLOWER_CAPACITY): void {
  const c = followers.get(topic);
  if (c) {
    c.count++;
    return;
  }
  if (followers.size < capacity) {
    followers.set(topic, { count: 1, error: 0 });
    return;
  }
  // Full: the smallest counter makes room, and its count is the newcomer's possible overestimate.
  let minTopic = '';
  let min: Counter | undefined;
  for (const [t, x] of followers) if (!min || x.count < min.count || (x.count === min.count && t > minTopic)) [minTopic, min] = [t, x];
  followers.delete(minTopic);
  followers.set(topic, { count: min!.count + 1, error: min!.count });
}

/** The pairs a purchase of `bought` adds, given the topics the person had bought before it. */
export function pairsOfPurchase(boughtBefore: Iterable<string>, bought: string): [string, string][] {
  const out: [string, string][] = [];
  for (const x of boughtBefore) if (x !== bought) out.push([x, bought]);
  return out;
}

export interface Suggestion {
  topic: string;
  /** Sum over the person's purchases X of (X→topic count) / (buyers of X): how likely next. */
  score: number;
  /** What the score rests on: per purchase X of the person, how many of X's buyers went on to buy it. */
  support: { after: string; count: number; buyers: number; error: number }[];
}

/**
 * The topics most likely next for a person who bought `bought` (and nothing in `exclude`), best
 * first. `followersOf(x)` and `buyersOf(x)` read what was counted.
 */
export function suggest(
  bought: readonly string[],
  followersOf: (topic: string) => Followers | undefined,
  buyersOf: (topic: string) => number,
  limit: number,
  exclude: ReadonlySet<string> = new Set(bought),
): Suggestion[] {
  const byTopic = new Map<string, Suggestion>();
  for (const x of bought) {
    const followers = followersOf(x);
    const buyers = buyersOf(x);
    if (!followers || buyers <= 0) continue;
    for (const [y, c] of followers) {
      if (exclude.has(y)) continue;
      let s = byTopic.get(y);
      if (!s) byTopic.set(y, (s = { topic: y, score: 0, support: [] }));
      s.score += Math.min(1, c.count / buyers);
      s.support.push({ after: x, count: c.count, buyers, error: c.error });
    }
  }
  return [...byTopic.values()].sort((a, b) => b.score - a.score || (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0)).slice(0, limit);
}

/**
 * How many earlier purchases one purchase is paired with: the most recent ones. A person who
 * bought hundreds of topics adds at most this many increments per purchase, so the fold's cost per
 * purchase is bounded too.
 */
export const MAX_PAIRS_PER_PURCHASE = 16;

/** A topic the person bought (a dialogue at the top stage), and when it first reached that stage. */
export interface Bought {
  topic: string;
  at: number;
}

/** What one topic's counters hold: its purchases and the topics bought after it. */
export interface FollowerCounts {
  /** Purchases of the topic counted (each dialogue reaching the top stage once). */
  buyers: number;
  followers: Followers;
}

/**
 * The pairs one person's batch adds: for each of its purchases (`purchases`, the batch's new
 * transitions to the top stage), the person's other purchases before it (`bought`: the final state).
 * A topic bought in an earlier batch counts whatever its time (it was bought when this one was
 * folded); one bought in the same batch only if strictly earlier, so two purchases of one batch
 * make one pair, not two. At most MAX_PAIRS_PER_PURCHASE per purchase, the most recent.
 */
export function pairsOfBatch(bought: readonly Bought[], purchases: readonly Bought[], cap = MAX_PAIRS_PER_PURCHASE): [string, string][] {
  const inBatch = new Set(purchases.map((p) => p.topic));
  const recentFirst = [...bought].sort((a, b) => b.at - a.at || (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0));
  const out: [string, string][] = [];
  for (const y of purchases) {
    const before = recentFirst.filter((x) => x.topic !== y.topic && (!inBatch.has(x.topic) || x.at < y.at));
    for (const x of before.slice(0, cap)) out.push([x.topic, y.topic]);
  }
  return out;
}

/** The followers most bought after a topic, best first (equal counts: by name). */
export function topFollowers(followers: Followers | undefined, limit: number): { topic: string; count: number; error: number }[] {
  if (!followers) return [];
  return [...followers]
    .map(([topic, c]) => ({ topic, count: c.count, error: c.error }))
    .sort((a, b) => b.count - a.count || (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0))
    .slice(0, limit);
}
