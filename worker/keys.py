"""Every Redis key sendq writes, in one place.

Layout (``{ns}`` is ``sendq`` unless configured otherwise):

    {ns}:msg:{id}            hash   the message record (see worker.store)
    {ns}:msg:{id}:h          list   the record's history, newest last, capped
    {ns}:idem:{key}          string idempotency key -> message id
    {ns}:stats               hash   "{campaign}|{status}" -> count
    {ns}:counters            hash   pipeline counters (crash resends, ...)

dramatiq's own keys live under the ``dramatiq`` namespace; see
``dramatiq/brokers/redis/dispatch.lua`` for their layout.
"""

from __future__ import annotations

DEFAULT_NAMESPACE = "sendq"
DRAMATIQ_NAMESPACE = "dramatiq"
STATS_FIELD_SEP = "|"


def message(msg_id: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:msg:{msg_id}"


def history(msg_id: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:msg:{msg_id}:h"


def idempotency(key: str, ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:idem:{key}"


def stats(ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:stats"


def counters(ns: str = DEFAULT_NAMESPACE) -> str:
    return f"{ns}:counters"


def dramatiq_queue(queue_name: str) -> str:
    return f"{DRAMATIQ_NAMESPACE}:{queue_name}"


def dramatiq_messages(queue_name: str) -> str:
    return f"{DRAMATIQ_NAMESPACE}:{queue_name}.msgs"


def dramatiq_delay_queue_name(queue_name: str) -> str:
    # Mirrors dramatiq.common.dq_name: delayed messages live on "{queue}.DQ".
    return f"{queue_name}.DQ"
