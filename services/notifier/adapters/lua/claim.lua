-- Claim deliveries that are due, exclusively, and return them loaded: each claimed id's score
-- moves to the end of its lease, so no other replica sees it until the lease runs out (the
-- claimer died). The candidates are read here (the earliest due, up to `scan` of them), so the
-- read and the claims are one atomic step and one round trip.
-- An endpoint (customer/channel) that already has `cap` attempts in flight at the caller gets
-- no more: its due candidates move, unchanged and still due, behind every delivery due now
-- (score `now`), so the other endpoints' deliveries come forward; at most `limit` are moved.
--
-- Every key shares the ledger's hash tag (one Redis Cluster slot), so the delivery hashes are
-- named from ARGV[1] rather than passed one KEYS entry each (as commit.lua does for cards):
-- the call's arguments and its answer are one JSON string each, not a few per delivery.
--
-- KEYS[1] the due-time sorted set
-- ARGV[1] delivery key prefix ("{<prefix>}:d:"; a delivery's hash is this .. id)
-- ARGV[2] now; ARGV[3] lease end; ARGV[4] the state of a claimed delivery ('sending');
-- ARGV[5] at most this many claims; ARGV[6] cap per endpoint (0 = none);
-- ARGV[7] at most this many candidates looked at;
-- ARGV[8] the caller's attempts in flight per endpoint, a JSON object
-- Returns a JSON array: per claim [id, the state before this claim, the claim token,
-- {field: value} of the delivery's hash after the claim].
-- A state of 'sending' before the claim means an earlier attempt's outcome is unknown.
local due, prefix = KEYS[1], ARGV[1]
local now, limit, cap = tonumber(ARGV[2]), tonumber(ARGV[5]), tonumber(ARGV[6])
local busy = cjson.decode(ARGV[8])
local ids = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, tonumber(ARGV[7]))
local out = {}
local moved = 0
for _, id in ipairs(ids) do
  if #out >= limit or moved >= limit then
    break
  end
  local key = prefix .. id
  local f = redis.call('HMGET', key, 'state', 'customer', 'channel')
  if not f[1] then
    redis.call('ZREM', due, id)
  else
    local endpoint = tostring(f[2]) .. '/' .. tostring(f[3])
    local held = busy[endpoint] or 0
    if cap > 0 and held >= cap then
      redis.call('ZADD', due, ARGV[2], id)
      moved = moved + 1
    else
      busy[endpoint] = held + 1
      local token = redis.call('HINCRBY', key, 'claims', 1)
      redis.call('HSET', key, 'state', ARGV[4])
      redis.call('ZADD', due, ARGV[3], id)
      local flat = redis.call('HGETALL', key)
      local fields = {}
      for j = 1, #flat, 2 do
        fields[flat[j]] = flat[j + 1]
      end
      out[#out + 1] = {id, f[1], token, fields}
    end
  end
end
if #out == 0 then
  return '[]' -- cjson would write an empty table as {}
end
return cjson.encode(out)
