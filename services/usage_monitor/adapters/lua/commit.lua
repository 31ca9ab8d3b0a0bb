-- Commit one card's decision atomically, if nobody changed the card since it was read
-- (optimistic concurrency on the field `v`), together with the messages it produced.
--
-- KEYS[1]  the card hash;  KEYS[2]  the tag's outbox stream
-- KEYS[3]  the tag's due-time sorted set (member: iccid, score: epoch seconds)
-- KEYS[4]  the tag's statistics hash (field `suspended`: cards currently suspended)
-- KEYS[5]  optional: the card event's de-duplication key (same tag)
-- KEYS[#KEYS] (last, always): the card's history list (its most recent decisions)
-- ARGV[1]  expected version ('0' when the card did not exist)
-- ARGV[2]  new state (JSON)
-- ARGV[3]  calendar ('' = the default: field removed)
-- ARGV[4]  '1' when the card has a profile (field `k`, read by ingest.lua), else '0'
-- ARGV[5]  n: number of field/value pairs that follow (wake levels, "w:<cycle>")
-- ARGV[6 .. 5+2n] the pairs
-- then     m: number of messages, and m triples topic, key, value (appended to the outbox)
-- then     fields to delete count k, and k field names (old cycles' counters)
-- then     the event de-duplication TTL in seconds (used with KEYS[5])
-- then     the iccid, and when the card is next due ('' = never: removed from KEYS[3])
-- then     the change in the number of suspended cards (-1, 0, 1)
-- then     how many history entries to keep, h: entries that follow, and the h entries
--          (oldest first: each is pushed to the front, so the list reads newest first)
--
-- Returns the new version, -1 on a version conflict, or 0 when the event was already applied.
local card, outbox, due, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local seen, history = nil, KEYS[#KEYS]
if #KEYS == 6 then
  seen = KEYS[5]
end
if seen and redis.call('EXISTS', seen) == 1 then
  return 0
end
local version = tonumber(redis.call('HGET', card, 'v') or '0')
if version ~= tonumber(ARGV[1]) then
  return -1
end
version = version + 1
redis.call('HSET', card, 'v', version, 's', ARGV[2])
if ARGV[3] == '' then
  redis.call('HDEL', card, 'cal')
else
  redis.call('HSET', card, 'cal', ARGV[3])
end
redis.call('HSET', card, 'k', ARGV[4])
local i = 5
local n = tonumber(ARGV[i])
for j = 1, n do
  redis.call('HSET', card, ARGV[i + 2 * j - 1], ARGV[i + 2 * j])
end
i = i + 2 * n + 1
local m = tonumber(ARGV[i])
for j = 1, m do
  local at = i + 3 * (j - 1)
  redis.call('XADD', outbox, '*', 't', ARGV[at + 1], 'k', ARGV[at + 2], 'v', ARGV[at + 3])
end
i = i + 3 * m + 1
local k = tonumber(ARGV[i])
for j = 1, k do
  redis.call('HDEL', card, ARGV[i + j])
end
i = i + k + 1
if seen then
  redis.call('SET', seen, '1', 'EX', tonumber(ARGV[i]))
end
local delta = tonumber(ARGV[i + 3])
if delta ~= 0 then
  redis.call('HINCRBY', stats, 'suspended', delta)
end
if ARGV[i + 2] == '' then
  redis.call('ZREM', due, ARGV[i + 1])
else
  redis.call('ZADD', due, ARGV[i + 2], ARGV[i + 1])
end
local keep, h = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
if h > 0 then
  for j = 1, h do
    redis.call('LPUSH', history, ARGV[i + 5 + j])
  end
  redis.call('LTRIM', history, 0, keep - 1)
end
return version
