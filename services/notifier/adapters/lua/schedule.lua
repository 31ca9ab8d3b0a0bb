-- Record a delivery and queue it, unless it exists already (a redelivered alert).
-- KEYS[1] the delivery hash; KEYS[2] the due-time sorted set
-- ARGV[1] delivery id; ARGV[2] first attempt at (epoch s); ARGV[3..] field/value pairs
-- Returns 1 when scheduled, 0 when it was known.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
