-- The oldest entries of a tag's outbox, as XRANGE gives them: {id, {'t', topic, 'k', key,
-- 'v', value}} each. Through a script only so that the reply skips redis-py's XRANGE
-- callback, which turns every entry into a dict (most of a drain's client time); the
-- writers (commit.lua, pool_commit.lua) always add the fields in this order.
-- KEYS[1] the outbox stream; ARGV[1] how many entries at most.
return redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[1])
