"""The watch: every carrier x campaign with traffic, every signal, every check round.

``Watch.check()`` is called on each worker's hold keeper tick. At most one round
runs per ``check_s`` across all processes (a short Redis claim, ``take_round``),
and a round that runs twice anyway is harmless: a pause of a paused breaker
changes nothing and alerts nobody, and a trip is recorded once (HSETNX).

What a trip does:
- ``pause``: pauses the carrier x campaign breaker, who="watch", the evidence as
  the reason, and announces the change as any breaker change is. Probes could
  not close a silent block (its receipts say "delivered"), so only an operator
  resumes it (promise 5). Once the breaker is no longer paused, the trip is
  cleared and the pair's evidence starts over from then: cohorts sent before the
  resume are not held against it again. A breaker that is not closed (the
  carrier breaker opened on the block itself, or it is paused) is left as it is.
  One an operator resumed after the evidence began starts every signal's
  evidence over. One whose probes closed it since starts over only the delivery
  evidence, which the breaker itself judged (receipts' rejections are its
  failures): the replies, opt-outs and receipts it never saw are kept, so a
  carrier that filters silently and trips the breaker now and then is still
  caught instead of starting over at every close.
- ``alert``: announces ``ok>suspect`` with the evidence, once; nothing more for
  that pair and signal until its test clears (``suspect>ok`` is announced), then
  a new trip alerts again.
- ``off``: shown in the status, never acted on.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from worker.alerts import Alerter
from worker.breaker import Decision as BreakerDecision
from worker.breaker import State
from worker.store import now_ms
from worker.watch.counters import WatchCounters, WatchCountersSync
from worker.watch.model import Snapshot, TripRecord, pair_name, trip_key
from worker.watch.sequential import Decision
from worker.watch.settings import WatchSettings
from worker.watch.signals import PairStatus, SignalStatus, evaluate

log = structlog.get_logger("sendq.watch")

WHO = "watch"
KIND = "carrier"
SUSPECT = "ok>suspect"
CLEARED = "suspect>ok"
# A round's claim lasts a little less than check_s, so the next round is never
# refused because a clock or a tick ran a little early.
ROUND_SHARE = 0.9
# The signals whose evidence the carrier breaker weighs itself (a receipt's
# rejection is its failure): they start over when its probes close it.
BREAKER_JUDGED = ("delivery",)


class CarrierBreakers(Protocol):
    """What the watch needs of the carrier breakers (worker.breaker.AsyncBreakers)."""

    async def pause(self, name: str, *, who: str, reason: str) -> BreakerDecision: ...

    async def state(self, name: str) -> State: ...

    async def state_since(self, name: str) -> tuple[State, int, int]: ...


@dataclass(frozen=True, slots=True)
class Action:
    """What a check round did for one pair and signal."""

    carrier: str
    campaign: str
    signal: str
    # "paused", "already paused", "alerted", "cleared" (an alert's signal cleared),
    # "restarted" (an operator resumed, or for delivery the breaker's probes closed
    # it: evidence starts over)
    did: str
    evidence: str


class Watch:
    def __init__(
        self,
        counters: WatchCounters,
        settings: WatchSettings,
        breakers: CarrierBreakers,
        alerter: Alerter,
        *,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.counters = counters
        self.settings = settings
        self.breakers = breakers
        self.alerter = alerter
        self.clock = clock
        self._last_round_ms = 0

    async def check(self) -> list[Action] | None:
        """One round, if it is due and no other process has it: what it did.

        None when no round ran (disabled, not due yet here, or another process has
        this one), so it may be called as often as the hold keeper ticks.
        """
        if not self.settings.enabled:
            return None
        now = self.clock()
        round_ms = int(self.settings.check_s * 1000)
        if now - self._last_round_ms < round_ms * ROUND_SHARE:
            return None
        self._last_round_ms = now
        if not await self.counters.take_round(int(round_ms * ROUND_SHARE)):
            return None
        snapshot = await self.counters.read(now)
        # Pure CPU (a few ms a campaign): off the event loop, so sends go on meanwhile.
        evaluated = await asyncio.to_thread(statuses, snapshot, self.settings)
        actions: list[Action] = []
        counts = {pair_name(p.carrier, p.campaign): p for p in snapshot.pairs}
        for pair in evaluated:
            for signal in pair.signals:
                c = counts.get(pair.name)
                since_ms = c.since_for(signal.signal) if c is not None else 0
                action = await self._act(pair, signal, now, since_ms)
                if action is not None:
                    actions.append(action)
        await self.counters.prune(snapshot)
        return actions

    async def status(self) -> list[PairStatus]:
        """Every pair's signals now: rates, tests, trips. Acts on nothing."""
        snapshot = await self.counters.read(self.clock())
        return await asyncio.to_thread(statuses, snapshot, self.settings)

    async def _act(
        self, pair: PairStatus, s: SignalStatus, now: int, since_ms: int
    ) -> Action | None:
        if s.trip is not None:
            return await self._follow(pair, s, s.trip, now)
        if s.action == "off" or s.decision is not Decision.TRIP:
            return None
        test = s.tripping()
        if test is None:  # a TRIP decision always has its test
            return None
        record = TripRecord(
            s.signal, s.action, now, test.evidence, test.reference, test.statistic, test.p_value
        )
        if s.action == "pause":
            state, changed_ms, resumed_ms = await self.breakers.state_since(pair.name)
            if state is not State.CLOSED:
                # Stopped already (the carrier breaker saw the block, or a pause): its
                # own probes or an operator decide; a pause on top would turn an open
                # that probes can close into one only an operator lifts.
                return None
            if resumed_ms > since_ms:
                # An operator resumed it since the evidence began: the cohorts before
                # are not held against it again, on any signal.
                await self.counters.restart_evidence(pair.carrier, pair.campaign, resumed_ms)
                return Action(pair.carrier, pair.campaign, s.signal, "restarted", record.evidence)
            if changed_ms > since_ms and s.signal in BREAKER_JUDGED:
                # Its probes closed it since: the rejections it acted on are behind it.
                await self.counters.restart_evidence(
                    pair.carrier, pair.campaign, changed_ms, BREAKER_JUDGED
                )
                return Action(pair.carrier, pair.campaign, s.signal, "restarted", record.evidence)
            return await self._pause(pair, record)
        if not await self.counters.record_trip(pair.carrier, pair.campaign, record):
            return None  # another round recorded it first, and alerted
        self.alerter.announce(KIND, pair.name, SUSPECT, record.evidence, by=WHO, signal=s.signal)
        return Action(pair.carrier, pair.campaign, s.signal, "alerted", record.evidence)

    async def _pause(self, pair: PairStatus, record: TripRecord) -> Action:
        # Pause first, record second: a round cut off in between pauses again next
        # time, which changes nothing; the other way it would look resumed.
        decision = await self.breakers.pause(pair.name, who=WHO, reason=record.evidence)
        if decision.transition:
            self.alerter.announce(
                KIND, pair.name, decision.transition, record.evidence, by=WHO, signal=record.signal
            )
        await self.counters.record_trip(pair.carrier, pair.campaign, record)
        did = "paused" if decision.transition else "already paused"
        log.warning("watch tripped", breaker=pair.name, signal=record.signal, did=did)
        return Action(pair.carrier, pair.campaign, record.signal, did, record.evidence)

    async def _follow(
        self, pair: PairStatus, s: SignalStatus, trip: TripRecord, now: int
    ) -> Action | None:
        """A trip on record: has it been resumed (pause), or has it cleared (alert)?"""
        if trip.action == "pause":
            if await self.breakers.state(pair.name) is State.PAUSED:
                return None
            await self.counters.clear_trip(pair.carrier, pair.campaign, s.signal)
            await self.counters.restart_evidence(pair.carrier, pair.campaign, now)
            return Action(pair.carrier, pair.campaign, s.signal, "restarted", trip.evidence)
        if s.action == "off":  # switched off since: forget it quietly
            await self.counters.clear_trip(pair.carrier, pair.campaign, s.signal)
            return None
        if s.decision is not Decision.CLEAR:
            return None
        if not await self.counters.clear_trip(pair.carrier, pair.campaign, s.signal):
            return None
        why = f"{s.signal} back to normal: {summary(s)}"
        self.alerter.announce(KIND, pair.name, CLEARED, why, by=WHO, signal=s.signal)
        return Action(pair.carrier, pair.campaign, s.signal, "cleared", why)


