-- breaker.lua: a circuit breaker shared by every worker, for a provider or a
-- carrier x campaign.
--
-- KEYS[1]  {ns}:breaker:{kind}:{name}     hash: the breaker's state
--            state        closed | open | half_open | paused
--            since_ms     when it entered that state
--            cooldown_ms  how long "open" lasts before probing
--            reopens      re-opens since it last stayed closed
--            probes       probes admitted in this half-open spell
--            probe_ok     probes that succeeded in it
--            consecutive  failures in a row
--            why, by      the last transition's reason and author
-- KEYS[2]  {ns}:breaker:{kind}:{name}:w   hash: sliding window by time,
--            "{bucket}:n" calls and "{bucket}:f" failure weight (x1000)
-- KEYS[3]  {ns}:audit                      stream: every transition
-- KEYS[4]  (optional, admit only) a wider breaker's state hash, e.g. a
--          carrier's "all campaigns" breaker: when it is paused, so is this
--
-- ARGV[1]  command: admit | record | pause | resume
-- ARGV[2]  now, epoch ms
-- ARGV[3]  breaker kind ("provider" / "carrier"), for the audit entry
-- ARGV[4]  breaker name, for the audit entry
-- ARGV[5]  policy, space separated: window_ms bucket_ms min_calls
--          rate_milli consecutive cooldown_ms cooldown_max_ms probes
-- ARGV[6..] command arguments:
--   admit   (none)
--   record  weight_milli (0 success, 1000 failure, between: ambiguous), code,
--           count (calls this record stands for; workers batch successes)
--   pause   who, reason
--   resume  who, reason
--
-- Returns {allowed or changed (0/1), state, retry_at_ms, transition or ""}.

local state_key, window_key, audit_key = KEYS[1], KEYS[2], KEYS[3]
local command, now = ARGV[1], tonumber(ARGV[2])
local kind, name = ARGV[3], ARGV[4]
local p = {}
for v in string.gmatch(ARGV[5], "%S+") do p[#p + 1] = tonumber(v) end
local window_ms, bucket_ms, min_calls, rate_milli = p[1], p[2], p[3], p[4]
local consecutive_max, cooldown_ms, cooldown_max_ms, probes_max = p[5], p[6], p[7], p[8]

local s = redis.call("HGETALL", state_key)
local st = {}
for i = 1, #s, 2 do st[s[i]] = s[i + 1] end
local state = st.state or "closed"

local function move(to, who, why, extra)
    local fields = {"state", to, "since_ms", now, "why", why, "by", who}
    for i = 1, #extra do fields[#fields + 1] = extra[i] end
    redis.call("HSET", state_key, unpack(fields))
    redis.call("XADD", audit_key, "MAXLEN", "~", 100000, "*", "kind", kind, "name", name,
        "from", state, "to", to, "who", who, "why", why, "at_ms", now)
    local from = state
    state = to
    return from .. ">" .. to
end

local function window_totals()
    local oldest = math.floor((now - window_ms) / bucket_ms)
    local raw = redis.call("HGETALL", window_key)
    local n, f, stale = 0, 0, {}
    for i = 1, #raw, 2 do
        local bucket, what = string.match(raw[i], "^(%d+):(%a)$")
        if bucket and tonumber(bucket) > oldest then
            if what == "n" then n = n + tonumber(raw[i + 1]) else f = f + tonumber(raw[i + 1]) end
        else
            stale[#stale + 1] = raw[i]
        end
    end
    if #stale > 0 then redis.call("HDEL", window_key, unpack(stale)) end
    return n, f
end

local function cooldown_for(reopens)
    return math.min(cooldown_max_ms, cooldown_ms * (2 ^ reopens))
end

if command == "admit" then
    if KEYS[4] and redis.call("HGET", KEYS[4], "state") == "paused" then
        return {0, "paused", 0, ""}
    end
    if state == "closed" then return {1, state, 0, ""} end
    if state == "paused" then return {0, state, 0, ""} end
    local change = ""
    if state == "open" then
        local until_ms = tonumber(st.since_ms) + tonumber(st.cooldown_ms or cooldown_ms)
        if now < until_ms then return {0, state, until_ms, ""} end
        change = move("half_open", "auto", "cool-down over: probing", {"probes", 0, "probe_ok", 0})
        st.probes = "0"
    end
    local probes = tonumber(st.probes or 0)
    if probes >= probes_max then return {0, state, now + bucket_ms, change} end
    redis.call("HINCRBY", state_key, "probes", 1)
    return {1, state, 0, change}
end

if command == "record" then
    local weight, code, count = tonumber(ARGV[6]), ARGV[7] or "", tonumber(ARGV[8] or 1)
    local bucket = math.floor(now / bucket_ms)
    redis.call("HINCRBY", window_key, bucket .. ":n", count)
    if weight > 0 then redis.call("HINCRBY", window_key, bucket .. ":f", weight * count) end
    redis.call("PEXPIRE", window_key, window_ms * 2)
    local consecutive = tonumber(st.consecutive or 0)
    if weight >= 1000 then consecutive = consecutive + 1 elseif weight == 0 then consecutive = 0 end
    redis.call("HSET", state_key, "consecutive", consecutive)

    if state == "half_open" then
        if weight >= 1000 then
            local reopens = tonumber(st.reopens or 0) + 1
            local cd = cooldown_for(reopens)
            return {1, "open", now + cd, move("open", "auto",
                "probe failed (" .. code .. "): open for " .. cd .. " ms",
                {"reopens", reopens, "cooldown_ms", cd})}
        end
        if weight == 0 then
            local ok = redis.call("HINCRBY", state_key, "probe_ok", 1)
            if ok >= probes_max then
                redis.call("DEL", window_key)
                return {1, "closed", 0, move("closed", "auto", ok .. " probes succeeded",
                    {"consecutive", 0})}
            end
        end
        return {0, state, 0, ""}
    end
    if state ~= "closed" then return {0, state, 0, ""} end

    local n, f = window_totals()
    local why = nil
    if consecutive >= consecutive_max then
        why = consecutive .. " failures in a row, last " .. code
    elseif n >= min_calls and f >= rate_milli * n then
        why = string.format("failure rate %.1f%% over %d calls in %d s, last %s",
            f / n / 10, n, window_ms / 1000, code)
    end
    if not why then return {0, state, 0, ""} end
    -- A breaker that stayed closed a full max cool-down starts its backoff afresh.
    local reopens = tonumber(st.reopens or 0)
    if now - tonumber(st.since_ms or 0) > cooldown_max_ms then reopens = 0 end
    local cd = cooldown_for(reopens)
    return {1, "open", now + cd, move("open", "auto", why,
        {"reopens", reopens, "cooldown_ms", cd, "consecutive", 0})}
end

if command == "pause" then
    if state == "paused" then return {0, state, 0, ""} end
    return {1, "paused", 0, move("paused", ARGV[6], ARGV[7], {})}
end

if command == "resume" then
    if state == "closed" then return {0, state, 0, ""} end
    redis.call("DEL", window_key)
    return {1, "closed", 0, move("closed", ARGV[6], ARGV[7],
        {"consecutive", 0, "reopens", 0, "probes", 0, "probe_ok", 0})}
end

return redis.error_reply("breaker.lua: unknown command " .. tostring(command))
