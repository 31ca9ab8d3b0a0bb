-- Record that a pool's members in this shard were evaluated with the view of `version`,
-- only forward: a slow pass that read an older view must not lower a newer pass's mark.
--
-- KEYS[1]  the shard's fan-out progress hash   ARGV[1]  the pool id   ARGV[2]  the version
-- Returns 1 when the mark moved, 0 when it already was at or past `version`.
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > current then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