def statuses(snapshot: Snapshot, settings: WatchSettings) -> list[PairStatus]:
    """Every pair of every campaign evaluated, with its trip records attached."""
    out: list[PairStatus] = []
    for _, pairs in sorted(snapshot.by_campaign().items()):
        for pair in evaluate(pairs, settings, snapshot.now_ms):
            signals = tuple(
                dataclasses.replace(
                    s, trip=snapshot.trips.get(trip_key(pair.carrier, pair.campaign, s.signal))
                )
                for s in pair.signals
            )
            out.append(dataclasses.replace(pair, signals=signals))
    return out


def watch_status(reader: WatchCountersSync, settings: WatchSettings) -> list[PairStatus]:
    """``Watch.status`` for synchronous callers (``sendq carriers status``, ``/metrics``)."""
    return statuses(reader.read(), settings)


def summary(s: SignalStatus) -> str:
    """E.g. "reply rate 4.0% vs 4.1% on the other carriers, 3.9% on its baseline"."""

    def pct(rate: float | None) -> str:
        return "-" if rate is None else f"{100 * rate:.1f}%"

    text = f"{s.signal} {pct(s.rate)} over {s.texts} vs {pct(s.others_rate)} on the others"
    if s.baseline_rate is not None:
        text += f", {pct(s.baseline_rate)} on its baseline"
    return text


__all__ = ["Action", "CarrierBreakers", "Watch", "pair_name", "statuses", "watch_status"]
