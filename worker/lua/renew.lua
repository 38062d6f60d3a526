-- renew.lua: extend a send lease, only for the worker that holds it.
--
-- KEYS[1]  {ns}:msg:{id}      the message record (hash): status, lease_id, lease_until_ms
-- KEYS[2]  {ns}:inflight      ids of texts being sent -> their lease's end (zset)
--
-- ARGV[1]  the lease id the caller holds
-- ARGV[2]  the new lease end, epoch ms
--
-- Returns 1 when the lease was extended, 0 when the text is no longer sending
-- under that lease (it ended, or another worker took it over).
-- No history entry: a renewal changes nothing but the lease's end.

local status, lease = unpack(redis.call("HMGET", KEYS[1], "status", "lease_id"))
if status ~= "sending" or lease ~= ARGV[1] then
    return 0
end
redis.call("HSET", KEYS[1], "lease_until_ms", ARGV[2])
redis.call("ZADD", KEYS[2], ARGV[2], string.match(KEYS[1], "([^:]+)$"))
return 1
