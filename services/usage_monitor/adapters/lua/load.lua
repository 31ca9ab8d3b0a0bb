-- Read a batch of one shard's cards in one call: every field of each card's hash, as one JSON
-- document (parsing one string costs the client far less than a reply of ten items per card),
-- and the card's unconfirmed command if it has one (field `pd` of the reply).
--
-- KEYS[1]  the tag's outbox key: routes the call to the tag's slot in Redis Cluster (not read)
-- ARGV[1]  card key prefix, e.g. "sw:{7}:c:" (a card's key is this .. iccid)
-- ARGV[2]  pending command key prefix, e.g. "sw:{7}:p:"
-- ARGV[3..] the cards' ICCIDs
--
-- Returns a JSON array with, per ICCID in order, the card's fields and values flat
-- ([] or {} for a card that does not exist).
local prefix, pending_prefix = ARGV[1], ARGV[2]
local cards = {}
for i = 3, #ARGV do
  local flat = redis.call('HGETALL', prefix .. ARGV[i])
  local pending = redis.call('GET', pending_prefix .. ARGV[i])
  if pending then
    flat[#flat + 1] = 'pd'
    flat[#flat + 1] = pending
  end
  cards[i - 2] = flat
end
return cjson.encode(cards)
