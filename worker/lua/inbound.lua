-- inbound.lua: record one inbound text, linked to the last text sent to that person
-- from that number, unless the provider's message id was recorded already.
--
-- KEYS[1]  {ns}:inbound:seen:{provider}:{pmid}  the first inbound id for this provider
--                                               message id (unused when ARGV[3] is 0)
-- KEYS[2]  {ns}:last:{our number}:{person}      the last outbound text's message id
-- KEYS[3]  {ns}:inbound:{id}                    the new record (hash)
-- KEYS[4]  {ns}:inbound                         every inbound id -> received_ms (zset)
-- KEYS[5]  {ns}:inbound:from:{person}           the person's inbound ids (zset)
--
-- ARGV[1]  the new inbound id
-- ARGV[2]  received, epoch ms
-- ARGV[3]  how long a provider message id is remembered, s; 0: the text has none
-- ARGV[4]  the prefix of message records' keys, "{ns}:msg:"
-- ARGV[5..] field, value pairs of the record
--
-- Returns {1, record as field, value pairs} for a new record, or {0, the first
-- record's pairs} when the provider message id was already recorded (a provider
-- retrying its webhook). The linked message's record is read by a key built from
-- ARGV[4], not declared in KEYS, which only a Redis Cluster would mind; sendq
-- keeps each namespace on one server (enqueue.lua does the same).

local seen, last, record, index, by_person = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, received, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])

if ttl > 0 then
    local first = redis.call("GET", seen)
    if first then
        local first_record = string.sub(record, 1, #record - #id) .. first
        local got = redis.call("HGETALL", first_record)
        if #got > 0 then
            return {0, got}
        end
    end
end

local fields = {}
for i = 5, #ARGV, 2 do
    fields[ARGV[i]] = ARGV[i + 1]
end
local message_id = redis.call("GET", last)
if message_id then
    local record = ARGV[4] .. message_id
    local campaign, carrier, attempt = unpack(redis.call("HMGET", record, "campaign", "carrier", "attempt"))
    fields["message_id"] = message_id
    if campaign then fields["campaign"] = campaign end
    if carrier and carrier ~= "" then fields["carrier"] = carrier end
    -- When the linked text was sent (its latest attempt): the watch counts a reply
    -- with the texts sent at that time.
    if attempt then
        local sent, counted_under = unpack(redis.call(
            "HMGET", record, "a" .. attempt .. ":at_ms", "a" .. attempt .. ":carrier"))
        if sent then fields["message_sent_ms"] = sent end
        -- The carrier that attempt was counted under, which a receipt may since
        -- have renamed in the record: the watch counts the reply there too.
        if counted_under then fields["message_carrier"] = counted_under end
    end
end
-- The person's carrier as the inbound webhook named it, where the linked text had none.
if not fields["carrier"] and fields["inbound_carrier"] then
    fields["carrier"] = fields["inbound_carrier"]
end

local pairs_out = {}
for k, v in pairs(fields) do
    table.insert(pairs_out, k)
    table.insert(pairs_out, v)
end
redis.call("HSET", record, unpack(pairs_out))
redis.call("ZADD", index, received, id)
redis.call("ZADD", by_person, received, id)
if ttl > 0 then
    redis.call("SET", seen, id, "EX", ttl)
end
return {1, pairs_out}
