-- watch_sent.lua: count one attempt's send for the deliverability watch, once,
-- whichever path says first that it went out: the send path's answer, the
-- provider's look-up, or a receipt for a text whose answer was lost; and, when a
-- final receipt is what says so, that receipt's counts too, in the same call.
--
-- KEYS[1]     {ns}:msg:{id}   the message record (hash): a{N}:counted is set here
-- KEYS[2..]   the watch's count hashes to increment: {ns}:watch:n:{carrier}:{campaign}
--             (the window's cohorts) and {ns}:watch:b:{carrier}:{campaign} (the
--             baseline's minutes): first the send's (ARGV[2] of them), then the
--             final receipt's (none without one)
--
-- ARGV[1]     the record's field that marks the attempt counted, "a{N}:counted"
-- ARGV[2]     how many of KEYS[2..] are the send's
-- ARGV[3..]   the field to increment in each of KEYS[2..], in order: the send's
--             "{bucket start, epoch s}:s", then the receipt's (":d", ":u", ":l")
--
-- Returns 1 when this call counted the send, 0 when it was counted before or the
-- record is gone (no stub record is left behind). A receipt's counts are made
-- either way, as every receipt's are.

local sends = tonumber(ARGV[2])
for i = 2 + sends, #KEYS do
    redis.call("HINCRBY", KEYS[i], ARGV[i + 1], 1)
end
if redis.call("EXISTS", KEYS[1]) == 0 then
    return 0
end
if redis.call("HSETNX", KEYS[1], ARGV[1], "1") == 0 then
    return 0
end
for i = 2, 1 + sends do
    redis.call("HINCRBY", KEYS[i], ARGV[i + 1], 1)
end
return 1
