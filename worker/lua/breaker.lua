-- breaker.lua: a circuit breaker shared by every worker, for a provider or a
-- carrier x campaign.
--
-- KEYS[1]  {ns}:breaker:{kind}:{name}     hash: the breaker's state
--            state        closed | open | half_open | paused
--            since_ms     when it entered that state
--            cooldown_ms  how long "open" lasts before probing
--            reopens      re-opens since it last stayed closed
--            probes       probes admitted in this probe round
--            probe_ok     probes that succeeded in this half-open spell
--            round_ms     when this probe round began (missing: since_ms)
--            probe_timeout_ms  the policy's probe timeout when the round began,
--                         for callers without the policy (HoldKeeper's claim)
--            claimed_ms   when HoldKeeper last claimed probe texts (see claim)
--            consecutive  failures in a row
--            why, by      the last transition's reason and author
--            resumed_ms   when an operator last resumed it (a close by probes
--                         leaves it), so the deliverability watch can tell the two
-- KEYS[2]  {ns}:breaker:{kind}:{name}:w   hash: sliding window by time,
--            "{bucket}:n" calls and "{bucket}:f" failure weight (x full_weight),
--            "{bucket}:c:{code}" failing calls (weight > 0) by code, so an
--            automatic open can say which codes tripped it
-- KEYS[3]  {ns}:audit                      stream: every transition
-- KEYS[4]  (optional, admit only) a wider breaker's state hash, e.g. a
--          carrier's "all campaigns" breaker: while it is paused, or open
--          within its cool-down, nothing under it is admitted either
--
-- ARGV[1]  command: admit | record | pause | resume | claim | blocks | status
-- ARGV[2]  now, epoch ms
-- ARGV[3]  breaker kind ("provider" / "carrier"), for the audit entry
-- ARGV[4]  breaker name, for the audit entry
-- ARGV[5]  policy, space separated: window_ms bucket_ms min_calls
--          rate_milli consecutive cooldown_ms cooldown_max_ms probes
--          probe_timeout_ms full_weight (a failure's weight; worker/breaker.py
--          FAILURE_WEIGHT is its one source)
-- ARGV[6..] command arguments:
--   admit   (none)
--   record  weight (0 success, full_weight failure, between: ambiguous), code,
--           count (calls this record stands for; workers batch successes)
--   pause   who, reason
--   resume  who, reason
--   claim   (none): how many held texts HoldKeeper may release as probes now,
--           returned as the first value; at most one claim per probe round
--   blocks  (none): is this breaker, as a carrier-wide one, holding every
--           campaign under it now? Returns {0/1, "paused" | "open" | ""}
--   status  (none): the window's totals, {calls, failure weight}
--
-- Probe rounds: half-open admits `probes` calls, then none until they report.
-- A probe may never report (deferred, crashed worker, lost receipt), so once
-- a round is probe_timeout_ms old with every probe out, the next admit starts
-- a new round. Silent probes count neither as failures nor as successes.
--
-- Returns {allowed or changed (0/1), state, retry_at_ms, transition or "",
-- the transition's reason or ""}; claim returns {texts to release, state, 0, ""}.

local state_key, window_key, audit_key = KEYS[1], KEYS[2], KEYS[3]
local command, now = ARGV[1], tonumber(ARGV[2])
local kind, name = ARGV[3], ARGV[4]
local p = {}
for v in string.gmatch(ARGV[5], "%S+") do p[#p + 1] = tonumber(v) end
local window_ms, bucket_ms, min_calls, rate_milli = p[1], p[2], p[3], p[4]
local consecutive_max, cooldown_ms, cooldown_max_ms, probes_max = p[5], p[6], p[7], p[8]
-- Both come from worker/breaker.py (Policy.argv): no constant lives here twice.
local probe_timeout_ms, full_weight = p[9], p[10]

local s = redis.call("HGETALL", state_key)
local st = {}
for i = 1, #s, 2 do st[s[i]] = s[i + 1] end
local state = st.state or "closed"

-- The reason of this call's transition, returned with it (see reply).
local moved_why = ""

local function move(to, who, why, extra)
    moved_why = why
    local fields = {"state", to, "since_ms", now, "why", why, "by", who}
    for i = 1, #extra do fields[#fields + 1] = extra[i] end
    redis.call("HSET", state_key, unpack(fields))
    redis.call("XADD", audit_key, "MAXLEN", "~", 100000, "*", "kind", kind, "name", name,
        "from", state, "to", to, "who", who, "why", why, "at_ms", now)
    local from = state
    state = to
    return from .. ">" .. to
end

-- {allowed or count, state, retry_at_ms, transition, why}: the why of a
-- transition travels with it, so callers that alert need no second read.
local function reply(allowed, to, retry_at_ms, change)
    return {allowed, to, retry_at_ms, change, change ~= "" and moved_why or ""}
end

-- Calls, failure weight and failing calls by code in the window; drops stale buckets.
local function window_totals()
    local oldest = math.floor((now - window_ms) / bucket_ms)
    local raw = redis.call("HGETALL", window_key)
    local n, f, codes, stale = 0, 0, {}, {}
    for i = 1, #raw, 2 do
        local bucket, what = string.match(raw[i], "^(%d+):(.+)$")
        local v = tonumber(raw[i + 1])
        if bucket and tonumber(bucket) > oldest then
            if what == "n" then
                n = n + v
            elseif what == "f" then
                f = f + v
            elseif string.sub(what, 1, 2) == "c:" then
                local code = string.sub(what, 3)
                codes[code] = (codes[code] or 0) + v
            end
        else
            stale[#stale + 1] = raw[i]
        end
    end
    if #stale > 0 then redis.call("HDEL", window_key, unpack(stale)) end
    return n, f, codes
end

-- "30007:12,30008:2": most frequent first.
local function codes_text(codes)
    local list = {}
    for code, count in pairs(codes) do list[#list + 1] = {code, count} end
    table.sort(list, function(a, b)
        if a[2] ~= b[2] then return a[2] > b[2] end
        return a[1] < b[1]
    end)
    for i = 1, #list do list[i] = list[i][1] .. ":" .. list[i][2] end
    return table.concat(list, ",")
end

local function cooldown_for(reopens)
    return math.min(cooldown_max_ms, cooldown_ms * (2 ^ reopens))
end

local function cooled_at()
    return tonumber(st.since_ms or 0) + tonumber(st.cooldown_ms or cooldown_ms)
end

local function round_start()
    return tonumber(st.round_ms or st.since_ms or 0)
end

-- Every probe of the round is out and none has reported for probe_timeout_ms.
local function round_stale()
    return tonumber(st.probes or 0) >= probes_max
        and now - round_start() >= tonumber(st.probe_timeout_ms or probe_timeout_ms)
end

-- Starts a probe round. A HoldKeeper claim made for it (since `previous`,
-- the last round's or open spell's start) is carried over, so the texts it
-- released and that are still on their way are not released twice.
local function new_round(previous)
    local fields = {"probes", 0, "round_ms", now, "probe_timeout_ms", probe_timeout_ms}
    if tonumber(st.claimed_ms or -1) >= previous then
        fields[#fields + 1] = "claimed_ms"
        fields[#fields + 1] = now
    end
    redis.call("HSET", state_key, unpack(fields))
    st.probes = "0"
end

local function wider_blocks(wider_key)
    local w = redis.call("HMGET", wider_key, "state", "since_ms", "cooldown_ms")
    if w[1] == "paused" then return "paused" end
    if w[1] == "open" and now < tonumber(w[2] or 0) + tonumber(w[3] or cooldown_ms) then
        return "open"
    end
    return nil
end

if command == "blocks" then
    -- KEYS[1] is the wide breaker: does it hold its campaigns' texts right now?
    local wide = wider_blocks(state_key)
    return {wide and 1 or 0, wide or ""}
end

if command == "status" then
    local n, f = window_totals()
    return {n, f}
end

if command == "admit" then
    local wide = KEYS[4] and wider_blocks(KEYS[4])
    if wide then return {0, wide, 0, ""} end
    if state == "closed" then return {1, state, 0, ""} end
    if state == "paused" then return {0, state, 0, ""} end
    local change = ""
    if state == "open" then
        local until_ms = cooled_at()
        if now < until_ms then return {0, state, until_ms, ""} end
        local opened = tonumber(st.since_ms)
        change = move("half_open", "auto", "cool-down over: probing", {"probe_ok", 0})
        new_round(opened)
    elseif round_stale() then
        -- Not a failure: the silent probes may yet report, and count if they do.
        new_round(round_start())
    end
    local probes = tonumber(st.probes or 0)
    if probes >= probes_max then return reply(0, state, now + bucket_ms, change) end
    redis.call("HINCRBY", state_key, "probes", 1)
    return reply(1, state, 0, change)
end

if command == "record" then
    local weight, code, count = tonumber(ARGV[6]), ARGV[7] or "", tonumber(ARGV[8] or 1)
    local bucket = math.floor(now / bucket_ms)
    redis.call("HINCRBY", window_key, bucket .. ":n", count)
    if weight > 0 then
        redis.call("HINCRBY", window_key, bucket .. ":f", weight * count)
        if code ~= "" then redis.call("HINCRBY", window_key, bucket .. ":c:" .. code, count) end
    end
    redis.call("PEXPIRE", window_key, window_ms * 2)
    local consecutive = tonumber(st.consecutive or 0)
    if weight >= full_weight then consecutive = consecutive + 1 elseif weight == 0 then consecutive = 0 end
    redis.call("HSET", state_key, "consecutive", consecutive)

    if state == "half_open" then
        if weight >= full_weight then
            local reopens = tonumber(st.reopens or 0) + 1
            local cd = cooldown_for(reopens)
            local change = move("open", "auto",
                "probe failed (" .. code .. "): open for " .. cd .. " ms",
                {"reopens", reopens, "cooldown_ms", cd})
            return reply(1, "open", now + cd, change)
        end
        if weight == 0 then
            local ok = redis.call("HINCRBY", state_key, "probe_ok", 1)
            if ok >= probes_max then
                redis.call("DEL", window_key)
                local change = move("closed", "auto", ok .. " probes succeeded",
                    {"consecutive", 0})
                return reply(1, "closed", 0, change)
            end
        end
        return {0, state, 0, ""}
    end
    if state ~= "closed" then return {0, state, 0, ""} end

    local n, f, codes = window_totals()
    local why = nil
    if consecutive >= consecutive_max then
        why = consecutive .. " failures in a row, last " .. code
    elseif n >= min_calls and f >= rate_milli * n then
        why = string.format("failure rate %.1f%% over %d calls in %d s, last %s",
            f / n / full_weight * 100, n, window_ms / 1000, code)
    end
    if not why then return {0, state, 0, ""} end
    local seen = codes_text(codes)
    if seen ~= "" then why = why .. "; codes=" .. seen end
    -- A breaker that stayed closed a full max cool-down starts its backoff afresh.
    local reopens = tonumber(st.reopens or 0)
    if now - tonumber(st.since_ms or 0) > cooldown_max_ms then reopens = 0 end
    local cd = cooldown_for(reopens)
    local change = move("open", "auto", why,
        {"reopens", reopens, "cooldown_ms", cd, "consecutive", 0})
    return reply(1, "open", now + cd, change)
end

if command == "claim" then
    local timeout = tonumber(st.probe_timeout_ms or probe_timeout_ms)
    local claimed = tonumber(st.claimed_ms or -1)
    -- A claim whose texts never came to be admitted is given up on too.
    local lapsed = now - claimed >= timeout
    local n = 0
    if state == "open" and now >= cooled_at() then
        if claimed < tonumber(st.since_ms) or lapsed then n = probes_max end
    elseif state == "half_open" then
        if round_stale() then
            -- Once per stale round: a claim made before it went stale is not one.
            if claimed < round_start() + timeout or lapsed then n = probes_max end
        elseif claimed < round_start() then
            n = probes_max - tonumber(st.probes or 0)
        end
    end
    if n > 0 then redis.call("HSET", state_key, "claimed_ms", now) end
    return {n, state, 0, ""}
end

if command == "pause" then
    if state == "paused" then return {0, state, 0, ""} end
    local change = move("paused", ARGV[6], ARGV[7], {})
    return reply(1, "paused", 0, change)
end

if command == "resume" then
    if state == "closed" then return {0, state, 0, ""} end
    redis.call("DEL", window_key)
    local change = move("closed", ARGV[6], ARGV[7],
        {"consecutive", 0, "reopens", 0, "probes", 0, "probe_ok", 0, "resumed_ms", now})
    return reply(1, "closed", 0, change)
end

return redis.error_reply("breaker.lua: unknown command " .. tostring(command))
