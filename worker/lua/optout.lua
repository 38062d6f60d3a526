-- optout.lua: one change to an organisation's opt-out list or review list, and its
-- audit entry, atomically: no change without its record, no record without the change.
--
-- KEYS[1]  {ns}:optout:{org}         hash: e164 -> JSON entry {at_ms, source, by, cause}
-- KEYS[2]  {ns}:optout:review:{org}  hash: e164 -> JSON flag {at_ms, source, by, cause,
--                                    body, rule}
-- KEYS[3]  {ns}:optout:audit         stream: every change of every organisation's lists
--
-- ARGV[1]  op: "add" | "import" | "remove" | "flag" | "dismiss" | "confirm"
-- ARGV[2]  organisation (for the audit entry)
-- ARGV[3]  number, E.164
-- ARGV[4]  now, epoch ms
-- ARGV[5]  source: inbound | provider_answer | receipt | operator | import
-- ARGV[6]  by: who or what made the change (an operator, "inbound", "import:FILE")
-- ARGV[7]  cause, a JSON object (the inbound text, the provider answer, the reason)
-- ARGV[8]  for "flag": a JSON object {body, rule} kept with the flag; else "{}"
-- ARGV[9]  the audit stream's approximate length cap
--
-- Returns 1 when the change was made, 0 when there was nothing to change:
--   add, import   1: newly opted out; 0: already opted out. Either way a review flag
--                 of the number is settled (an opt-out taken answers it).
--   remove        1: was opted out, now is not; 0: was not. A review flag is cleared
--                 too: the person asked for texts after whatever was flagged.
--   flag          1: newly flagged; 0: already flagged, or already opted out (nothing
--                 to review). A second flag of the same number keeps the first.
--   dismiss       1: a flag was dropped; 0: the number was not flagged.
--   confirm       1: the flag became an opt-out, its cause copied; 0: it was flagged
--                 and already opted out (the flag is dropped); -1: not flagged.
-- An audit entry is written whenever either list changed, and only then.

local list, review, audit = KEYS[1], KEYS[2], KEYS[3]
local op, org, number, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local source, by, cause = ARGV[5], ARGV[6], cjson.decode(ARGV[7])

local function entry(with_cause)
    return cjson.encode({at_ms = now, source = source, by = by, cause = with_cause})
end

local function record(what, extra)
    local fields = {"op", what, "org", org, "number", number, "at_ms", ARGV[4],
                    "source", source, "by", by, "cause", cjson.encode(cause)}
    for k, v in pairs(extra or {}) do
        table.insert(fields, k)
        table.insert(fields, v)
    end
    redis.call("XADD", audit, "MAXLEN", "~", ARGV[9], "*", unpack(fields))
end

if op == "add" or op == "import" then
    local added = redis.call("HSETNX", list, number, entry(cause))
    local settled = redis.call("HDEL", review, number)
    if added == 1 or settled == 1 then
        record(op, {added = tostring(added), review_settled = tostring(settled)})
    end
    return added
elseif op == "remove" then
    local removed = redis.call("HDEL", list, number)
    local cleared = redis.call("HDEL", review, number)
    if removed == 1 or cleared == 1 then
        record(op, {removed = tostring(removed), review_cleared = tostring(cleared)})
    end
    return removed
elseif op == "flag" then
    if redis.call("HEXISTS", list, number) == 1 or redis.call("HEXISTS", review, number) == 1 then
        return 0
    end
    local flag = cjson.decode(ARGV[8])
    flag.at_ms, flag.source, flag.by, flag.cause = now, source, by, cause
    redis.call("HSET", review, number, cjson.encode(flag))
    record(op, {rule = flag.rule or ""})
    return 1
elseif op == "dismiss" then
    if redis.call("HDEL", review, number) == 0 then
        return 0
    end
    record(op)
    return 1
elseif op == "confirm" then
    local raw = redis.call("HGET", review, number)
    if not raw then
        return -1
    end
    -- The opt-out's cause is the flagged text, and the operator's word on it.
    local flagged = cjson.decode(raw).cause or {}
    for k, v in pairs(flagged) do
        if cause[k] == nil then cause[k] = v end
    end
    local added = redis.call("HSETNX", list, number, entry(cause))
    redis.call("HDEL", review, number)
    record(op, {added = tostring(added)})
    return added
end
return redis.error_reply("optout.lua: unknown op " .. tostring(op))
