-- inbound_mark.lua: add what was done with an inbound text to its record, only if
-- the record exists (a mistyped id must not leave a stub record behind).
--
-- KEYS[1]  {ns}:inbound:{id}   the record (hash)
--
-- ARGV[1..] field, value pairs to set
--
-- Returns 1 when the record was updated, 0 when there is no such record.

if redis.call("EXISTS", KEYS[1]) == 0 then
    return 0
end
redis.call("HSET", KEYS[1], unpack(ARGV))
return 1
