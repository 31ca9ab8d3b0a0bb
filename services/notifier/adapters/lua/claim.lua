-- Claim deliveries that are due, exclusively: each claimed id's score moves to the end of its
-- lease, so no other replica sees it until the lease runs out (the claimer died).
-- KEYS[1] the due-time sorted set (every delivery hash shares its hash tag)
-- ARGV[1] now; ARGV[2] lease end; ARGV[3] at most this many; ARGV[4] delivery key prefix
-- Returns flat triples: id, the state before this claim, the claim token.
-- A state of 'sending' before the claim means an earlier attempt's outcome is unknown.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local key = ARGV[4] .. id
  local previous = redis.call('HGET', key, 'state')
  if not previous then
    redis.call('ZREM', KEYS[1], id)
  else
    local token = redis.call('HINCRBY', key, 'claims', 1)
    redis.call('HSET', key, 'state', 'sending')
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    out[#out + 1] = id
    out[#out + 1] = previous
    out[#out + 1] = token
  end
end
return out
