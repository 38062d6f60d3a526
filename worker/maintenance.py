"""Each worker's background chores: release holds and send probes.

Every ``tick_s`` each worker process looks at every carrier breaker:
- closed (an operator resumed it, or probes closed it) with texts held:
  release them all, oldest first;
- open past its cool-down with texts held: release ``probes`` of them, whose
  own admission turns the breaker half-open and makes them the probes.
Paused breakers are left alone: only an operator lifts a pause. Several
workers doing this at once is harmless: every release is a compare-and-set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, cast

import dramatiq
import redis.asyncio as aioredis
import structlog
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import Middleware

from worker import keys
from worker.breaker import State
from worker.holds import AsyncHolds
from worker.logs import mask_text
from worker.store import now_ms

log = structlog.get_logger("sendq.maintenance")


class HoldKeeper:
    def __init__(
        self,
        client: aioredis.Redis,
        holds: AsyncHolds,
        *,
        probes: int,
        ns: str = keys.DEFAULT_NAMESPACE,
    ) -> None:
        self.client = client
        self.holds = holds
        self.probes = probes
        self.ns = ns

    async def tick(self) -> int:
        """One pass over every carrier breaker; returns how many texts it released."""
        names = await cast(
            Awaitable[set[bytes]], self.client.smembers(keys.breaker_names("carrier", self.ns))
        )
        released = 0
        for raw in names:
            released += await self._one(raw.decode())
        return released

    async def _one(self, name: str) -> int:
        if not await self.holds.count(name):
            return 0
        raw = await cast(
            Awaitable[dict[bytes, bytes]],
            self.client.hgetall(keys.breaker("carrier", name, self.ns)),
        )
        state = {k.decode(): v.decode() for k, v in raw.items()}
        current = state.get("state", State.CLOSED.value)
        if current == State.CLOSED:
            released = await self.holds.release(name)
            log.warning("released held texts", breaker=name, count=released)
            return released
        if current == State.OPEN:
            cooled_at = int(state.get("since_ms", 0)) + int(state.get("cooldown_ms", 0))
            if now_ms() >= cooled_at:
                return await self.holds.release(name, self.probes)
        return 0

    async def run(self, tick_s: float) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:
                log.error("hold maintenance failed; retrying", error=mask_text(str(exc))[:300])
            await asyncio.sleep(tick_s)


class HoldMaintenance(Middleware):
    """Runs a HoldKeeper on each worker process's event loop."""

    def __init__(self, make_keeper: Any, tick_s: float) -> None:
        self.make_keeper = make_keeper
        self.tick_s = tick_s
        self._task: asyncio.Future[None] | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        thread = get_event_loop_thread()
        if thread is None:
            return

        async def start() -> None:
            await self.make_keeper().run(self.tick_s)

        self._task = asyncio.run_coroutine_threadsafe(start(), thread.loop)  # type: ignore[assignment]

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self._task is not None:
            self._task.cancel()
