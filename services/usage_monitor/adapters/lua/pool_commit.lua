-- Commit a pool's decision if nobody changed the pool since it was read (field `v`), with
-- its messages (the pool shard's outbox) and, when its members must be evaluated again,
-- a request for it (the shard's fan-out set, scored by the new version): several workers
-- may decide about one pool at the same moment, and exactly one of them commits.
--
-- KEYS[1]  the tag's outbox stream     KEYS[2]  the pool's hash (fields d, s, v)
-- KEYS[3]  the tag's fan-out sorted set
-- ARGV[1]  the pool id   ARGV[2]  the version read (0: none yet)   ARGV[3]  the new state
-- ARGV[4]  '1' to ask for a fan-out   ARGV[5]  flat topic, key, value triples (JSON array)
--
-- Returns the new version, or -1 on a version conflict.
local outbox, pool, fanout = KEYS[1], KEYS[2], KEYS[3]
local version = tonumber(redis.call('HGET', pool, 'v') or '0')
if version ~= tonumber(ARGV[2]) then
  return -1
end
version = version + 1
redis.call('HSET', pool, 'v', version, 's', ARGV[3])
local messages = cjson.decode(ARGV[5])
for j = 1, #messages, 3 do
  redis.call('XADD', outbox, '*', 't', messages[j], 'k', messages[j + 1], 'v', messages[j + 2])
end
if ARGV[4] == '1' then
  redis.call('ZADD', fanout, version, ARGV[1])
end
return version
