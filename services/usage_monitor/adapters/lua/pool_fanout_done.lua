-- Forget a pool's fan-out request once its members were evaluated for `version`, unless a
-- newer decision asked again meanwhile (its score is then higher).
--
-- KEYS[1]  the tag's fan-out sorted set   ARGV[1]  the pool id   ARGV[2]  the version done
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
