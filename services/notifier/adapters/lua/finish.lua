-- Record the outcome of an attempt, if the attempt still holds the claim (a slower replica
-- whose lease ran out must not overwrite the newer attempt's outcome).
-- KEYS[1] the delivery hash; KEYS[2] the due-time sorted set
-- ARGV[1] id; ARGV[2] claim token; ARGV[3] next attempt at ('' = finished);
-- ARGV[4] TTL of a finished delivery's record (s); ARGV[5..] field/value pairs
-- Returns 1 when recorded, 0 when the claim was lost.
if tonumber(redis.call('HGET', KEYS[1], 'claims') or '0') ~= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
else
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
end
return 1
