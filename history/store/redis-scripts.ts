import { AUDIENCE_PREFIX, DIALOGUE_PREFIX, F, OUTBOX_PREFIX } from '../fold/codec.js';
import { LUA_HOURS } from './hour-counts.js';
import { CROSS_SELL_BUYERS } from './store.js';

/**
 * The Lua scripts of the Redis store, written against the field table of codec.ts (never a field
 * letter of their own). Each touches one person's keys (or one set), so every script runs on Redis
 * Cluster: the keys share the person's hash tag.
 */

/**
 * Lua's unpack() fails past about 8,000 values (LUAI_MAXCSTACK), so every variadic call in a script
 * goes in slices of this many values: a merge of any size stays one atomic script call.
 */
export const LUA_SLICE = 1000;

const lua = (s: string) => `'${s}'`;

/** Lua: whether the tombstone in KEYS[k] is still the one the caller read (ARGV[a], 0 for none). */
const sameTombstone = (k: number, a: number) => `tonumber(redis.call('GET', KEYS[${k}]) or '0') == tonumber(ARGV[${a}])`;

/**
 * Compare-and-set on the person's version and tombstone: the write lands only if nobody else (a
 * zombie worker after a rebalance) wrote since we read, and nobody erased the person since (an erase
 * deletes the hash and writes the tombstone: without comparing it, a person who had no hash when we
 * read would be written back).
 * KEYS: 1 history hash, 2 fingerprints, 3 linked ids, 4 outbox hash (field = partition), 5 tombstone.
 * ARGV: expected version, expected tombstone, fingerprint TTL, partition, n, then n fields to delete,
 * then field/value pairs (an empty outbox value removes the partition's outbox).
 * The fingerprints, the linked ids and the outbox go to their own keys: a hash that once held a
 * long value stays a (much larger) hashtable, so they must never enter the history hash.
 */
export const WRITE_IF_VERSION = `
local v = redis.call('HGET', KEYS[1], ${lua(F.version)})
if (v or '0') ~= ARGV[1] then return 0 end
if not (${sameTombstone(5, 2)}) then return 0 end
local ndel = tonumber(ARGV[5])
for i = 6, 5 + ndel, ${LUA_SLICE} do
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, math.min(i + ${LUA_SLICE} - 1, 5 + ndel)))
end
local fields = {}
local function flush()
  if #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end
  fields = {}
end
for i = 6 + ndel, #ARGV, 2 do
  local f = ARGV[i]
  if f == ${lua(F.seen)} then
    redis.call('SET', KEYS[2], ARGV[i + 1], 'EX', ARGV[3])
  elseif f == ${lua(F.linked)} then
    redis.call('SET', KEYS[3], ARGV[i + 1])
  elseif string.sub(f, 1, ${OUTBOX_PREFIX.length}) == ${lua(OUTBOX_PREFIX)} then
    if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[4], ARGV[4]) else redis.call('HSET', KEYS[4], ARGV[4], ARGV[i + 1]) end
  else
    fields[#fields + 1] = f
    fields[#fields + 1] = ARGV[i + 1]
    if #fields >= ${LUA_SLICE} then flush() end
  end
end
flush()
return 1
`;

/**
 * Admits members into a capped set: a member already there, or a new one while the set has fewer
 * than ARGV[1] members. KEYS: the set. ARGV: cap, members. Returns 1/0 per member.
 */
export const ADMIT = `
local cap = tonumber(ARGV[1])
local n = redis.call('SCARD', KEYS[1])
local out = {}
for i = 2, #ARGV do
  if redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 1 then
    out[#out + 1] = 1
  elseif n < cap then
    redis.call('SADD', KEYS[1], ARGV[i])
    n = n + 1
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
`;

/**
 * Points a visitor at its person if its version is still ARGV[2] and its tombstone ARGV[3]; bumps the
 * version. KEYS: the visitor's hash, its tombstone.
 */
export const MARK = `
if (redis.call('HGET', KEYS[1], ${lua(F.version)}) or '0') ~= ARGV[2] then return 0 end
if not (${sameTombstone(2, 3)}) then return 0 end
redis.call('HSET', KEYS[1], ${lua(F.alias)}, ARGV[1], ${lua(F.version)}, tostring(tonumber(ARGV[2]) + 1))
return 1
`;

