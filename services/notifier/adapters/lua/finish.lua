-- Record the outcomes of attempts, each only if its attempt still holds the claim (a slower
-- replica whose lease ran out must not overwrite the newer attempt's outcome).
-- KEYS[1] the due-time sorted set; KEYS[1 + i] the hash of delivery i
-- ARGV[1] TTL of a finished delivery's record (s); then, per delivery in order: id, claim
-- token, next attempt at ('' = finished), n, then n field/value pairs
-- Returns one flag per delivery: 1 when recorded, 0 when the claim was lost.
local out = {}
local a = 2
for i = 2, #KEYS do
  local id, token, next_at, n = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  if tonumber(redis.call('HGET', KEYS[i], 'claims') or '0') ~= tonumber(token) then
    out[#out + 1] = 0
  else
    redis.call('HSET', KEYS[i], unpack(ARGV, a + 4, a + 3 + 2 * n))
    if next_at == '' then
      redis.call('ZREM', KEYS[1], id)
      redis.call('EXPIRE', KEYS[i], tonumber(ARGV[1]))
    else
      redis.call('ZADD', KEYS[1], next_at, id)
    end
    out[#out + 1] = 1
  end
  a = a + 4 + 2 * n
end
return out
