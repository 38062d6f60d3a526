"""Each worker's background chores: release holds and send probes.

Every ``tick_s`` each worker process looks at every carrier breaker:
- closed (an operator resumed it, or probes closed it) with texts held:
  release them all, oldest first;
- open past its cool-down, or half-open with probes to spare (or whose
  probes never reported within the probe timeout): release one held text per
  probe the breaker will admit; their own admission makes them the probes.
  The breaker grants that once per probe round (``claim``), so several
  workers, or texts released but not yet admitted, never release more.
Paused breakers are left alone: only an operator lifts a pause. So are the
campaigns of a carrier whose carrier-wide breaker is paused (or open): their
texts would only be held again, so they stay put, in order, until it lifts.
Several workers doing this at once is harmless: every release is a
compare-and-set.

Every tick it also requeues texts a dead worker left ``sending`` past their
lease (``worker.leases``), so they need not wait behind the backlog.

Every ``sweep_s`` it also looks for orphans. dramatiq can strand a message in
a live worker's unacked set when Redis drops mid-fetch (a retried fetch pops
again; the first reply is lost), and only a dead worker's set is ever
requeued. So when every sendq queue list is empty, a text still ``queued``
long past its due time, or ``sending`` long past its lease, has no message
coming: it gets a fresh one. A duplicate message would be harmless anyway:
the claim is a compare-and-set.
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
from worker.breaker import AsyncBreakers, Policy, State
from worker.holds import ALL_CAMPAIGNS, AsyncHolds, breaker_name, split_name
from worker.leases import LeaseSweeper
from worker.logs import mask_text
from worker.store import now_ms

log = structlog.get_logger("sendq.maintenance")


DEFAULT_ORPHAN_AFTER_S = 60.0
DEFAULT_SWEEP_S = 30.0
# CarrierBreakerSettings.probe_timeout_s's default. Used only until a breaker
# has had a probe round, which records the workers' own setting.
DEFAULT_CARRIER_PROBE_TIMEOUT_S = 120.0
ORPHAN_COUNTER = "orphans_requeued"


class HoldKeeper:
    def __init__(
        self,
        client: aioredis.Redis,
        holds: AsyncHolds,
        *,
        probes: int,
        probe_timeout_s: float = DEFAULT_CARRIER_PROBE_TIMEOUT_S,
        ns: str = keys.DEFAULT_NAMESPACE,
        orphan_after_s: float = DEFAULT_ORPHAN_AFTER_S,
        sweep_s: float = DEFAULT_SWEEP_S,
        leases: LeaseSweeper | None = None,
    ) -> None:
        self.client = client
        self.holds = holds
        self.probes = probes
        self.ns = ns
        # Only claims go through it; a round's own probe timeout, written by
        # the workers' policy, wins over probe_timeout_s here.
        self.breakers = AsyncBreakers(
            client,
            "carrier",
            Policy(probes=probes, probe_timeout_s=probe_timeout_s),
            ns,
            cache_ms=0,
        )
        self.orphan_after_ms = int(orphan_after_s * 1000)
        self.sweep_s = sweep_s
        self._last_sweep = 0.0
        self.leases = leases

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
        if not await self.holds.count(name) or await self._wide_blocks(name):
            return 0
        raw = await self.client.hget(keys.breaker("carrier", name, self.ns), "state")
        current = raw.decode() if isinstance(raw, bytes) else State.CLOSED.value
        if current == State.CLOSED:
            released = await self.holds.release(name)
            log.warning("released held texts", breaker=name, count=released)
            return released
        if current in (State.OPEN, State.HALF_OPEN):
            allowed = await self.breakers.claim_probes(name)
            return await self.holds.release(name, allowed) if allowed else 0
        return 0

    async def _wide_blocks(self, name: str) -> bool:
        """Is this campaign's carrier paused (or open) for all campaigns?

        The pipeline would hold a released text again at once, so releasing
        would only churn the hold list and the audit trail.
        """
        carrier, campaign = split_name(name)
        if campaign == ALL_CAMPAIGNS:
            return False
        wide = keys.breaker("carrier", breaker_name(carrier, ALL_CAMPAIGNS), self.ns)
        raw = await self.client.hmget(wide, ["state", "since_ms", "cooldown_ms"])
        state, since, cooldown = (v.decode() if isinstance(v, bytes) else "" for v in raw)
        if state == State.PAUSED:
            return True
        return state == State.OPEN and now_ms() < int(since or 0) + int(cooldown or 0)

    async def sweep(self) -> int:
        """Give a fresh message to texts that have none coming; returns how many."""
        queue = self.holds.queue
        lists = [queue, f"{queue}-timed"]
        lists += [keys.dramatiq_delay_queue_name(q) for q in list(lists)]
        pipe = self.client.pipeline(transaction=False)
        for name in lists:
            pipe.llen(keys.dramatiq_queue(name))
        if any(await pipe.execute()):
            return 0  # messages are still waiting their turn: none can be called lost
        if not await self._any_in_flight():
            return 0  # the usual idle case: every text is final or held, nothing to scan
        requeued = 0
        async for key in self.client.scan_iter(match=f"{self.ns}:msg:*", count=1000):
            name = key.decode() if isinstance(key, bytes) else str(key)
            if not name.endswith(":h"):
                requeued += await self._maybe_requeue(name.rsplit(":", 1)[1])
        if requeued:
            await self.client.hincrby(keys.counters(self.ns), ORPHAN_COUNTER, requeued)
            log.warning("requeued texts that had no message coming", count=requeued)
        return requeued

    async def _any_in_flight(self) -> bool:
        stats = await cast(Awaitable[dict[bytes, bytes]], self.client.hgetall(keys.stats(self.ns)))
        return any(
            int(count) > 0
            for field, count in stats.items()
            if field.decode().rpartition(keys.STATS_FIELD_SEP)[2] in ("queued", "sending")
        )

    async def _maybe_requeue(self, msg_id: str) -> int:
        from worker import store
        from worker.enqueue import dramatiq_message

        raw = await self.client.hmget(
            keys.message(msg_id, self.ns), ["status", "eta_ms", "created_ms", "lease_until_ms"]
        )
        status, eta, created, lease = (
            v.decode() if isinstance(v, bytes) else str(v or "") for v in raw
        )
        now = now_ms()
        due = int(eta or created or now) if status == "queued" else int(lease or now)
        if status not in ("queued", "sending") or now - due < self.orphan_after_ms:
            return 0
        k, a = store.transition_args(
            msg_id,
            [status],
            status,
            reason="swept: no message was coming",
            requeue=dramatiq_message(msg_id, self.holds.queue),
            ns=self.ns,
        )
        result = await self.holds.transition_script(keys=k, args=a)
        return 1 if int(result[0]) == 1 else 0

    async def run(self, tick_s: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                if loop.time() - self._last_sweep >= self.sweep_s:
                    self._last_sweep = loop.time()
                    await self.sweep()
                if self.leases is not None:
                    await self.leases.sweep()
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
