-- Apply a batch of usage records that all live under one hash tag, in one atomic call.
-- For each record: claim its record_id and add its bytes together (a duplicate adds nothing),
-- unless the card's billing calendar differs from the one the caller assumed when it named
-- the record's cycle; such records are handed back, untouched, with the card's calendar.
--
-- KEYS[1]  the tag's outbox key: routes the call to the tag's slot in Redis Cluster.
--          The keys below are per record, so they come as prefixes built by keys.py (with
--          the same tag, hence in that slot): the script only appends an id to each.
-- ARGV[1]  card key prefix, e.g. "sw:{7}:c:" (the card's key is this .. iccid)
-- ARGV[2]  record key prefix, e.g. "sw:{7}:r:" (a record's claim is this .. record_id)
-- ARGV[3]  de-duplication TTL in seconds
-- ARGV[4]  the records as one JSON array, six values per record (flat):
--          record_id, iccid, calendar ('' = default), cycle, bytes, late (1 = closed cycle)
--          (one argument instead of five per record: client-side packing was the hot spot)
--
-- Returns {applied, duplicates, due, recalendar, unknown, late}; every record given is
-- exactly one of: applied (on time, known card), duplicate, unknown (counted for a card
-- without a profile yet), late (counted in a closed cycle), or handed back in recalendar.
--   due:        flat list of iccid, cycle, used for every (card, cycle) touched whose usage
--               reached its wake level, or which has none yet: the caller evaluates those.
--   recalendar: flat list of record index (1-based), calendar for records not applied.
local card_prefix, record_prefix, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local rows = cjson.decode(ARGV[4])
local applied, dups, unknown, late = 0, 0, 0, 0
local calendars, known, touched, order, recal = {}, {}, {}, {}, {}
for i = 1, #rows, 6 do
  local iccid, cal, cycle = rows[i + 1], rows[i + 2], rows[i + 3]
  local card = card_prefix .. iccid
  local actual = calendars[iccid]
  if actual == nil then
    local v = redis.call('HMGET', card, 'cal', 'k')
    actual = v[1] or ''
    calendars[iccid] = actual
    known[iccid] = v[2] == '1'
  end
  if actual ~= cal then
    recal[#recal + 1] = (i - 1) / 6 + 1
    recal[#recal + 1] = actual
  else
    if redis.call('SET', record_prefix .. rows[i], '1', 'NX', 'EX', ttl) then
      redis.call('HINCRBY', card, 'u:' .. cycle, rows[i + 4])
      if not known[iccid] then
        unknown = unknown + 1
      elseif rows[i + 5] == 1 then
        late = late + 1
      else
        applied = applied + 1
      end
    else
      dups = dups + 1
    end
    local t = iccid .. ' ' .. cycle
    if not touched[t] then
      touched[t] = true
      order[#order + 1] = {card, iccid, cycle}
    end
  end
end
local due = {}
for _, entry in ipairs(order) do
  local v = redis.call('HMGET', entry[1], 'u:' .. entry[3], 'w:' .. entry[3])
  local used = tonumber(v[1]) or 0
  local wake = tonumber(v[2])
  if wake == nil or (wake >= 0 and used >= wake) then
    due[#due + 1] = entry[2]
    due[#due + 1] = entry[3]
    due[#due + 1] = used
  end
end
return {applied, dups, due, recal, unknown, late}
