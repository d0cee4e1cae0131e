import { F, OUTBOX_PREFIX } from '../fold/codec.js';

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

/**
 * Compare-and-set on the person's version: the write lands only if nobody else (a zombie worker
 * after a rebalance) wrote since we read.
 * KEYS: 1 history hash, 2 fingerprints, 3 linked ids, 4 outbox hash (field = partition).
 * ARGV: expected version, fingerprint TTL, partition, n, then n fields to delete, then field/value pairs
 * (an empty outbox value removes the partition's outbox).
 * The fingerprints, the linked ids and the outbox go to their own keys: a hash that once held a
 * long value stays a (much larger) hashtable, so they must never enter the history hash.
 */
export const WRITE_IF_VERSION = `
local v = redis.call('HGET', KEYS[1], ${lua(F.version)})
if (v or '0') ~= ARGV[1] then return 0 end
local ndel = tonumber(ARGV[4])
for i = 5, 4 + ndel, ${LUA_SLICE} do
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, math.min(i + ${LUA_SLICE} - 1, 4 + ndel)))
end
local fields = {}
local function flush()
  if #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end
  fields = {}
end
for i = 5 + ndel, #ARGV, 2 do
  local f = ARGV[i]
  if f == ${lua(F.seen)} then
    redis.call('SET', KEYS[2], ARGV[i + 1], 'EX', ARGV[2])
  elseif f == ${lua(F.linked)} then
    redis.call('SET', KEYS[3], ARGV[i + 1])
  elseif string.sub(f, 1, ${OUTBOX_PREFIX.length}) == ${lua(OUTBOX_PREFIX)} then
    if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[4], ARGV[3]) else redis.call('HSET', KEYS[4], ARGV[3], ARGV[i + 1]) end
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

/** Points a visitor at its person if its version is still ARGV[2]; bumps the version. KEYS: the visitor's hash. */
export const MARK = `
if (redis.call('HGET', KEYS[1], ${lua(F.version)}) or '0') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ${lua(F.alias)}, ARGV[1], ${lua(F.version)}, tostring(tonumber(ARGV[2]) + 1))
return 1
`;

/**
 * Leaves a merged visitor as a pointer to its person (keeping offsets and version), history removed.
 * KEYS: the visitor's hash, fingerprints, linked ids. ARGV: the person.
 */
export const SEAL = `
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
