-- Claim deliveries that are due, exclusively, and return them loaded: each claimed id's score
-- moves to the end of its lease, so no other replica sees it until the lease runs out (the
-- claimer died). The caller read the candidates (ZRANGEBYSCORE) just before; each is claimed
-- only if it is still due, so a candidate another replica claimed in between is skipped.
-- An endpoint (customer/channel) that already has `cap` attempts in flight at the caller gets
-- no more: its due candidates move, unchanged and still due, behind every delivery due now
-- (score `now`), so the other endpoints' deliveries come forward; at most `limit` are moved.
-- KEYS[1] the due-time sorted set; KEYS[1 + i] the hash of candidate i
-- ARGV[1] now; ARGV[2] lease end; ARGV[3] the state of a claimed delivery ('sending');
-- ARGV[4] at most this many claims; ARGV[5] cap per endpoint (0 = none);
-- ARGV[6] m, then m endpoint/in-flight pairs; then the id of each candidate
-- Returns {id, the state before this claim, the claim token, {field, value, ...}} per claim.
-- A state of 'sending' before the claim means an earlier attempt's outcome is unknown.
local now, limit, cap = tonumber(ARGV[1]), tonumber(ARGV[4]), tonumber(ARGV[5])
local m = tonumber(ARGV[6])
local busy = {}
for j = 0, m - 1 do
  busy[ARGV[7 + 2 * j]] = tonumber(ARGV[8 + 2 * j])
end
local first = 7 + 2 * m
local out = {}
local moved = 0
for i = 2, #KEYS do
  if #out >= limit or moved >= limit then
    break
  end
  local id = ARGV[first + i - 2]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= now then
    local f = redis.call('HMGET', KEYS[i], 'state', 'customer', 'channel')
    if not f[1] then
      redis.call('ZREM', KEYS[1], id)
    else
      local endpoint = tostring(f[2]) .. '/' .. tostring(f[3])
      local held = busy[endpoint] or 0
      if cap > 0 and held >= cap then
        redis.call('ZADD', KEYS[1], ARGV[1], id)
        moved = moved + 1
      else
        busy[endpoint] = held + 1
        local token = redis.call('HINCRBY', KEYS[i], 'claims', 1)
        redis.call('HSET', KEYS[i], 'state', ARGV[3])
        redis.call('ZADD', KEYS[1], ARGV[2], id)
        out[#out + 1] = {id, f[1], token, redis.call('HGETALL', KEYS[i])}
      end
    end
  end
end
return out
