-- The naive design the benchmark compares against: one round trip per record.
-- KEYS[1] record id key, KEYS[2] card hash (field q = quota, u = used)
-- ARGV[1] TTL, ARGV[2] bytes. Returns 1 when this record took the card over its quota.
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  local used = redis.call('HINCRBY', KEYS[2], 'u', ARGV[2])
  local quota = tonumber(redis.call('HGET', KEYS[2], 'q') or '-1')
  if quota >= 0 and used >= quota and used - tonumber(ARGV[2]) < quota then
    return 1
  end
end
return 0
