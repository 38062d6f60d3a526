-- transition.lua: compare-and-set one message's status.
--
-- KEYS[1]  {ns}:msg:{id}          the message record (hash)
-- KEYS[2]  {ns}:msg:{id}:h        the record's history (list, capped)
-- KEYS[3]  {ns}:stats             "{campaign}|{status}" -> count (hash), and
--          "{campaign}|held:{held_for}" -> the texts held now for that reason
--          (record field held_for: "quiet_hours", "carrier"); see below
-- KEYS[4]  a list to push onto: dramatiq:{queue} (a requeue) or
--          {ns}:hold:{carrier}:{campaign} (a hold); unused when ARGV[7] is ""
-- KEYS[5]  dramatiq:{queue}.msgs   dramatiq's message bodies (requeue only)
-- KEYS[6]  {ns}:inflight           ids of texts being sent -> their lease's end (zset);
--          kept here so a dead worker's texts are found without scanning
-- KEYS[7]  {ns}:awaiting           sent texts -> when their final receipt is overdue
--          (zset): a change to "sent" with a receipt_due_ms field adds the text
--
-- ARGV[1]  allowed current statuses, space separated ("*" for any non-final);
--          "status:reason" allows a status only with that held_for field
-- ARGV[2]  the new status
-- ARGV[3]  now, epoch ms
-- ARGV[4]  the history entry's reason
-- ARGV[5]  history cap (entries kept)
-- ARGV[6]  "1" to return the whole record on success
-- ARGV[7]  what to push onto KEYS[4] (a dramatiq redis message id, or the
--          message id for a hold), or "" to push nothing
-- ARGV[8]  the encoded dramatiq message for KEYS[5], or "" (a hold)
-- ARGV[9]  the fence: the lease id the caller holds (record field lease_id),
--          or "" for a caller that holds none (a receipt, a release, a claim)
-- ARGV[10..] field, value pairs to set with the change
--
-- Returns {1, record...} (or {1}) on success, {0, current status} when the
-- current status is not allowed, {-1} when the message does not exist, and
-- {0, current status, "stale"} when the fence names a lease that is no longer
-- the record's: a worker that lost its lease changes nothing, and what it
-- reports is kept in the history as late evidence.
-- A text already sending is given a new lease (ARGV[10..] sets lease_until_ms:
-- a take-over) only when its lease has run out: two workers that both find a
-- dead worker's text get one take-over between them, not two sends. The lease's
-- holder (a matching fence) may extend it at any time.
-- The status change, its history entry, the stats and (for retries) the
-- requeue happen together or not at all.
-- Held-for counts: a text entering held with a held_for among ARGV[10..] counts
-- under that reason; one leaving held is uncounted under the held_for its record
-- had before the change (held -> held moves the count if the reason changed).
-- A text entering held with no held_for given has any earlier hold's reason
-- cleared from its record, so a stale reason is never uncounted.

local current = redis.call("HGET", KEYS[1], "status")
if not current then
    return {-1}
end

local new = ARGV[2]
local now = ARGV[3]
local fence = ARGV[9]
if fence ~= "" and redis.call("HGET", KEYS[1], "lease_id") ~= fence then
    local late = cjson.encode({at = tonumber(now), from = current, to = current,
        why = "late result of an expired lease (" .. fence .. "), ignored: " .. ARGV[4]})
    redis.call("RPUSH", KEYS[2], late)
    redis.call("LTRIM", KEYS[2], -tonumber(ARGV[5]), -1)
    return {0, current, "stale"}
end

local allowed = false
for s in string.gmatch(ARGV[1], "%S+") do
    -- "held:quiet_hours": held, and for that reason (a timed hold whose own message
    -- has come), never a carrier's hold, whose texts leave only by release.
    local status, reason = string.match(s, "^([^:]+):(.+)$")
    if status then
        if status == current and redis.call("HGET", KEYS[1], "held_for") == reason then
            allowed = true
            break
        end
    elseif s == current then
        allowed = true
        break
    end
end
if not allowed then
    return {0, current}
end

if current == "sending" and new == "sending" and fence == "" then
    for i = 10, #ARGV - 1, 2 do
        if ARGV[i] == "lease_until_ms" then
            local held = tonumber(redis.call("HGET", KEYS[1], "lease_until_ms") or "0") or 0
            if held > tonumber(now) then
                return {0, current}
            end
        end
    end
end
local campaign = redis.call("HGET", KEYS[1], "campaign") or "default"
local was_for = ""
if current == "held" then
    was_for = redis.call("HGET", KEYS[1], "held_for") or ""
end
local given_for = nil
for i = 10, #ARGV - 1, 2 do
    if ARGV[i] == "held_for" then given_for = ARGV[i + 1] end
end
local now_for = ""
if new == "held" then
    now_for = given_for or (current == "held" and was_for) or ""
end
local fields = {"status", new, "updated_ms", now}
for i = 10, #ARGV do
    fields[#fields + 1] = ARGV[i]
end
redis.call("HSET", KEYS[1], unpack(fields))
if new == "held" and current ~= "held" and given_for == nil then
    redis.call("HDEL", KEYS[1], "held_for")
end
local id = string.match(KEYS[1], "([^:]+)$")
if new == "sending" then
    redis.call("HINCRBY", KEYS[1], "attempts", 1)
    local lease = redis.call("HGET", KEYS[1], "lease_until_ms") or now
    redis.call("ZADD", KEYS[6], lease, id)
elseif current == "sending" then
    redis.call("ZREM", KEYS[6], id)
end
if new == "sent" then
    for i = 10, #ARGV - 1, 2 do
        if ARGV[i] == "receipt_due_ms" and ARGV[i + 1] ~= "" then
            redis.call("ZADD", KEYS[7], ARGV[i + 1], id)
        end
    end
elseif current == "sent" then
    redis.call("ZREM", KEYS[7], id)
end

local entry = cjson.encode({at = tonumber(now), from = current, to = new, why = ARGV[4]})
redis.call("RPUSH", KEYS[2], entry)
redis.call("LTRIM", KEYS[2], -tonumber(ARGV[5]), -1)

if current ~= new then
    redis.call("HINCRBY", KEYS[3], campaign .. "|" .. current, -1)
    redis.call("HINCRBY", KEYS[3], campaign .. "|" .. new, 1)
end
if was_for ~= now_for then
    if was_for ~= "" then redis.call("HINCRBY", KEYS[3], campaign .. "|held:" .. was_for, -1) end
    if now_for ~= "" then redis.call("HINCRBY", KEYS[3], campaign .. "|held:" .. now_for, 1) end
end

if ARGV[7] ~= "" then
    if ARGV[8] ~= "" then redis.call("HSET", KEYS[5], ARGV[7], ARGV[8]) end
    redis.call("RPUSH", KEYS[4], ARGV[7])
end

if ARGV[6] == "1" then
    local record = redis.call("HGETALL", KEYS[1])
    table.insert(record, 1, 1)
    return record
end
return {1}
