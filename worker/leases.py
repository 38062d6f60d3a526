"""Texts a dead worker left mid-send: found by their lease, and sent on at once.

A worker that dies while sending leaves its text ``sending`` and its dramatiq
message unacked. dramatiq gives that message back only after the worker's
heartbeat times out, and then at the *back* of the queue (``rpush`` in its
``dispatch.lua``): behind a million-text backlog, that is hours. Every
transition into ``sending`` records the text's lease end in ``{ns}:inflight``
(``lua/transition.lua``); each worker asks for the expired ones every tick and
gives each a fresh message on the timed queue, which has no backlog. The
pipeline then takes the text over (``crash_resends``), as it would a late
redelivery. A duplicate message is harmless: the claim is a compare-and-set.
"""

from __future__ import annotations

import redis.asyncio as aioredis
import structlog

from worker import keys
from worker.enqueue import dramatiq_message
from worker.store import now_ms

log = structlog.get_logger("sendq.leases")

# At most this many expired leases are requeued per sweep, so one sweep stays short.
DEFAULT_BATCH = 500
LEASE_REQUEUE_COUNTER = "expired_leases_requeued"


class LeaseSweeper:
    """Requeues texts whose send lease ran out, on a queue with no backlog."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        queue: str,
        lease_ms: int,
        ns: str = keys.DEFAULT_NAMESPACE,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        self.client = client
        self.queue = queue
        self.lease_ms = lease_ms
        self.ns = ns
        self.batch = batch

    async def sweep(self) -> int:
        """Give every text past its lease a fresh message; returns how many."""
        now = now_ms()
        due = await self.client.zrangebyscore(
            keys.inflight(self.ns), "-inf", now, start=0, num=self.batch
        )
        for raw in due:
            await self._requeue(raw.decode() if isinstance(raw, bytes) else str(raw), now)
        if due:
            await self.client.hincrby(keys.counters(self.ns), LEASE_REQUEUE_COUNTER, len(due))
            log.warning("texts left sending past their lease were requeued", count=len(due))
        return len(due)

    async def _requeue(self, msg_id: str, now: int) -> None:
        from worker.delivery import timed_queue

        message = dramatiq_message(msg_id, timed_queue(self.queue))
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(keys.dramatiq_messages(message.queue), message.redis_message_id, message.encoded)
        pipe.rpush(keys.dramatiq_queue(message.queue), message.redis_message_id)
        # If nobody takes it over (every worker busy or gone), look again a lease
        # later; XX: a text that ended meanwhile is not put back.
        pipe.zadd(keys.inflight(self.ns), {msg_id: now + self.lease_ms}, xx=True)
        await pipe.execute()
