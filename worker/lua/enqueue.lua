-- enqueue.lua: accept one text and queue it for dramatiq, atomically.
--
-- KEYS[1]  {ns}:idem:{key}        idempotency key -> message id ("" key: unused)
-- KEYS[2]  {ns}:msg:{id}          the message record (hash)
-- KEYS[3]  {ns}:msg:{id}:h        the record's history (list)
-- KEYS[4]  {ns}:stats             "{campaign}|{status}" -> count (hash)
-- KEYS[5]  dramatiq:{queue}        dramatiq's queue (list of redis message ids)
-- KEYS[6]  dramatiq:{queue}.msgs   dramatiq's message bodies (hash)
-- KEYS[7]  {ns}:carrier:{to}       the recipient's cached carrier, copied into the
--                                  record so the worker need not look it up
-- KEYS[8]  {ns}:optout:{org}       the campaign's organisation's opt-out list (hash)
-- KEYS[9]  {ns}:expiry             texts with a deadline -> it, epoch ms (zset)
--
-- ARGV[1]  message id
-- ARGV[2]  "1" when KEYS[1] is a real idempotency key, else "0"
-- ARGV[3]  now, epoch ms
-- ARGV[4]  campaign
-- ARGV[5]  dramatiq redis message id
-- ARGV[6]  the encoded dramatiq message
-- ARGV[7]  the history entry (JSON)
-- ARGV[8]  the idempotency key's TTL in seconds
-- ARGV[9]  the number to look for on the opt-out list, or "" to skip the check
--          (a STOP's own confirmation reply)
-- ARGV[10] the text's deadline, epoch ms (send_before_ms), or ""
-- ARGV[11] the history entry (JSON) of a text suppressed here
-- ARGV[12..] field, value pairs of the record
--
-- Returns {message id, 1} when queued, {message id, 2} when the recipient is on
-- the opt-out list (the text is recorded "suppressed" and never queued), or,
-- for a key already used,
-- {existing id, 0, to, body, enqueue_run, enqueue_index} as the existing record
-- holds them ("" where it holds none), so the producer can tell a true
-- duplicate (the same text again) from a conflict (another text under the key).
-- The record and the dramatiq message are written together, so a text is never
-- recorded without being queued, nor queued without a record.

-- What the record of an existing message holds. Its key is KEYS[2] with the id
-- swapped: not declared in KEYS, which only a Redis Cluster would mind, and
-- sendq keeps each namespace on one server.
local function held(existing)
    local new_id = ARGV[1]
    local record = string.sub(KEYS[2], 1, #KEYS[2] - #new_id) .. existing
    local got = redis.call("HMGET", record, "to", "body", "enqueue_run", "enqueue_index")
    for i = 1, 4 do
        if not got[i] then got[i] = "" end
    end
    return got
end

local msg_id = ARGV[1]
if ARGV[2] == "1" then
    local existing = redis.call("GET", KEYS[1])
    if existing then
        local got = held(existing)
        return {existing, 0, got[1], got[2], got[3], got[4]}
    end
    redis.call("SET", KEYS[1], msg_id, "EX", ARGV[8])
end

local fields = {}
for i = 12, #ARGV do
    fields[#fields + 1] = ARGV[i]
end
local carrier = redis.call("GET", KEYS[7])
if carrier then
    fields[#fields + 1] = "carrier"
    fields[#fields + 1] = carrier
end
if ARGV[9] ~= "" and redis.call("HEXISTS", KEYS[8], ARGV[9]) == 1 then
    redis.call("HSET", KEYS[2], "status", "suppressed", "created_ms", ARGV[3],
        "updated_ms", ARGV[3], "attempts", 0, "reason", "opted out", unpack(fields))
    redis.call("RPUSH", KEYS[3], ARGV[11])
    redis.call("HINCRBY", KEYS[4], ARGV[4] .. "|suppressed", 1)
    return {msg_id, 2}
end
redis.call("HSET", KEYS[2], "status", "queued", "created_ms", ARGV[3], "updated_ms", ARGV[3],
    "attempts", 0, unpack(fields))
if ARGV[10] ~= "" then
    redis.call("ZADD", KEYS[9], ARGV[10], msg_id)
end
redis.call("RPUSH", KEYS[3], ARGV[7])
redis.call("HINCRBY", KEYS[4], ARGV[4] .. "|queued", 1)
redis.call("HSET", KEYS[6], ARGV[5], ARGV[6])
redis.call("RPUSH", KEYS[5], ARGV[5])
return {msg_id, 1}
