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
    {ns}:exposure:{carrier}:{campaign}      zset  texts out with no final receipt
                                    -> when they took their slot, epoch ms
    {ns}:exposure:{carrier}:{campaign}:cap  hash  the adaptive exposure cap
    {ns}:exposures           set    every carrier x campaign with an exposure limit used
    (texts waiting for an exposure slot: the hold list "exposure:{carrier}:{campaign}")
    {ns}:rl:used:{limiter}   hash   per-second use, for `sendq limits status`
    {ns}:optout:{org}        hash   an organisation's opt-out list: e164 -> JSON entry
    {ns}:optout:review:{org} hash   possible opt-outs flagged for review: e164 -> JSON
    {ns}:optout:audit        stream every change of any opt-out list: who, why, when
    {ns}:inbound:{id}        hash   one inbound text
    {ns}:inbound             zset   inbound ids -> received, epoch ms (for listing)
    {ns}:inbound:from:{e164} zset   one person's inbound ids -> received, epoch ms
    {ns}:inbound:seen:{provider}:{provider message id}
                             string the inbound id first recorded for a provider's
                                    message id (a retried webhook), with a TTL
    {ns}:last:{from}:{to}    string the last outbound text's id from a sending
                                    number to a person (links replies), with a TTL
    {ns}:expiry              zset   ids of texts with a send_before -> it, epoch ms
    {ns}:awaiting            zset   ids of sent texts -> when their final receipt is
                                    overdue, epoch ms (receipts.timeout_s after sent)
    {ns}:awaiting:scan       hash   cursor, done_ms: the slow scan for sent texts
                                    missing from awaiting (an older version's)
    {ns}:watch:n:{carrier}:{campaign}  hash  the watch's counts per cohort:
                                    "{bucket start, epoch s}:{counter}" -> texts
    {ns}:watch:b:{carrier}:{campaign}  hash  the same in minute buckets, for the baseline
    {ns}:watch:pairs         zset   "{carrier}:{campaign}" -> its last event, epoch ms
    {ns}:watch:trips         hash   "{carrier}:{campaign}|{signal}" -> JSON trip record
    {ns}:watch:since         hash   "{carrier}:{campaign}" -> epoch ms: evidence before
                                    it is ignored (set when an operator resumes);
                                    "{carrier}:{campaign}|{signal}" -> the same for one
                                    signal (the breaker's probes closed it then; set
                                    when that signal first trips after the close)
    {ns}:watch:round         string the current check round's holder, with a TTL

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


def exposure(name: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:exposure:{name}"


def exposure_cap(name: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:exposure:{name}:cap"


def exposures(ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:exposures"


def optouts(org: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:optout:{org}"


def optout_review(org: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:optout:review:{org}"


def optout_audit(ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:optout:audit"


def inbound(inbound_id: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:inbound:{inbound_id}"


def inbound_index(ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:inbound"


def inbound_by_number(number: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:inbound:from:{number}"


def inbound_seen(provider: str, provider_message_id: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:inbound:seen:{provider}:{provider_message_id}"


def last_outbound(sender: str, to: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:last:{sender}:{to}"


def expiry(ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:expiry"


def awaiting(ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:awaiting"


def awaiting_scan(ns: str = DEFAULT_NAMESPACE) -> str:
    """The scan for sent texts missing from ``awaiting`` (hash): its SCAN cursor, and
    when its last whole pass ended (done_ms)."""
    return f"{ns}:awaiting:scan"


def watch_counts(carrier: str, campaign: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:watch:n:{carrier}:{campaign}"


def watch_baseline(carrier: str, campaign: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:watch:b:{carrier}:{campaign}"


def watch_pairs(ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:watch:pairs"


def watch_trips(ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:watch:trips"


def watch_since(ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:watch:since"


def watch_round(ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:watch:round"
