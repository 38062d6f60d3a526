"""dramatiq's wire format, in one place: the send actor's messages and its queues.

sendq writes dramatiq messages itself (atomically with a record's change, from
Lua), so it must write exactly what dramatiq's RedisBroker would. Everything
that knows how dramatiq names a queue or encodes a message lives here:

    {queue}            the main queue: first sends and retries
    {queue}-timed      texts coming back for a reserved rate-limit slot, or after
                       a lease; consumed beside the main queue, never behind its backlog
    {queue}.DQ         dramatiq's delay queue for either (a message with an ``eta``)

and in Redis (dramatiq's own ``dramatiq`` namespace):

    dramatiq:{queue}        list   redis message ids, oldest first
    dramatiq:{queue}.msgs   hash   redis message id -> encoded message
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from dramatiq import Message

SEND_ACTOR = "send_text"
DRAMATIQ_NAMESPACE = "dramatiq"
TIMED_SUFFIX = "-timed"
# Mirrors dramatiq.common.dq_name: delayed messages live on "{queue}.DQ".
DELAY_SUFFIX = ".DQ"


@dataclass(frozen=True, slots=True)
class Requeue:
    """A dramatiq message to push atomically with a transition."""

    queue: str
    redis_message_id: str
    encoded: str
    # When dramatiq should hand it to a worker: the sweeper's measure of "overdue".
    eta_ms: int = 0


def timed_queue(queue: str) -> str:
    """The queue for texts that hold a rate-limit slot or wait out a lease."""
    return f"{queue}{TIMED_SUFFIX}"


def delay_queue(queue: str) -> str:
    return f"{queue}{DELAY_SUFFIX}"


def queue_key(queue: str) -> str:
    return f"{DRAMATIQ_NAMESPACE}:{queue}"


def messages_key(queue: str) -> str:
    return f"{DRAMATIQ_NAMESPACE}:{queue}.msgs"


def queues_of(queue: str) -> list[str]:
    """Every queue a configured send queue's texts can sit on, delayed ones included."""
    return [queue, delay_queue(queue), timed_queue(queue), delay_queue(timed_queue(queue))]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def fresh_message(msg_id: str, queue: str) -> Requeue:
    """A first send's dramatiq message, encoded without building a Message.

    The bulk path spends most of its time here otherwise; the JSON is exactly
    what ``Message.encode`` writes (a test decodes it with dramatiq), and the
    ids are the message id, which is unique and never enqueued twice.
    """
    # Message ids are hex digits: safe in JSON as they are.
    body = _MESSAGE_TEMPLATE % (json.dumps(queue), msg_id, msg_id, msg_id, _now_ms())
    return Requeue(queue, msg_id, body)


_MESSAGE_TEMPLATE = (
    '{"queue_name":%s,"actor_name":"' + SEND_ACTOR + '","args":["%s"],"kwargs":{},'
    '"options":{"redis_message_id":"%s"},"message_id":"%s","message_timestamp":%d}'
)


def message(msg_id: str, queue: str, delay_ms: int | None = None) -> Requeue:
    """Encode the send actor's message as dramatiq's RedisBroker would."""
    redis_message_id = str(uuid.uuid4())
    options: dict[str, Any] = {"redis_message_id": redis_message_id}
    eta_ms = _now_ms() + (delay_ms or 0)
    if delay_ms is not None:
        queue = delay_queue(queue)
        options["eta"] = eta_ms
    encoded: Message[Any] = Message(
        queue_name=queue, actor_name=SEND_ACTOR, args=(msg_id,), kwargs={}, options=options
    )
    return Requeue(queue, redis_message_id, encoded.encode().decode(), eta_ms)
