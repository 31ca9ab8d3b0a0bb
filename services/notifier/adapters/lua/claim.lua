-- Claim deliveries that are due, exclusively: each claimed id's score moves to the end of its
-- lease, so no other replica sees it until the lease runs out (the claimer died).
-- The caller read the candidates (ZRANGEBYSCORE) just before; each is claimed only if it is
-- still due, so a candidate another replica claimed in between is skipped.
-- KEYS[1] the due-time sorted set; KEYS[1 + i] the hash of candidate i
-- ARGV[1] now; ARGV[2] lease end; ARGV[3] the state of a claimed delivery ('sending');
-- ARGV[3 + i] the id of candidate i
-- Returns flat triples: id, the state before this claim, the claim token.
-- A state of 'sending' before the claim means an earlier attempt's outcome is unknown.
local now = tonumber(ARGV[1])
local out = {}
for i = 2, #KEYS do
  local id = ARGV[i + 2]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= now then
    local previous = redis.call('HGET', KEYS[i], 'state')
    if not previous then
      redis.call('ZREM', KEYS[1], id)
    else
      local token = redis.call('HINCRBY', KEYS[i], 'claims', 1)
      redis.call('HSET', KEYS[i], 'state', ARGV[3])
      redis.call('ZADD', KEYS[1], ARGV[2], id)
      out[#out + 1] = id
      out[#out + 1] = previous
      out[#out + 1] = token
    end
  end
end
return out
