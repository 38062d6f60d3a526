"""Every Redis key sendq writes, in one place.

Layout (``{ns}`` is ``sendq`` unless configured otherwise):

    {ns}:msg:{id}            hash   the message record (see worker.store)
    {ns}:msg:{id}:h          list   the record's history, newest last, capped
    {ns}:idem:{key}          string idempotency key -> message id
    {ns}:stats               hash   "{campaign}|{status}" -> count
    {ns}:counters            hash   pipeline counters (crash resends, ...)
    {ns}:inflight            zset   ids of texts being sent -> their lease's end, epoch ms
    {ns}:breaker:{kind}:{name}    hash  a circuit breaker's state (see lua/breaker.lua)
    {ns}:breaker:{kind}:{name}:w  hash  its sliding window
    {ns}:breakers:{kind}     set    the names of every breaker of a kind ever used
    {ns}:audit               stream every breaker transition: who, why, when
    {ns}:rl:{limiter}        string a rate limiter's TAT, or a daily cap's count
    {ns}:carrier:{e164}      string a number's carrier (cached lookup), with a TTL
    {ns}:hold:{carrier}:{campaign}  list  held message ids, oldest first
    {ns}:rl:used:{limiter}   hash   per-second use, for `sendq limits status`

dramatiq's own keys and queue names are its wire format: ``worker.wire``.
"""

from __future__ import annotations

DEFAULT_NAMESPACE = "sendq"
STATS_FIELD_SEP = "|"


def message(msg_id: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:msg:{msg_id}"


def message_pattern(ns: str = DEFAULT_NAMESPACE) -> str:
    """A SCAN pattern for message records (it matches their history lists too)."""
    return f"{ns}:msg:*"


def message_id_of(key: str, ns: str = DEFAULT_NAMESPACE) -> str | None:
    """The message id in a record's key; None for any other key the pattern matched."""
    prefix = f"{ns}:msg:"
    rest = key[len(prefix) :] if key.startswith(prefix) else ""
    return rest if rest and ":" not in rest else None


def history(msg_id: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:msg:{msg_id}:h"


def idempotency(key: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:idem:{key}"


def stats(ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:stats"


def counters(ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:counters"


def inflight(ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:inflight"


def breaker(kind: str, name: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:breaker:{kind}:{name}"


def breaker_window(kind: str, name: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:breaker:{kind}:{name}:w"


def breaker_names(kind: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:breakers:{kind}"


def audit(ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:audit"


def limiter(name: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:rl:{name}"


def limiter_use(name: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:rl:used:{name}"


def carrier(number: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:carrier:{number}"


def hold(breaker_name: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:hold:{breaker_name}"
