-- End a drain round of a tag's outbox. The lock is released only when the outbox is empty,
-- checked atomically: a writer that failed to take the lock after appending an entry can
-- then rely on the holder to publish it.
-- KEYS[1] the lock; KEYS[2] the outbox stream; ARGV[1] the holder's token; ARGV[2] lock TTL ms
-- Returns 1 released (outbox empty), 0 still held (entries remain: drain again), -1 lock lost.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
if redis.call('XLEN', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
