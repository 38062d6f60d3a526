-- ratelimit.lua: reserve one send on several GCRA limiters at once, all or none.
--
-- KEYS[i]   {ns}:rl:{limiter}     string: the limiter's theoretical arrival
--                                  time (TAT), in microseconds since the epoch
--           (a daily cap's key is a counter that expires at its reset)
-- KEYS[n+i] {ns}:rl:used:{limiter} hash: segments charged per minute (for
--                                  `sendq limits status`), kept an hour
--           (n = #KEYS / 2: the limiter keys come first, then their use keys)
--
-- ARGV[1]   now in microseconds, or "" to use the Redis server's clock (TIME),
--           so workers on different hosts share one clock
-- ARGV[2]   cost: segments this text takes on every limiter
-- ARGV[3]   the longest wait (us) reserved on every limiter; a longer wait is
--           reserved only on the limiters that cause it, "-1" to only ask
-- ARGV[3 + 3i - 2 .. 3 + 3i] for KEYS[i], i <= n:
--           kind ("gcra" or "cap"),
--           gcra: emission interval per segment (us), burst tolerance (us)
--           cap:  the cap (segments), its reset time (us)
--
-- Returns {wait_us, reserved (0/1), index of the binding limiter (1-based, 0 = none),
--          a string of "0"/"1" per key: which limiters hold the reservation}.
-- wait_us is 0 when the text may go now. A GCRA wait is a reservation: the
-- limiters that hold it already count the text at now + wait_us.
--   A short wait (<= ARGV[3]) is held on every limiter: the caller sleeps and sends.
--   A long wait is held only on the limiters that are the bottleneck; charging
--   a loose limiter (the account, say) for a slot far ahead would block every
--   other text on it until then. The caller asks the other limiters again at
--   the slot, leaving out those that hold it.
-- A daily cap is never reserved across its reset: the caller asks again after it.

local now
if ARGV[1] == "" then
    local t = redis.call("TIME")
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
    now = tonumber(ARGV[1])
end
local cost = tonumber(ARGV[2])
local hold_all_us = tonumber(ARGV[3])

local n = #KEYS / 2
local start, binding = now, 0
local tats, earliest = {}, {}
for i = 1, n do
    local kind = ARGV[3 + 3 * i - 2]
    local a, b = tonumber(ARGV[3 + 3 * i - 1]), tonumber(ARGV[3 + 3 * i])
    if kind == "gcra" then
        local tat = tonumber(redis.call("GET", KEYS[i]) or now)
        if tat < now then tat = now end
        tats[i] = tat
        -- The earliest moment this limiter admits `cost` more segments.
        earliest[i] = tat + cost * a - b
        if earliest[i] > start then start, binding = earliest[i], i end
    else
        local used = tonumber(redis.call("GET", KEYS[i]) or 0)
        if used + cost > a then
            -- Over the cap until it resets: nothing is reserved.
            return {b - now, 0, i, string.rep("0", n)}
        end
    end
end

local wait = start - now
if wait > 0 and hold_all_us < 0 then
    return {wait, 0, binding, string.rep("0", n)}
end

local held = {}
local minute = math.floor(math.max(start, now) / 60000000)
for i = 1, n do
    local kind = ARGV[3 + 3 * i - 2]
    local a, b = tonumber(ARGV[3 + 3 * i - 1]), tonumber(ARGV[3 + 3 * i])
    local hold = wait <= hold_all_us or (earliest[i] ~= nil and earliest[i] - now > hold_all_us)
    if not hold then
        held[i] = "0"
    elseif kind == "gcra" then
        local tat = tats[i]
        if tat < start then tat = start end
        local new_tat = tat + cost * a
        -- Keep the key only while it still constrains anyone.
        redis.call("SET", KEYS[i], new_tat, "PX", math.ceil((new_tat - now) / 1000) + 1000)
        redis.call("HINCRBY", KEYS[n + i], minute, cost)
        redis.call("PEXPIRE", KEYS[n + i], 3600000)
        held[i] = "1"
    else
        redis.call("INCRBY", KEYS[i], cost)
        redis.call("PEXPIREAT", KEYS[i], math.ceil(b / 1000))
        redis.call("HINCRBY", KEYS[n + i], minute, cost)
        redis.call("PEXPIRE", KEYS[n + i], 3600000)
        held[i] = "1"
    end
end
if wait < 0 then wait = 0 end
return {wait, wait > 0 and 1 or 0, binding, table.concat(held)}
