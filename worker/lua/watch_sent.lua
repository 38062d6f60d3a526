-- watch_sent.lua: count one attempt's send for the deliverability watch, once,
-- whichever path says first that it went out: the send path's answer, the
-- provider's look-up, or a receipt for a text whose answer was lost.
--
-- KEYS[1]     {ns}:msg:{id}   the message record (hash): a{N}:counted is set here
-- KEYS[2..]   the watch's count hashes to increment: {ns}:watch:n:{carrier}:{campaign}
--             (the window's cohorts) and {ns}:watch:b:{carrier}:{campaign} (the
--             baseline's minutes), as many as ARGV has fields for
--
-- ARGV[1]     the record's field that marks the attempt counted, "a{N}:counted"
-- ARGV[2..]   the field to increment in each of KEYS[2..], in order:
--             "{bucket start, epoch s}:s"
--
-- Returns 1 when this call counted the send, 0 when it was counted before or the
-- record is gone (no stub record is left behind).

if redis.call("EXISTS", KEYS[1]) == 0 then
    return 0
end
if redis.call("HSETNX", KEYS[1], ARGV[1], "1") == 0 then
    return 0
end
for i = 2, #KEYS do
    redis.call("HINCRBY", KEYS[i], ARGV[i], 1)
end
return 1
