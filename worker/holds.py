"""Holding a paused carrier's texts, and releasing them in order.

A held text is in status ``held`` and its id is on the hold list of its
carrier x campaign breaker (``keys.hold``), both written by one
compare-and-set, so a crash between hold and ack loses and doubles nothing:
the redelivered message finds the text ``held`` and leaves it.

Release goes the other way, oldest first: each text moves ``held -> queued``
with its dramatiq message in one compare-and-set, and only then leaves the
hold list. A crash in between leaves an id on the list whose text is no
longer held; the next release just drops it. Released texts go through the
whole pipeline again, rate limiter and expiry check included.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, cast

import redis
import redis.asyncio as aioredis

from worker import keys, lua, store, wire
from worker.models import Status

ALL_CAMPAIGNS = "*"
DEFAULT_RELEASE_BATCH = 200


def breaker_name(carrier: str, campaign: str) -> str:
    return f"{carrier}:{campaign}"


def split_name(name: str) -> tuple[str, str]:
    carrier, _, campaign = name.partition(":")
    return carrier, campaign


class Holds:
    """Held counts, synchronously: for operators' status and metrics."""

    def __init__(self, client: redis.Redis, ns: str = keys.DEFAULT_NAMESPACE) -> None:
        self.client = client
        self.ns = ns

    def count(self, name: str) -> int:
        return int(self.client.llen(keys.hold(name, self.ns)))

    def counts(self, names: list[str]) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.llen(keys.hold(name, self.ns))
        return {name: int(n) for name, n in zip(names, pipe.execute(), strict=True)}


class AsyncHolds:
    def __init__(
        self, client: aioredis.Redis, queue: str, ns: str = keys.DEFAULT_NAMESPACE
    ) -> None:
        self.client = client
        self.queue = queue
        self.ns = ns
        self.transition_script = client.register_script(lua.source("transition"))

    async def count(self, name: str) -> int:
        return int(await self.client.llen(keys.hold(name, self.ns)))

    async def release(self, name: str, limit: int | None = None) -> int:
        """Requeue up to ``limit`` held texts (all when None), oldest first."""
        released = 0
        hold_key = keys.hold(name, self.ns)
        while limit is None or released < limit:
            batch = min(DEFAULT_RELEASE_BATCH, limit - released if limit else DEFAULT_RELEASE_BATCH)
            ids = [
                i.decode() if isinstance(i, bytes) else str(i)
                for i in await cast(
                    Awaitable[list[Any]], self.client.lrange(hold_key, 0, batch - 1)
                )
            ]
            if not ids:
                break
            released += await self._release_batch(hold_key, ids)
        return released

    async def _release_batch(self, hold_key: str, ids: list[str]) -> int:
        pipe = self.client.pipeline(transaction=False)
        for msg_id in ids:
            k, a = store.transition_args(
                msg_id,
                [Status.HELD],
                Status.QUEUED,
                reason="released from hold",
                requeue=wire.message(msg_id, self.queue),
                ns=self.ns,
            )
            await self.transition_script(keys=k, args=a, client=pipe)
        results = await pipe.execute()
        cleanup = self.client.pipeline(transaction=False)
        for msg_id in ids:
            cleanup.lrem(hold_key, 1, msg_id)
        await cleanup.execute()
        return sum(1 for raw in results if int(raw[0]) == 1)
