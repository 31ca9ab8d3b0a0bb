-- Record deliveries and queue them, each unless it exists already (a redelivered alert).
-- KEYS[1] the due-time sorted set; KEYS[1 + i] the hash of delivery i
-- ARGV, per delivery in order: id, first attempt at (epoch s), n, then n field/value pairs
-- Returns one flag per delivery: 1 when scheduled, 0 when it was known.
local out = {}
local a = 1
for i = 2, #KEYS do
  local id, at, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  if redis.call('EXISTS', KEYS[i]) == 1 then
    out[#out + 1] = 0
  else
    redis.call('HSET', KEYS[i], unpack(ARGV, a + 3, a + 2 + 2 * n))
    redis.call('ZADD', KEYS[1], at, id)
    out[#out + 1] = 1
  end
  a = a + 3 + 2 * n
end
return out
