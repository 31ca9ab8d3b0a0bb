-- Record deliveries and queue them, each unless it exists already (a redelivered alert).
-- Every key shares the ledger's hash tag: delivery hashes are named from ARGV[1] (see
-- claim.lua), and the batch is one JSON argument.
-- KEYS[1] the due-time sorted set
-- ARGV[1] delivery key prefix ("{<prefix>}:d:")
-- ARGV[2] a JSON array, per delivery in order: [id, first attempt at (epoch s, a string),
-- {field: value (strings)}]
-- Returns one flag per delivery: 1 when scheduled, 0 when it was known.
local due, prefix = KEYS[1], ARGV[1]
local out = {}
for i, d in ipairs(cjson.decode(ARGV[2])) do
  local id, at, fields = d[1], d[2], d[3]
  local key = prefix .. id
  if redis.call('EXISTS', key) == 1 then
    out[i] = 0
  else
    local pairs_ = {}
    for k, v in pairs(fields) do
      pairs_[#pairs_ + 1] = k
      pairs_[#pairs_ + 1] = v
    end
    redis.call('HSET', key, unpack(pairs_))
    redis.call('ZADD', due, at, id)
    out[i] = 1
  end
end
return out
