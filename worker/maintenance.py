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
Texts held for room under the exposure limit (``worker.exposure``) are let
in as slots free: the keeper takes a slot for each of the oldest (``grant``,
never more than cap minus texts out, across every worker) and releases exactly
those; their acquire at the gate finds the slot theirs. While the carrier's
breaker is not closed they are all released instead: its hold is where they
belong then (and its probes must not wait behind a full cap).
Several workers doing this at once is harmless: every release is a
compare-and-set.

Every tick it also requeues texts a dead worker left ``sending`` past their
lease (``worker.leases``), so they need not wait behind the backlog, and,
before any release, ends the texts waiting past their ``send_before``
(``worker.expiry``): a held text past it is expired, not released.

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
from collections.abc import Callable

import dramatiq
import structlog
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import Middleware

from worker import store
from worker.breaker import AsyncBreakers, State
from worker.expiry import ExpirySweeper
from worker.exposure import AsyncExposure, Release, hold_name
from worker.holds import ALL_CAMPAIGNS, AsyncHolds, breaker_name, split_name
from worker.leases import LeaseSweeper, OrphanSweeper
from worker.overdue import ReceiptTimeouts
from worker.watch.model import attempt_carrier
from worker.watch.watch import Watch

log = structlog.get_logger("sendq.maintenance")

DEFAULT_SWEEP_S = 30.0


class HoldKeeper:
    """One worker's chores; every part is a state-layer object the composition root built.

    ``breakers`` are the carrier breakers, with the workers' own policy: its
    probe count and probe timeout are what a claim grants and records.
    """

    def __init__(
        self,
        holds: AsyncHolds,
        breakers: AsyncBreakers,
        leases: LeaseSweeper,
        orphans: OrphanSweeper,
        *,
        expiry: ExpirySweeper | None = None,
        exposure: AsyncExposure | None = None,
        overdue: ReceiptTimeouts | None = None,
        watch: Watch | None = None,
        sweep_s: float = DEFAULT_SWEEP_S,
    ) -> None:
        # None: no deliverability watch (a test of holds alone).
        self.watch = watch
        # None: sent texts are not timed out (a test of holds alone).
        self.overdue = overdue
        self.holds = holds
        self.breakers = breakers
        self.leases = leases
        self.orphans = orphans
        # None: no deadline sweep (the send path's expiry gate still ends each text).
        self.expiry = expiry
        # None, or the limit off: no texts wait for room, and no call looks.
        self.exposure = exposure if exposure is not None and exposure.enabled else None
        self._exposures = exposure
        self.sweep_s = sweep_s
        self._last_sweep = 0.0

    async def tick(self) -> int:
        """Expire what waited too long, then one pass over every carrier breaker;
        returns how many texts it released."""
        if self.expiry is not None:
            expired = await self.expiry.sweep_records(store.now_ms())
            if expired and self.exposure is not None:
                # One let in for room and then expired while queued gives it back.
                pairs = [(r.get("id", ""), r) for r in expired]
                await self.exposure.release_records(pairs, Release.NOT_SENT)
        if self.overdue is not None:
            # Sent texts with no due time (left by an older version): one step a tick.
            await self.overdue.scan_step(store.now_ms())
            ended = await self.overdue.sweep(store.now_ms())
            if ended and self.exposure is not None:
                pairs = [(r.get("id", ""), r) for r in ended]
                await self.exposure.release_records(pairs, Release.OVERDUE)
            if ended and self.watch is not None:
                await self._watch_overdue(ended)
        if self.watch is not None:
            await self.watch.check()  # one round per check_s across every process
        released = 0
        for name in await self.breakers.names():
            released += await self._one(name)
        if self.exposure is not None:
            for name in await self.exposure.names():
                released += await self._let_in(self.exposure, name)
        elif self._exposures is not None:
            # The limit was turned off: texts still waiting for room go, all of them.
            for name in await self._exposures.names():
                released += await self.holds.release(hold_name(name))
        return released

    async def _watch_overdue(self, ended: list[dict[str, str]]) -> None:
        assert self.watch is not None
        for record in ended:
            attempt = record.get("attempt", "")
            sent_ms = int(record.get(f"a{attempt}:at_ms") or 0)
            if sent_ms:
                carrier = attempt_carrier(record, attempt)
                await self.watch.counters.overdue(
                    carrier, record.get("campaign", ""), sent_ms=sent_ms
                )

    async def _one(self, name: str) -> int:
        if not await self.holds.count(name) or await self._wide_blocks(name):
            return 0
        current = await self.breakers.state(name)
        if current == State.CLOSED:
            released = await self.holds.release(name)
            log.warning("released held texts", breaker=name, count=released)
            return released
        if current in (State.OPEN, State.HALF_OPEN):
            allowed = await self.breakers.claim_probes(name)
            return await self.holds.release(name, allowed) if allowed else 0
        return 0

    async def _let_in(self, exposure: AsyncExposure, name: str) -> int:
        """Release the oldest texts held for room of ``name``, one per free slot."""
        held = hold_name(name)
        if not await self.holds.count(held):
            return 0
        if await self._wide_blocks(name) or await self.breakers.state(name) != State.CLOSED:
            return await self.holds.release(held)
        granted = await exposure.grant(name)
        return await self.holds.release(held, len(granted)) if granted else 0

    async def _wide_blocks(self, name: str) -> bool:
        """Is this campaign's carrier paused (or open) for all campaigns?

        The pipeline would hold a released text again at once, so releasing
        would only churn the hold list and the audit trail.
        """
        carrier, campaign = split_name(name)
        if campaign == ALL_CAMPAIGNS:
            return False
        return await self.breakers.blocks_below(breaker_name(carrier, ALL_CAMPAIGNS))

    async def sweep(self) -> int:
        """Give a fresh message to texts that have none coming; returns how many."""
        return await self.orphans.sweep()

    async def run(self, tick_s: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                if loop.time() - self._last_sweep >= self.sweep_s:
                    self._last_sweep = loop.time()
                    await self.sweep()
                await self.leases.sweep()
                await self.tick()
            except Exception as exc:
                # The log processor masks numbers and secrets in the message.
                log.error("hold maintenance failed; retrying", error=str(exc)[:300])
            await asyncio.sleep(tick_s)


class HoldMaintenance(Middleware):
    """Runs a HoldKeeper on each worker process's event loop."""

    def __init__(self, make_keeper: Callable[[], HoldKeeper], tick_s: float) -> None:
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
