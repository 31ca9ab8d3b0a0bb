-- Read a batch of one shard's cards in one call: every field of each card's hash, as one JSON
-- document (parsing one string costs the client far less than a reply of ten items per card).
--
-- KEYS[1]  the tag's outbox key: routes the call to the tag's slot in Redis Cluster (not read)
-- ARGV[1]  card key prefix, e.g. "sw:{7}:c:" (a card's key is this .. iccid)
-- ARGV[2..] the cards' ICCIDs
--
-- Returns a JSON array with, per ICCID in order, the card's fields and values flat
-- ([] or {} for a card that does not exist).
local prefix = ARGV[1]
local cards = {}
for i = 2, #ARGV do
  cards[i - 1] = redis.call('HGETALL', prefix .. ARGV[i])
end
return cjson.encode(cards)
