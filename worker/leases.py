"""Texts with no message coming: a dead worker's (by lease) and dramatiq's orphans.

A worker that dies while sending leaves its text ``sending`` and its dramatiq
message unacked. dramatiq gives that message back only after the worker's
heartbeat times out, and then at the *back* of the queue (``rpush`` in its
``dispatch.lua``): behind a million-text backlog, that is hours. Every
transition into ``sending`` records the text's lease end in ``{ns}:inflight``
(``lua/transition.lua``); each worker asks for the expired ones every tick and
gives each a fresh message on the timed queue, which has no backlog. The
pipeline then takes the text over (``takeovers``; through ``unconfirmed`` if an
HTTP attempt was open), as it would a late redelivery. A duplicate message is
harmless: the claim is a compare-and-set.

Orphans: dramatiq can strand a message in a live worker's unacked set when
Redis drops mid-fetch (a retried fetch pops again; the first reply is lost),
and only a dead worker's set is ever requeued. So when every sendq queue list
is empty, a text still ``queued`` long past its due time, or ``sending`` long
past its lease, has no message coming: ``OrphanSweeper`` gives it a fresh one.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, cast

import redis.asyncio as aioredis
import structlog

from worker import keys, lua, store, wire
from worker.models import HELD_FOR_FIELD, HELD_FOR_QUIET_HOURS, Status
from worker.store import now_ms

log = structlog.get_logger("sendq.leases")

# At most this many expired leases are requeued per sweep, so one sweep stays short.
DEFAULT_BATCH = 500
LEASE_REQUEUE_COUNTER = "expired_leases_requeued"
ORPHAN_COUNTER = "orphans_requeued"
# The stats that say some text may be waiting for a message (keys.stats fields).
IN_FLIGHT_COUNTS = ("queued", "sending", f"held:{HELD_FOR_QUIET_HOURS}")
DEFAULT_ORPHAN_AFTER_S = 60.0


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
        message = wire.message(msg_id, wire.timed_queue(self.queue))
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(wire.messages_key(message.queue), message.redis_message_id, message.encoded)
        pipe.rpush(wire.queue_key(message.queue), message.redis_message_id)
        # If nobody takes it over (every worker busy or gone), look again a lease
        # later; XX: a text that ended meanwhile is not put back.
        pipe.zadd(keys.inflight(self.ns), {msg_id: now + self.lease_ms}, xx=True)
        await pipe.execute()


class OrphanSweeper:
    """Finds texts queued or sending with no dramatiq message left for them."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        queue: str,
        orphan_after_s: float = DEFAULT_ORPHAN_AFTER_S,
        ns: str = keys.DEFAULT_NAMESPACE,
    ) -> None:
        self.client = client
        self.queue = queue
        self.orphan_after_ms = int(orphan_after_s * 1000)
        self.ns = ns
        self._transition = client.register_script(lua.source("transition"))

    async def sweep(self) -> int:
        """Give a fresh message to texts that have none coming; returns how many."""
        pipe = self.client.pipeline(transaction=False)
        for name in wire.queues_of(self.queue):
            pipe.llen(wire.queue_key(name))
        if any(await pipe.execute()):
            return 0  # messages are still waiting their turn: none can be called lost
        if not await self._any_in_flight():
            return 0  # the usual idle case: every text is final or held, nothing to scan
        requeued = 0
        async for key in self.client.scan_iter(match=keys.message_pattern(self.ns), count=1000):
            name = key.decode() if isinstance(key, bytes) else str(key)
            msg_id = keys.message_id_of(name, self.ns)
            if msg_id is not None:
                requeued += await self._maybe_requeue(msg_id)
        if requeued:
            await self.client.hincrby(keys.counters(self.ns), ORPHAN_COUNTER, requeued)
            log.warning("requeued texts that had no message coming", count=requeued)
        return requeued

    async def _any_in_flight(self) -> bool:
        stats = await cast(Awaitable[dict[bytes, bytes]], self.client.hgetall(keys.stats(self.ns)))
        return any(
            int(count) > 0
            for field, count in stats.items()
            if field.decode().rpartition(keys.STATS_FIELD_SEP)[2] in IN_FLIGHT_COUNTS
        )

    async def _maybe_requeue(self, msg_id: str) -> int:
        raw = await self.client.hmget(
            keys.message(msg_id, self.ns),
            ["status", "eta_ms", "created_ms", "lease_until_ms", HELD_FOR_FIELD],
        )
        status, eta, created, lease, held_for = (
            v.decode() if isinstance(v, bytes) else str(v or "") for v in raw
        )
        now = now_ms()
        # A quiet-hours hold ends by its own timed message alone, like a queued
        # text's retry: a lost one is as much an orphan.
        timed_hold = status == Status.HELD and held_for == HELD_FOR_QUIET_HOURS
        waiting = status == Status.QUEUED or timed_hold
        due = int(eta or created or now) if waiting else int(lease or now)
        if not (waiting or status == Status.SENDING) or now - due < self.orphan_after_ms:
            return 0
        k, a = store.transition_args(
            msg_id,
            [f"{status}:{held_for}" if timed_hold else status],
            status,
            reason="swept: no message was coming",
            requeue=wire.message(msg_id, self.queue),
            ns=self.ns,
        )
        result = await cast(Awaitable[list[Any]], self._transition(keys=k, args=a))
        return 1 if int(result[0]) == 1 else 0
