-- Apply a batch of usage records that all live under one hash tag, in one atomic call.
-- For each record: remember its id (a 64-bit digest added to the set of its event-time day
-- and bucket; a duplicate is one already there) unless the card's billing calendar differs
-- from the one the caller assumed when it named the record's cycle; such records are handed
-- back, untouched, with the card's calendar. New bytes are summed per (card, cycle) and
-- written once per batch: one write per record (the id) and one per card and cycle.
--
-- KEYS[1]  the tag's outbox key: routes the call to the tag's slot in Redis Cluster.
--          The keys below are per record, so they come as prefixes built by keys.py (with
--          the same tag, hence in that slot): the script only appends to each.
-- ARGV[1]  card key prefix, e.g. "sw:{7}:c:" (the card's key is this .. iccid)
-- ARGV[2]  id-set prefix, e.g. "sw:{7}:rd:" (a set's key is this .. day .. ':' .. bucket)
-- ARGV[3]  the days of this batch as one JSON array, two values per day (flat):
--          day (yyyymmdd), when its sets expire (POSIX seconds)
-- ARGV[5]  the tag, e.g. "sw:{7}:": a pooled card's bytes are also added to its pool's count
--          in this shard (tag .. 'pc:' .. cycle, field pool) and its place among the pool's
--          biggest members here (tag .. 'pt:' .. pool .. ':' .. cycle, kept to ARGV[6]),
--          once per pool and batch
-- ARGV[6]  how many of a pool's biggest members each shard keeps
-- ARGV[4]  the records as one JSON array, seven values per record (flat):
--          day index (1-based, into ARGV[3]), bucket, digest (decimal string: Lua numbers
--          cannot hold 64 bits), iccid, calendar ('' = default), cycle, bytes; and late
--          (1 = closed cycle) as an eighth
--          (one argument instead of many per record: client-side packing was the hot spot)
--
-- A pool's count moves with the record's de-duplication, in this one script: a record is
-- added to the pool its card belongs to (field `pl`) exactly when it is added to the card.
--
-- Returns {applied, duplicates, due, recalendar, unknown, late, pools}; every record given is
-- exactly one of: applied (on time, known card), duplicate, unknown (counted for a card
-- without a profile yet), late (counted in a closed cycle), or handed back in recalendar.
--   due:        flat list of iccid, cycle, used for every (card, cycle) touched whose usage
--               reached its wake level, or which has none yet: the caller evaluates those.
--   recalendar: flat list of record index (1-based), calendar for records not applied.
--   pools:      flat list of pool, cycle for every pool a record of this batch belongs to,
--               added or a duplicate: a batch run again after a partial failure (its other
--               shards' scripts had run) finds its records counted, and the pools they
--               belong to must still be settled.
local card_prefix, set_prefix = ARGV[1], ARGV[2]
local tag, keep_top = ARGV[5], tonumber(ARGV[6])
local pool_of, pooled, pools = {}, {}, {}
local days, rows = cjson.decode(ARGV[3]), cjson.decode(ARGV[4])
local applied, dups, unknown, late = 0, 0, 0, 0
local calendars, known, added, order, recal, expiring = {}, {}, {}, {}, {}, {}
-- added[t]: false while no new record of (card, cycle) t came, then the bytes to add
for i = 1, #rows, 8 do
  local iccid, cal, cycle = rows[i + 3], rows[i + 4], rows[i + 5]
  local actual = calendars[iccid]
  if actual == nil then
    local v = redis.call('HMGET', card_prefix .. iccid, 'cal', 'k', 'pl', 'v', 'nk')
    actual = v[1] or ''
    calendars[iccid] = actual
    if v[2] then  -- the flag as written before 2026-11-29
      known[iccid] = v[2] == '1'
    else  -- committed (a version) and not marked as without a profile
      known[iccid] = v[4] ~= false and v[5] == false
    end
    pool_of[iccid] = v[3]
  end
  if actual ~= cal then
    recal[#recal + 1] = (i - 1) / 8 + 1
    recal[#recal + 1] = actual
  else
    local d = rows[i] * 2 - 1
    local set = set_prefix .. days[d] .. ':' .. rows[i + 1]
    local t = iccid .. ' ' .. cycle
    if added[t] == nil then
      added[t] = false
      order[#order + 1] = {iccid, cycle, t}
    end
    if redis.call('SADD', set, rows[i + 2]) == 1 then
      if not expiring[set] then
        expiring[set] = true
        -- NX: only a set without one yet (just created) gets its expiry. Setting the same
        -- expiry again wrote it to the AOF on every batch: 32 of 154 AOF bytes a record,
        -- and AOF rewrites (a fork on the same cores) came that much more often.
        redis.call('EXPIREAT', set, days[d + 1], 'NX')
      end
      added[t] = (added[t] or 0) + rows[i + 6]
      if not known[iccid] then
        unknown = unknown + 1
      elseif rows[i + 7] == 1 then
        late = late + 1
      else
        applied = applied + 1
      end
    else
      dups = dups + 1
    end
  end
end
local due = {}
for _, entry in ipairs(order) do
  local card, field = card_prefix .. entry[1], 'u:' .. entry[2]
  local used, wake
  if added[entry[3]] then
    used = redis.call('HINCRBY', card, field, added[entry[3]])
    wake = tonumber(redis.call('HGET', card, 'w:' .. entry[2]))
    local pool = pool_of[entry[1]]
    if pool then
      local t = pool .. ' ' .. entry[2]
      local sum = pooled[t]
      if not sum then
        sum = {pool, entry[2], 0, {}}
        pooled[t] = sum
        pools[#pools + 1] = pool
        pools[#pools + 1] = entry[2]
      end
      sum[3] = sum[3] + added[entry[3]]
      local top = sum[4]
      top[#top + 1] = {used, entry[1]}
    end
  else
    local v = redis.call('HMGET', card, field, 'w:' .. entry[2])
    used, wake = tonumber(v[1]) or 0, tonumber(v[2])
    local pool = pool_of[entry[1]]
    if pool then  -- only duplicates: nothing to add, but the pool is reported as touched
      local t = pool .. ' ' .. entry[2]
      if not pooled[t] then
        pooled[t] = {pool, entry[2], 0, {}}
        pools[#pools + 1] = pool
        pools[#pools + 1] = entry[2]
      end
    end
  end
  if wake == nil or (wake >= 0 and used >= wake) then
    due[#due + 1] = entry[1]
    due[#due + 1] = entry[2]
    due[#due + 1] = used
  end
end
-- Each pool touched: its count in this shard and cycle once, its biggest members once.
-- Only this batch's own biggest can enter the shard's top: the others are not written.
local function bigger(a, b) return a[1] > b[1] end
for _, sum in pairs(pooled) do
  local members = sum[4]
  if #members > 0 then  -- else only duplicates: nothing to write
    local counts = tag .. 'pc:' .. sum[2]
    redis.call('HINCRBY', counts, sum[1], sum[3])
    redis.call('EXPIRE', counts, 8640000)  -- 100 days: read while its cycle is recent
    local top = tag .. 'pt:' .. sum[1] .. ':' .. sum[2]
    table.sort(members, bigger)
    local flat = {}
    for i = 1, math.min(#members, keep_top) do
      flat[#flat + 1] = members[i][1]
      flat[#flat + 1] = members[i][2]
    end
    redis.call('ZADD', top, unpack(flat))
    redis.call('ZREMRANGEBYRANK', top, 0, -keep_top - 1)
    redis.call('EXPIRE', top, 8640000)
  end
end
return {applied, dups, due, recal, unknown, late, pools}