/**
 * Leaves a merged visitor as a pointer to its person (keeping offsets and version), history removed;
 * nothing when the visitor was erased since the merge read it (its tombstone is not ARGV[2]).
 * KEYS: the visitor's hash, fingerprints, linked ids, tombstone. ARGV: the person, expected tombstone.
 */
export const SEAL = `
if not (${sameTombstone(4, 2)}) then return 0 end
local o = redis.call('HGET', KEYS[1], ${lua(F.offsets)})
local v = redis.call('HGET', KEYS[1], ${lua(F.version)}) or '1'
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if o then redis.call('HSET', KEYS[1], ${lua(F.offsets)}, o) end
redis.call('HSET', KEYS[1], ${lua(F.alias)}, ARGV[1], ${lua(F.version)}, v)
return 1
`;

/** Deletes a partition's outbox if it still holds what was written. KEYS: outbox hash. ARGV: partition, the value written. */
export const CLEAR_OUTBOX = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
`;

/**
 * Erases one id as of ARGV[1] (epoch ms). Writes the tombstone first (a later one stays), then reads
 * what the id's keys name and deletes them, in one step: from here on no write planned before can land
 * (they compare the tombstone), and the caller learns which indexes and ids to clean next.
 * ARGV[3] '1': an erase asked for now (always done). '0': an erasure on record being applied, done
 * only when the tombstone is older than it: one at or after it means the erasure was applied already,
 * and a history begun since must stay.
 * KEYS: history hash, fingerprints, linked ids, outbox, tombstone. ARGV: the time, tombstone TTL (s), mode.
 * Returns {0} when nothing was done, else {1, held (1/0), alias or '', linked ids (comma-separated)
 * or '', the audiences it is in (comma-separated) or '', topic...}.
 */
export const ERASE_ID = `
local at = tonumber(ARGV[1])
local t = tonumber(redis.call('GET', KEYS[5]) or '0')
if ARGV[3] ~= '1' and t >= at then return {0} end
if at > t then redis.call('SET', KEYS[5], ARGV[1], 'EX', ARGV[2]) end
local held = redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3], KEYS[4]) > 0 and 1 or 0
local out = {1, held, redis.call('HGET', KEYS[1], ${lua(F.alias)}) or '', redis.call('GET', KEYS[3]) or '', ''}
local audiences = {}
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, ${DIALOGUE_PREFIX.length}) == ${lua(DIALOGUE_PREFIX)} then out[#out + 1] = string.sub(f, ${DIALOGUE_PREFIX.length + 1})
  elseif string.sub(f, 1, ${AUDIENCE_PREFIX.length}) == ${lua(AUDIENCE_PREFIX)} then audiences[#audiences + 1] = string.sub(f, ${AUDIENCE_PREFIX.length + 1}) end
end
out[5] = table.concat(audiences, ',')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return out
`;

/**
 * Takes an erased id out of one topic's stage indexes and open needs listings, in the topic's slot:
 * leaves the erase marker (so an index update planned before the erase, arriving after it, removes
 * instead of adding) and removes the id from every stage index (and its hour from that stage's
 * counters, hour-counts.ts) and from the moves every open listing kept.
 * KEYS: the marker, the ladder's stage indexes, the topic's hour counters, its listings. ARGV: the
 * id, the erase time, marker TTL (s), the prefix of the listings' moves keys (same slot: the topic's
 * hash tag).
 */
export const ERASE_FROM_TOPIC = `${LUA_HOURS}
local m = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[2]) > m then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
local n = #KEYS - 3
for i = 2, n + 1 do
  local s = redis.call('ZSCORE', KEYS[i], ARGV[1])
  if s then
    redis.call('ZREM', KEYS[i], ARGV[1])
    uncount(KEYS[n + 2], hourField(hourOfScore(s), i - 2, n))
  end
end
for _, spec in ipairs(redis.call('ZRANGE', KEYS[#KEYS], 0, -1)) do
  redis.call('ZREM', ARGV[4] .. string.match(spec, '^[^.]+'), ARGV[1])
end
return 1
`;

/**
 * One person's entry in one topic's stage indexes: in the index of ARGV[2] (-1: none) with the score
 * ARGV[3] (the needs ranking, rank-key.ts), out of the others. An erase marker newer than the
 * tombstone the write saw (ARGV[4]) means the person was erased after the write: the entry is removed
 * instead, so no index ever holds an erased id for longer than this step.
 * In the same step, the topic's hour counters (hour-counts.ts): when the stage or the hour of the last
 * activity changes, the old stage and hour lose the person and the new ones gain them, so a
 * windowed count is a sum of counters that always agrees with the indexes.
 * When the entry changes and the topic has open needs listings (`id.from.to`, scored by expiry), each
 * listing whose stages [from, to) held the person, or now hold them, keeps the first score it saw
 * (+inf: they were not in it) in its moves key, in the same step: a listing being paged through keeps
 * everyone at the place they had when it opened (NEEDS_PAGE).
 * KEYS: the marker, the ladder's stage indexes in order, the topic's hour counters, its listings.
 * ARGV: person, stage, score, the tombstone the write saw (0: none), the moves keys' prefix.
 */
export const INDEX = `${LUA_HOURS}
local stage = tonumber(ARGV[2])
if stage >= 0 and tonumber(redis.call('GET', KEYS[1]) or '0') > tonumber(ARGV[4]) then stage = -1 end
local n = #KEYS - 3
local oldStage, oldScore = -1, false
for i = 2, n + 1 do
  local s = redis.call('ZSCORE', KEYS[i], ARGV[1])
  if s then oldStage, oldScore = i - 2, s end
  if i - 2 == stage then redis.call('ZADD', KEYS[i], ARGV[3], ARGV[1]) elseif s then redis.call('ZREM', KEYS[i], ARGV[1]) end
end
if oldStage == stage and (stage < 0 or tonumber(oldScore) == tonumber(ARGV[3])) then return stage end
local oldField = oldStage >= 0 and hourField(hourOfScore(oldScore), oldStage, n) or false
local newField = stage >= 0 and hourField(hourOfScore(ARGV[3]), stage, n) or false
if oldField ~= newField then
  if oldField then uncount(KEYS[n + 2], oldField) end
  if newField then redis.call('HINCRBY', KEYS[n + 2], newField, 1) end
end
local open = redis.call('ZRANGE', KEYS[#KEYS], 0, -1, 'WITHSCORES')
for j = 1, #open, 2 do
  local id, from, to = string.match(open[j], '^([^.]+)%.(%d+)%.(%d+)$')
  from, to = tonumber(from), tonumber(to)
  local was = oldStage >= from and oldStage < to
  if was or (stage >= from and stage < to) then
    local key = ARGV[5] .. id
    if redis.call('ZADD', key, 'NX', was and oldScore or '+inf', ARGV[1]) == 1 then redis.call('PEXPIREAT', key, open[j + 1]) end
  end
end
return stage
`;

/**
 * A page of a topic's needs ranking (HistoryStore.needsPage), in the topic's slot. Answers, per source,
 * a flat list member, score, …, each in index order; the caller merges them (byte order of ids, which
 * Lua's locale-dependent string comparison would not give).
 * ARGV[5] 'first': the top `limit` of each stage index [from, to) scoring at least `min`, and the
 * count of all of them; when more follow, opens the listing ARGV[6] (`id.from.to`) until ARGV[7]
 * (epoch ms), closing expired ones and, past ARGV[11] open, the oldest.
 * 'next': the listing must be open (else {-1}); from each stage index, the entries after the cursor
 * (score ARGV[9]: the whole group of that score, which the caller cuts at the cursor's id, then below
 * it) that have not moved since the listing opened; and from its moves, those that were in it, at
 * the score they had then. Every read is a range of a sorted set: O(log n + page) at any depth.
 * KEYS: the topic's listings, the listing's moves, the ladder's stage indexes.
 * ARGV: from, to, min, limit, mode, listing, expires at, now (ms), cursor score, -, max open, moves prefix.
 * Returns {total or -1, opened (1/0), source…}.
 */
export const NEEDS_PAGE = `
local from, to, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local out = {0, 0}
if ARGV[5] == 'first' then
  local total = 0
  for s = from, to - 1 do
    total = total + redis.call('ZCOUNT', KEYS[3 + s], ARGV[3], '+inf')
    out[#out + 1] = redis.call('ZREVRANGEBYSCORE', KEYS[3 + s], '+inf', ARGV[3], 'WITHSCORES', 'LIMIT', 0, limit)
  end
  out[1] = total
  if total > limit then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[8])
    local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[11]) + 1
    if extra > 0 then
      local old = redis.call('ZRANGE', KEYS[1], 0, extra - 1)
      for _, spec in ipairs(old) do
        redis.call('DEL', ARGV[12] .. string.match(spec, '^[^.]+'))
        redis.call('ZREM', KEYS[1], spec)
      end
    end
    -- Expiry times are kept distinct (a millisecond later at most per listing) so that the order of
    -- the set is the order of opening, and the oldest is the one closed.
    local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
    local expires = math.max(tonumber(ARGV[7]), newest[2] and tonumber(newest[2]) + 1 or 0)
    redis.call('ZADD', KEYS[1], expires, ARGV[6])
    redis.call('PEXPIREAT', KEYS[1], expires)
    out[2] = 1
  end
  return out
end
local e = redis.call('ZSCORE', KEYS[1], ARGV[6])
if not e or tonumber(e) <= tonumber(ARGV[8]) then return {-1} end
local at = ARGV[9]
local function unmoved(k)
  local got = {}
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', k, at, at)) do
    if not redis.call('ZSCORE', KEYS[2], m) then got[#got + 1] = m; got[#got + 1] = at end
  end
  local offset, kept = 0, 0
  while kept < limit do
    local r = redis.call('ZREVRANGEBYSCORE', k, '(' .. at, ARGV[3], 'WITHSCORES', 'LIMIT', offset, limit)
    for j = 1, #r, 2 do
      if not redis.call('ZSCORE', KEYS[2], r[j]) then got[#got + 1] = r[j]; got[#got + 1] = r[j + 1]; kept = kept + 1 end
    end
    if #r < 2 * limit then break end
    offset = offset + limit
  end
  return got
end
for s = from, to - 1 do out[#out + 1] = unmoved(KEYS[3 + s]) end
local moved = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], at, at)) do moved[#moved + 1] = m; moved[#moved + 1] = at end
for _, v in ipairs(redis.call('ZREVRANGEBYSCORE', KEYS[2], '(' .. at, ARGV[3], 'WITHSCORES', 'LIMIT', 0, limit)) do moved[#moved + 1] = v end
out[#out + 1] = moved
return out
`;

/**
 * A topic's people per stage whose last activity lies in hours [ARGV[1], ARGV[2]] ('': open), summed
 * from the topic's hour counters (hour-counts.ts: fields hour · stages + stage) in its slot: one
 * number per stage comes back, not every counter. At most 24 counters a day of history per stage.
 * KEYS: the topic's hour counters. ARGV: from, to, the number of stages. Returns the sums, in order.
 */
export const HOURS_SUM = `
local lo, hi, stages = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for s = 1, stages do out[s] = 0 end
local flat = redis.call('HGETALL', KEYS[1])
for j = 1, #flat, 2 do
  local f = tonumber(flat[j])
  local h = math.floor(f / stages)
  if (not lo or h >= lo) and (not hi or h <= hi) then
    local s = f - h * stages + 1
    out[s] = out[s] + tonumber(flat[j + 1])
  end
end
return out
`;

/**
 * One person's entries in one topic's stalled sets (`sl:{topic}:rule`), in the topic's slot: each
 * key gets the person at the given time, or loses them ('' ). An erase marker newer than the
 * tombstone the write saw removes them from every key instead (as INDEX does for the stage indexes).
 * KEYS: the erase marker, the stalled sets. ARGV: person, the tombstone the write saw, then one time or '' per set.
 */
export const STALLED = `
local gone = tonumber(redis.call('GET', KEYS[1]) or '0') > tonumber(ARGV[2])
for i = 2, #KEYS do
  local at = ARGV[i + 1]
  if gone or at == '' then redis.call('ZREM', KEYS[i], ARGV[1]) else redis.call('ZADD', KEYS[i], at, ARGV[1]) end
end
return 1
`;

/** Takes entries out of the sweeper's queue that still hold the time read. KEYS: the queue. ARGV: person, time, person, time... */
export const CLEAR_DUE = `
for i = 1, #ARGV, 2 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) == tonumber(ARGV[i + 1]) then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return 1
`;

/** Takes or renews a lease. KEYS: the lease. ARGV: owner, ms. Returns 1 when the owner holds it. */
export const LEASE = `
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`;

/**
 * Adds to one topic's trend counters at one granularity (history/crm/trends.ts; key layout:
 * store.ts `keys.trend`) and prunes what fell out of the retention, in the topic's slot. Field `p`
 * holds the oldest bucket kept: when it moves on, the buckets it passed are deleted one by one (a
 * bucket a transition or two, as time goes by), or, after a quiet spell longer than the retention,
 * by one look at every field. An increment to a bucket older than `p` (a worker with a later clock
 * pruned it already) is dropped, so a pruned bucket never comes back.
 * KEYS: the counters. ARGV: the oldest bucket kept now, how many buckets are kept, the number of
 * stages, then bucket, stage (0-based), increment for each increment. Values: counts in ladder order, comma-separated.
 */
export const TREND = `
local oldest, span, stages = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local kept = tonumber(redis.call('HGET', KEYS[1], 'p') or '')
if not kept or kept < oldest then
  if kept and oldest - kept > span then
    for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
      if f ~= 'p' and tonumber(f) < oldest then redis.call('HDEL', KEYS[1], f) end
    end
  elseif kept then
    for b = kept, oldest - 1 do redis.call('HDEL', KEYS[1], string.format('%d', b)) end
  end
  kept = oldest
  redis.call('HSET', KEYS[1], 'p', string.format('%d', kept))
end
for i = 4, #ARGV, 3 do
  if tonumber(ARGV[i]) >= kept then
    local counts = {}
    for s = 1, stages do counts[s] = 0 end
    local cur = redis.call('HGET', KEYS[1], ARGV[i])
    if cur then
      local s = 1
      for n in string.gmatch(cur, '[^,]+') do
        if s <= stages then counts[s] = tonumber(n) end
        s = s + 1
      end
    end
    local s = tonumber(ARGV[i + 1]) + 1
    counts[s] = counts[s] + tonumber(ARGV[i + 2])
    for j = 1, stages do counts[j] = string.format('%d', counts[j]) end
    redis.call('HSET', KEYS[1], ARGV[i], table.concat(counts, ','))
  end
end
return 1
`;

/**
 * Takes every transition of the given ids out of the latest transitions' list (an erase, or a
 * trend step that finds its person erased since the write). KEYS: the list. ARGV: ids. Returns how many went.
 */
export const FORGET_RECENT = `
local gone = {}
for i = 1, #ARGV do gone[ARGV[i]] = true end
local list = redis.call('LRANGE', KEYS[1], 0, -1)
local keep = {}
for _, v in ipairs(list) do
  local ok, t = pcall(cjson.decode, v)
  if not (ok and type(t) == 'table' and gone[t.person]) then keep[#keep + 1] = v end
end
if #keep < #list then
  redis.call('DEL', KEYS[1])
  for i = 1, #keep, ${LUA_SLICE} do redis.call('RPUSH', KEYS[1], unpack(keep, i, math.min(i + ${LUA_SLICE} - 1, #keep))) end
end
return #list - #keep
`;

/**
 * Adds one batch's purchases to one topic's cross-selling counters (history/crm/cross-sell.ts
 * countFollower, the same Space-Saving; key layout: store.ts `keys.crossSell`), in the topic's slot,
 * so the counters stay within the capacity whatever workers add at once. Field CROSS_SELL_BUYERS counts the
 * topic's purchases; every other field is a topic bought after it: `count`, or `count,error` once
 * it took the place of another (the smallest count goes, equal counts: the greatest name).
 * KEYS: the counters. ARGV: the capacity, purchases of the topic, then one follower per pair.
 */
export const CROSS_SELL = `
local cap, key = tonumber(ARGV[1]), KEYS[1]
if tonumber(ARGV[2]) > 0 then redis.call('HINCRBY', key, ${lua(CROSS_SELL_BUYERS)}, ARGV[2]) end
local function put(y, c, e)
  if e > 0 then redis.call('HSET', key, y, string.format('%d,%d', c, e))
  else redis.call('HSET', key, y, string.format('%d', c)) end
end
for i = 3, #ARGV do
  local y = ARGV[i]
  local cur = redis.call('HGET', key, y)
  if cur then
    local c, e = string.match(cur, '^(%d+),?(%d*)$')
    put(y, tonumber(c) + 1, tonumber(e) or 0)
  elseif redis.call('HLEN', key) - redis.call('HEXISTS', key, ${lua(CROSS_SELL_BUYERS)}) < cap then
    put(y, 1, 0)
  else
    local all = redis.call('HGETALL', key)
    local minT, minC
    for j = 1, #all, 2 do
      local t = all[j]
      if t ~= ${lua(CROSS_SELL_BUYERS)} then
        local c = tonumber(string.match(all[j + 1], '^%d+'))
        if not minC or c < minC or (c == minC and t > minT) then minT, minC = t, c end
      end
    end
    redis.call('HDEL', key, minT)
    put(y, minC + 1, minC)
  end
end
return 1
`;
