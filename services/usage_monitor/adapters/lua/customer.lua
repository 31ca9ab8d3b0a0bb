-- Apply blacklist entries to one customer's hash, then return the debt and the held cards.
-- Every entry is idempotent, so the outbox may deliver it more than once:
--   {i, v, owed}  a card cancelled for debt now owes `owed` (kept only if `v`, the card's
--                 version, is newer than what is stored: late duplicates change nothing)
--   {pay, amount} a payment made through a held card (once per event id)
--   {hold}        a card held for the debt;  {release}  no longer held
--
-- KEYS[1]  the customer hash;  ARGV[1]  JSON list of entries
-- Returns {debt, held iccid, ...}: debt = what cancelled cards owe minus the payments.
local h = KEYS[1]
for _, e in ipairs(cjson.decode(ARGV[1])) do
  if e.i then
    local field = 'c:' .. e.i
    local cur = redis.call('HGET', h, field)
    local curv = cur and tonumber(string.match(cur, '^(%d+):')) or -1
    if e.v > curv then
      redis.call('HSET', h, field, string.format('%d:%d', e.v, e.owed))
    end
  elseif e.pay then
    redis.call('HSETNX', h, 'p:' .. e.pay, e.amount)
  elseif e.hold then
    redis.call('HSET', h, 'h:' .. e.hold, 1)
  elseif e.release then
    redis.call('HDEL', h, 'h:' .. e.release)
  end
end
local debt, held = 0, {}
local all = redis.call('HGETALL', h)
for j = 1, #all, 2 do
  local f, v = all[j], all[j + 1]
  local kind = string.sub(f, 1, 2)
  if kind == 'c:' then
    debt = debt + tonumber(string.match(v, ':(%-?%d+)$'))
  elseif kind == 'p:' then
    debt = debt - tonumber(v)
  elseif kind == 'h:' then
    held[#held + 1] = string.sub(f, 3)
  end
end
if debt < 0 then
  debt = 0
end
local out = {debt}
for _, iccid in ipairs(held) do
  out[#out + 1] = iccid
end
return out
