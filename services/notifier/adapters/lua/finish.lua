-- Record the outcomes of attempts, each only if its attempt still holds the claim (a slower
-- replica whose lease ran out must not overwrite the newer attempt's outcome).
-- Every key shares the ledger's hash tag: delivery hashes are named from ARGV[1] (see
-- claim.lua), and the batch is one JSON argument.
-- KEYS[1] the due-time sorted set
-- ARGV[1] delivery key prefix ("{<prefix>}:d:"); ARGV[2] TTL of a finished delivery's record (s)
-- ARGV[3] a JSON array, per delivery in order: [id, claim token, next attempt at (a string;
-- '' = finished), {field: value (strings)}]
-- Returns one flag per delivery: 1 when recorded, 0 when the claim was lost.
local due, prefix, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
local out = {}
for i, f in ipairs(cjson.decode(ARGV[3])) do
  local id, token, next_at, fields = f[1], f[2], f[3], f[4]
  local key = prefix .. id
  if tonumber(redis.call('HGET', key, 'claims') or '0') ~= tonumber(token) then
    out[i] = 0
  else
    local pairs_ = {}
    for k, v in pairs(fields) do
      pairs_[#pairs_ + 1] = k
      pairs_[#pairs_ + 1] = v
    end
    redis.call('HSET', key, unpack(pairs_))
    if next_at == '' then
      redis.call('ZREM', due, id)
      redis.call('EXPIRE', key, ttl)
    else
      redis.call('ZADD', due, next_at, id)
    end
    out[i] = 1
  end
end
return out
