-- Commit the decisions about a batch of one shard's cards, each atomically and only if nobody
-- changed the card since it was read (optimistic concurrency on the field `v`), together with
-- the messages it produced. One call per shard and batch: the batch comes as one JSON argument
-- (client-side packing of a dozen arguments per card cost more than the decision itself).
--
-- KEYS[1]  the tag's outbox stream (also routes the call to the tag's Redis Cluster slot)
-- KEYS[2]  the tag's due-time sorted set (member: iccid, score: epoch seconds)
-- KEYS[3]  the tag's statistics hash (field `suspended`: cards currently suspended)
-- ARGV[1]  card key prefix, e.g. "sw:{7}:c:" (a card's key is this .. iccid)
-- ARGV[2]  card event key prefix, e.g. "sw:{7}:e:" (an event's key is this .. event id)
-- ARGV[3]  the event de-duplication TTL in seconds
-- ARGV[4]  card history key prefix, e.g. "sw:{7}:h:" (a card's list is this .. iccid)
-- ARGV[5]  how many history entries a card keeps
-- ARGV[6]  pending command key prefix, e.g. "sw:{7}:p:" (a card's key is this .. iccid)
-- ARGV[7]  the commits as one JSON array; each commit is an array:
--   [1] iccid   [2] expected version (0 when the card did not exist)   [3] new state (JSON)
--   [4] calendar ('' = the default: field removed)
--   [5] '1' when the card has a profile, else '0' (field `nk` = '1': read by ingest.lua)
--   [6] flat field/value pairs to set (wake levels, "w:<cycle>", values as strings)
--   [7] flat topic, key, value triples appended to the outbox (one entry per card)
--   [8] fields to delete (old cycles' counters)
--   [9] the card event's id ('' = none): applied at most once
--   [10] when the card is next due ('' = never: removed from the due set)
--   [11] the change in the number of suspended cards (-1, 0, 1)
--   [12] entries for the card's history list, oldest first (each pushed to the front, so
--        the list reads newest first; kept to ARGV[5])
--   [13] the card's tracked command: a string to store, '' to delete, 0 unchanged
--   [14] flat field, delta pairs added to the statistics hash (commands pending, ...)
--   [15] the card's pool membership: 0 unchanged, or {old pool, new pool, cycle} ('' = none):
--        the card leaves the old pool's member set of this shard, joins the new one's, and
--        its field `pl` (read by ingest.lua) names the new one. With a cycle (the card's first
--        profile), what the card used in that cycle before it was known joins the pool's
--        count too, read here so that no record counted meanwhile is missed or added twice
-- ARGV[8]  the tag, e.g. "sw:{7}:" (a pool's member set here is tag .. 'pm:' .. pool)
-- ARGV[9]  '1': a card's messages in one outbox entry; else one entry per message (as
--          workers before 2026-11-29 read them: USAGE_MONITOR_OUTBOX_ENTRY_PER_DECISION)
--
-- Returns, per commit in order: the new version, -1 on a version conflict, or 0 when the
-- event was already applied.
local outbox, due, stats = KEYS[1], KEYS[2], KEYS[3]
local card_prefix, event_prefix, event_ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local history_prefix, keep = ARGV[4], tonumber(ARGV[5])
local pending_prefix = ARGV[6]
local commits = cjson.decode(ARGV[7])
local tag = ARGV[8]
local entry_per_decision = ARGV[9] == '1'
local MAX_ENTRY_MESSAGES = 1000
local results = {}
local suspended = 0
local totals = {}

local function commit(c)
  local iccid, event = c[1], c[9]
  local card = card_prefix .. iccid
  if event ~= '' and redis.call('EXISTS', event_prefix .. event) == 1 then
    return 0
  end
  local version = tonumber(redis.call('HGET', card, 'v') or '0')
  if version ~= c[2] then
    return -1
  end
  version = version + 1
  -- The card's hash in one HSET and one HDEL (each call from Lua costs about a microsecond
  -- of Redis's time beyond the command itself; a boundary commits every card of a fleet).
  -- A card with a profile carries no flag (nearly every card: 5 bytes less each); one
  -- without, 'nk'. 'k' is the flag as written before 2026-11-29, gone at the next commit.
  local set, del = {'v', version, 's', c[3]}, {'k'}
  if c[5] == '1' then
    del[#del + 1] = 'nk'
  else
    set[#set + 1] = 'nk'
    set[#set + 1] = '1'
  end
  if c[4] == '' then
    del[#del + 1] = 'cal'
  else
    set[#set + 1] = 'cal'
    set[#set + 1] = c[4]
  end
  for _, x in ipairs(c[6]) do
    set[#set + 1] = x
  end
  for _, x in ipairs(c[8]) do  -- old cycles' counters and wake levels
    del[#del + 1] = x
  end
  redis.call('HSET', card, unpack(set))
  redis.call('HDEL', card, unpack(del))
  -- The card's messages in one outbox entry, its fields t, k, v once per message in order
  -- (one XADD per message cost a pool's stop a call from Lua per command, alert and audit
  -- record; an entry of one message, as written before, reads the same).
  -- More than MAX_ENTRY_MESSAGES (a decision catching up on years of steps) go one per entry:
  -- Lua's unpack() takes at most ~8000 values, and a failed XADD after the card's HSET
  -- would leave the decision committed without its messages.
  local messages = c[7]
  if not entry_per_decision or #messages > MAX_ENTRY_MESSAGES * 3 then
    for j = 1, #messages, 3 do
      redis.call('XADD', outbox, '*', 't', messages[j], 'k', messages[j + 1], 'v', messages[j + 2])
    end
  elseif #messages > 0 then
    local fields = {}
    for j = 1, #messages, 3 do
      local n = #fields
      fields[n + 1], fields[n + 2], fields[n + 3] = 't', messages[j], 'k'
      fields[n + 4], fields[n + 5], fields[n + 6] = messages[j + 1], 'v', messages[j + 2]
    end
    redis.call('XADD', outbox, '*', unpack(fields))
  end
  if event ~= '' then
    redis.call('SET', event_prefix .. event, '1', 'EX', event_ttl)
  end
  suspended = suspended + c[11]
  if c[10] == '' then
    redis.call('ZREM', due, iccid)
  else
    redis.call('ZADD', due, c[10], iccid)
  end
  local pending = c[13]
  if pending == '' then
    redis.call('DEL', pending_prefix .. iccid)
  elseif type(pending) == 'string' then
    redis.call('SET', pending_prefix .. iccid, pending)
  end
  local membership = c[15]
  if type(membership) == 'table' then
    if membership[1] ~= '' then
      redis.call('SREM', tag .. 'pm:' .. membership[1], iccid)
    end
    if membership[2] ~= '' then
      redis.call('SADD', tag .. 'pm:' .. membership[2], iccid)
      redis.call('HSET', card, 'pl', membership[2])
      local cycle = membership[3]
      if cycle ~= '' then
        local used = tonumber(redis.call('HGET', card, 'u:' .. cycle) or '0')
        if used > 0 then
          redis.call('HINCRBY', tag .. 'pc:' .. cycle, membership[2], used)
          redis.call('EXPIRE', tag .. 'pc:' .. cycle, 8640000)
          redis.call('ZADD', tag .. 'pt:' .. membership[2] .. ':' .. cycle, used, iccid)
        end
      end
    else
      redis.call('HDEL', card, 'pl')
    end
  end
  local deltas = c[14]
  for j = 1, #deltas, 2 do
    totals[deltas[j]] = (totals[deltas[j]] or 0) + deltas[j + 1]
  end
  local history = c[12]
  if #history > 0 then
    local list = history_prefix .. iccid
    redis.call('LPUSH', list, unpack(history))
    redis.call('LTRIM', list, 0, keep - 1)
  end
  return version
end

for i, c in ipairs(commits) do
  results[i] = commit(c)
end
if suspended ~= 0 then
  redis.call('HINCRBY', stats, 'suspended', suspended)
end
for field, delta in pairs(totals) do
  if delta ~= 0 then
    redis.call('HINCRBY', stats, field, delta)
  end
end
return results
