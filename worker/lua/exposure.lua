-- exposure.lua: the exposure limit of one carrier x campaign: how many of its
-- texts may be out with no final receipt yet (worker/exposure.py).
--
-- KEYS[1]  {ns}:exposure:{name}       zset: the texts holding a slot: message id ->
--                                      when it was taken, epoch ms; expires when
--                                      no slot has been taken for stale_ms
-- KEYS[2]  {ns}:exposure:{name}:cap   hash: the adaptive cap (adaptive only)
--            cap          the cap now (a float: congestion avoidance adds fractions)
--            ssthresh     slow start's end: below it each delivery adds `growth`,
--                         above it growth / floor(cap) (`growth` per round of receipts)
--            recover_ms   when the cap last shrank (or was reset): a loss of a text
--                         taken before then is of a round already paid for
--          expires after idle_ms without a slot taken: the next text starts over
-- KEYS[3]  {ns}:exposures              set: every name ever limited (the keeper, status)
-- KEYS[4]  {ns}:hold:exposure:{name}   list: texts waiting for a slot, oldest first
--                                      (acquire: is anyone waiting; grant: whom to let in)
-- KEYS[5..] grant only: the message records (hash) of ARGV[6..]'s held ids, in order
--
-- ARGV[1]  command: acquire | release | grant | reset | status | sweep
-- ARGV[2]  now, epoch ms, or "" for the Redis server's clock
-- ARGV[3]  the name (carrier:campaign), for the names set
-- ARGV[4]  the policy, space separated: max adaptive(0/1) start floor growth shrink
--          stale_ms idle_ms regrant_ms (worker/exposure.py ExposurePolicy.argv)
-- ARGV[5..] the command's own:
--   acquire  message id, force ("1": a breaker's probe, taken even when full)
--   release  message id, outcome: delivered | rejected | overdue | not_sent | ended
--   grant    the held_for value of a text held for room ("exposure"), then the
--            held ids at the head of KEYS[4], oldest first (one per KEYS[5..])
--   reset    "1" to forget the texts out as well, "0" to keep them
--   status, sweep  (none)
--
-- acquire: a text already holding a slot keeps it (a retried or redelivered
--   text never takes two), its clock restarted. Otherwise it takes one if the
--   texts out are fewer than the cap and none is waiting on KEYS[4] (first come,
--   first served: a newcomer does not jump the texts held for room). When full,
--   slots older than stale_ms are dropped first, as overdue.
-- release: only a text holding a slot changes anything, so a duplicate receipt,
--   or one that comes after its slot was dropped, is a no-op. delivered grows the
--   cap; rejected and overdue shrink it (once per round, see recover_ms);
--   not_sent and ended just give the slot back.
-- grant: slots for the oldest held texts, as many as there is room, for the
--   hold keeper to release. Ids whose record is no longer held for exposure are
--   dropped from KEYS[4]. A held id that holds a slot already was granted by a
--   keeper whose release is under way: skipped, unless that grant is older than
--   regrant_ms (that keeper was lost: it is granted again). Granted ids always
--   lead KEYS[4] (a grant stops at the first id it cannot grant), so each keeper
--   releasing as many as it was granted, from the head, releases granted texts only.
--
-- Returns:
--   acquire  {taken 0/1, texts out, cap, texts waiting}
--   release  {released 0/1, texts out, cap, 0}
--   grant    the granted ids, oldest first
--   reset, status, sweep  {texts out, cap, dropped as overdue by this call,
--                          oldest slot's time or 0}

local slots, cap_key, names_key, hold_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local command, name = ARGV[1], ARGV[3]

local now
if ARGV[2] == "" then
    local t = redis.call("TIME")
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
    now = tonumber(ARGV[2])
end

local p = {}
for v in string.gmatch(ARGV[4], "%S+") do p[#p + 1] = tonumber(v) end
local max, adaptive, start, floor = p[1], p[2] == 1, p[3], p[4]
local growth, shrink, stale_ms, idle_ms, regrant_ms = p[5], p[6], p[7], p[8], p[9]

-- The cap's state: fixed at max, or the adaptive one, clamped to today's policy.
local cap, ssthresh, recover = max, max, 0
if adaptive then
    local raw = redis.call("HMGET", cap_key, "cap", "ssthresh", "recover_ms")
    cap = tonumber(raw[1]) or start
    ssthresh = tonumber(raw[2]) or max
    recover = tonumber(raw[3]) or 0
    cap = math.max(floor, math.min(cap, max))
    ssthresh = math.min(ssthresh, max)
end
local changed = false

local function save()
    if adaptive and changed then
        redis.call("HSET", cap_key, "cap", tostring(cap), "ssthresh", tostring(ssthresh),
            "recover_ms", recover)
        redis.call("PEXPIRE", cap_key, idle_ms)
    end
end

local function whole(x)
    return math.floor(x + 1e-9)
end

-- A loss (a rejection, an overdue receipt) of a text taken at `taken_ms`.
local function lose(taken_ms)
    if not adaptive or taken_ms <= recover then
        return
    end
    cap = math.max(floor, cap * shrink)
    ssthresh = cap
    recover = now
    changed = true
end

local function deliver()
    if not adaptive or cap >= max then
        return
    end
    if cap < ssthresh then
        cap = cap + growth
    else
        -- Per whole slot, so a full round of deliveries adds `growth` exactly.
        cap = cap + growth / whole(cap)
    end
    cap = math.min(cap, max)
    changed = true
end

-- Drop the slots older than stale_ms, as overdue; how many.
local function sweep()
    local cutoff = now - stale_ms
    local newest = redis.call("ZREVRANGEBYSCORE", slots, cutoff, "-inf", "WITHSCORES", "LIMIT", 0, 1)
    if #newest == 0 then
        return 0
    end
    lose(tonumber(newest[2]))
    return redis.call("ZREMRANGEBYSCORE", slots, "-inf", cutoff)
end

local function take(id)
    redis.call("ZADD", slots, now, id)
    redis.call("PEXPIRE", slots, stale_ms)
    if adaptive then
        -- In use: not idle. (A cap never written is still `start`, as it should be.)
        redis.call("PEXPIRE", cap_key, idle_ms)
    end
end

local function summary(dropped)
    local oldest = redis.call("ZRANGE", slots, 0, 0, "WITHSCORES")
    return {redis.call("ZCARD", slots), whole(cap), dropped, tonumber(oldest[2]) or 0}
end

if command == "acquire" then
    local id, force = ARGV[5], ARGV[6] == "1"
    redis.call("SADD", names_key, name)
    if redis.call("ZSCORE", slots, id) then
        take(id)
        save()
        return {1, redis.call("ZCARD", slots), whole(cap), 0}
    end
    local out = redis.call("ZCARD", slots)
    if out >= whole(cap) and not force then
        sweep()
        out = redis.call("ZCARD", slots)
    end
    local waiting = redis.call("LLEN", hold_key)
    if force or (out < whole(cap) and waiting == 0) then
        take(id)
        save()
        return {1, out + 1, whole(cap), waiting}
    end
    save()
    return {0, out, whole(cap), waiting}
end

if command == "release" then
    local id, outcome = ARGV[5], ARGV[6]
    local taken = redis.call("ZSCORE", slots, id)
    if not taken then
        return {0, redis.call("ZCARD", slots), whole(cap), 0}
    end
    redis.call("ZREM", slots, id)
    if outcome == "delivered" then
        deliver()
    elseif outcome == "rejected" or outcome == "overdue" then
        lose(tonumber(taken))
    end
    save()
    return {1, redis.call("ZCARD", slots), whole(cap), 0}
end

if command == "grant" then
    sweep()
    local room = whole(cap) - redis.call("ZCARD", slots)
    local held_for, granted = ARGV[5], {}
    for i = 6, #ARGV do
        local id, record = ARGV[i], KEYS[i - 1]
        local st = redis.call("HMGET", record, "status", "held_for")
        local slot = redis.call("ZSCORE", slots, id)
        if st[1] ~= "held" or st[2] ~= held_for then
            -- Expired, ended or moved while it waited: no longer this list's.
            redis.call("LREM", hold_key, 1, id)
        elseif slot then
            if tonumber(slot) < now - regrant_ms then
                take(id)
                granted[#granted + 1] = id
            end
        elseif room > 0 then
            take(id)
            room = room - 1
            granted[#granted + 1] = id
        else
            break
        end
    end
    save()
    return granted
end

if command == "reset" then
    if ARGV[5] == "1" then
        redis.call("DEL", slots)
    end
    if adaptive then
        cap, ssthresh, recover, changed = start, max, now, true
    end
    save()
    return summary(0)
end

if command == "sweep" then
    local dropped = sweep()
    save()
    return summary(dropped)
end

if command == "status" then
    return summary(0)
end

return redis.error_reply("exposure.lua: unknown command " .. tostring(command))
