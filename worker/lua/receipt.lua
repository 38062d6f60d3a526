-- receipt.lua: apply a delivery receipt to the attempt it names, or refuse it.
--
-- KEYS[1]  {ns}:msg:{id}          the message record (hash), with its attempt ledger:
--            attempt            the number of the latest HTTP attempt (0: none yet)
--            a{N}:provider      the provider attempt N went to
--            a{N}:from          the sending number it used
--            a{N}:at_ms         when it was made (written before the HTTP call)
--            a{N}:pmid          the provider's message id, once known
--            a{N}:carrier       the carrier it was sent under (set here if missing)
-- KEYS[2]  {ns}:msg:{id}:h        the record's history (list, capped)
-- KEYS[3]  {ns}:stats             "{campaign}|{status}" -> count (hash)
-- KEYS[4]  {ns}:inflight          texts being sent (zset): left when the text leaves sending
-- KEYS[5]  {ns}:counters          hash: "doubles_evidenced" counts receipts proving a double
-- KEYS[6]  {ns}:awaiting          sent texts -> when their final receipt is overdue (zset):
--                                 a "sent" receipt with a receipt_due_ms field adds the
--                                 text, a final one removes it
--
-- ARGV[1]  now, epoch ms
-- ARGV[2]  the provider whose webhook route the receipt came in on
-- ARGV[3]  the attempt number the receipt names (its callback URL's), or ""
-- ARGV[4]  the provider's message id in the receipt, or ""
-- ARGV[5]  the receipt's status: sent | delivered | undelivered
-- ARGV[6]  the history entry's reason
-- ARGV[7]  history cap (entries kept)
-- ARGV[8..] field, value pairs to set with the change
--
-- The receipt must name a real attempt of this text through this provider:
-- by its attempt number (1 or more), else by the provider's message id, else
-- (a receipt that beat the worker's own write, or a provider that names no
-- attempt) the latest attempt through this provider that has no message id
-- yet. A message id that contradicts the attempt's is refused. A record from
-- before the ledger (no attempt field) is matched by its provider and id.
--
-- A receipt proving that an earlier attempt went out, when a later attempt was
-- made too, is a double: the record is marked possible_double and counted.
--
-- A receipt proves the text was sent: it applies in any state that is not
-- final (sending, queued, held, unconfirmed), so a text waiting for a retry or
-- held behind a breaker is never sent again. A final state is never undone;
-- "unconfirmed" is final for accounting, and evidence still settles it (a
-- "sent" receipt does not reopen a text the receipt timeout ended: the
-- record's unconfirmed_because = receipt_timeout).
--
-- Returns {1, attempt, record...} when applied, {0, current status} when the
-- receipt changes nothing (a duplicate, a final state), {-1} when the message
-- does not exist, {-2, reason} when it names no attempt of this text.

local msg = KEYS[1]
local current = redis.call("HGET", msg, "status")
if not current then
    return {-1}
end
local now, provider, named, pmid, new = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local function attempt_field(n, what)
    return redis.call("HGET", msg, "a" .. n .. ":" .. what) or ""
end

local latest = tonumber(redis.call("HGET", msg, "attempt") or "0") or 0
local n = tonumber(named)
if latest == 0 then
    -- A record from before the attempt ledger.
    local known = redis.call("HGET", msg, "provider_message_id") or ""
    if redis.call("HGET", msg, "provider") ~= provider or (pmid ~= "" and known ~= "" and known ~= pmid) then
        return {-2, "the receipt names no attempt of this text"}
    end
    n = 0
elseif n == nil then
    if pmid ~= "" then
        for i = latest, 1, -1 do
            if attempt_field(i, "pmid") == pmid then n = i break end
        end
    end
    if n == nil then
        for i = latest, 1, -1 do
            if attempt_field(i, "provider") == provider and attempt_field(i, "pmid") == "" then
                n = i
                break
            end
        end
    end
end
if n == nil or n < 1 and latest > 0 or n > latest then
    return {-2, "the receipt names no attempt of this text"}
end
if n > 0 then
    if attempt_field(n, "provider") ~= provider then
        return {-2, "attempt " .. n .. " of this text was not sent through " .. provider}
    end
    local known = attempt_field(n, "pmid")
    if pmid ~= "" and known ~= "" and known ~= pmid then
        return {-2, "the provider message id does not match attempt " .. n}
    end
end

if n > 0 and n < latest and new ~= "undelivered" then
    -- Attempt n went out, and a later attempt was made: a second copy may be out.
    if redis.call("HSETNX", msg, "double_evidence", n) == 1 then
        redis.call("HSET", msg, "possible_double", "1")
        redis.call("HINCRBY", KEYS[5], "doubles_evidenced", 1)
    end
end

local from = {sending = true, queued = true, held = true, unconfirmed = true}
if new ~= "sent" then from.sent = true end
if new == "sent" and current == "unconfirmed"
    and redis.call("HGET", msg, "unconfirmed_because") == "receipt_timeout" then
    -- It was sent and its final receipt is overdue: a late "handed on" says
    -- nothing new and must not reopen a text already ended (and counted) as
    -- unconfirmed; only a final receipt settles it now.
    from.unconfirmed = nil
end
if not from[current] or current == new then
    return {0, current}
end

local fields = {"status", new, "updated_ms", now, "settled_by", "receipt"}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
if n > 0 then
    fields[#fields + 1] = "provider"
    fields[#fields + 1] = provider
    if pmid ~= "" then
        fields[#fields + 1] = "a" .. n .. ":pmid"
        fields[#fields + 1] = pmid
        fields[#fields + 1] = "provider_message_id"
        fields[#fields + 1] = pmid
    end
end
if n > 0 then
    -- The carrier the attempt was sent (and counted) under, kept before a receipt
    -- naming another renames the record's: records from before a{N}:carrier.
    redis.call("HSETNX", msg, "a" .. n .. ":carrier", redis.call("HGET", msg, "carrier") or "unknown")
end
redis.call("HSET", msg, unpack(fields))
local id = string.match(msg, "([^:]+)$")
if current == "sending" then
    redis.call("ZREM", KEYS[4], id)
end
if new == "sent" then
    for i = 8, #ARGV - 1, 2 do
        if ARGV[i] == "receipt_due_ms" and ARGV[i + 1] ~= "" then
            redis.call("ZADD", KEYS[6], ARGV[i + 1], id)
        end
    end
else
    redis.call("ZREM", KEYS[6], id)
end
local why = ARGV[6]
if n > 0 then why = why .. " (attempt " .. n .. ")" end
redis.call("RPUSH", KEYS[2], cjson.encode({at = tonumber(now), from = current, to = new, why = why}))
redis.call("LTRIM", KEYS[2], -tonumber(ARGV[7]), -1)
local campaign = redis.call("HGET", msg, "campaign") or "default"
if current == "held" then
    -- Held texts are also counted by why they are held (see transition.lua).
    local held_for = redis.call("HGET", msg, "held_for") or ""
    if held_for ~= "" then
        redis.call("HINCRBY", KEYS[3], campaign .. "|held:" .. held_for, -1)
        redis.call("HSET", msg, "held_for", "")
    end
end
redis.call("HINCRBY", KEYS[3], campaign .. "|" .. current, -1)
redis.call("HINCRBY", KEYS[3], campaign .. "|" .. new, 1)

local record = redis.call("HGETALL", msg)
table.insert(record, 1, n)
table.insert(record, 1, 1)
return record
