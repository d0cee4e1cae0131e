import type { Cluster, Redis } from 'ioredis';

/** Every key of a namespace, on one Redis or on every master of a cluster. */
export async function keysOf(redis: Redis | Cluster, pattern: string): Promise<string[]> {
  if (!redis.isCluster) return (redis as Redis).keys(pattern);
  return (await Promise.all((redis as Cluster).nodes('master').map((n) => n.keys(pattern)))).flat();
}

/**
 * Every person a store namespace holds anywhere: in a person's own keys (`h:{p}`, `r:{p}`, ...)
 * or as a member of any stage index, open needs listing, stalled set, audience or the sweeper's queue. For tests that check erase leaves nothing behind.
 */
export async function inspectNamespace(redis: Redis | Cluster, ns: string): Promise<{ people: string[]; indexed: string[]; erased: string[] }> {
  const all = await keysOf(redis, `${ns}*`);
  const idOf = (k: string) => k.slice(ns.length + 3, -1);
  // Tombstones (`e:{id}`) are what an erase leaves on purpose: listed apart.
  const personal = all.filter((k) => /^.{2}\{/.test(k.slice(ns.length)) && !k.startsWith(`${ns}ix:`) && !k.startsWith(`${ns}nq:`) && !k.startsWith(`${ns}e:{`));
  const people = [...new Set(personal.map(idOf))];
  const erased = all.filter((k) => k.startsWith(`${ns}e:{`)).map(idOf);
  const indexed = new Set<string>();
  // Stage indexes, the moves kept by open needs listings (`nq:{topic}:id`), stalled sets, audience
  // members and the sweeper's queue.
  const sets = (k: string) => ['ix:', 'nq:', 'sl:', 'am:'].some((p) => k.startsWith(`${ns}${p}`)) || k === `${ns}due`;
  for (const k of all.filter(sets)) for (const m of await redis.zrange(k, 0, -1)) indexed.add(m);
  return { people: people.sort(), indexed: [...indexed].sort(), erased: erased.sort() };
}

export async function deleteNamespace(redis: Redis | Cluster, ns: string): Promise<void> {
  for (const k of await keysOf(redis, `${ns}*`)) await redis.del(k);
}
