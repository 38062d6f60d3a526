"""The exposure limit: how many texts of a carrier x campaign may be out unconfirmed.

A text takes a slot when the send path lets it go (the exposure gate) and
gives it back when its fate is known: a final receipt, an answer that nothing
was sent, or an overdue receipt. Past the cap the gate holds the text on its
own hold list (``hold_name``); the hold keeper lets the oldest in as slots free
(``grant``). So a block that shows only in late receipts swallows at most the
cap, not the rate times the receipts' delay.

The cap is fixed (``max_unconfirmed``) or adaptive (AIMD, as TCP's congestion
window, under that ceiling):

- slow start: a campaign's first texts, and a carrier an operator resumed
  (``reset``), start at ``start``; each confirmed delivery adds ``growth``
  (1.0 doubles the cap per round of receipts) up to the slow-start threshold;
- congestion avoidance: past the threshold each delivery adds growth / cap
  (about ``growth`` per round);
- a carrier rejection or an overdue receipt multiplies the cap by ``shrink``
  and sets the threshold there, once per round: losses of texts taken before
  the last shrink were of the round already paid for (NewReno's recovery), so
  one burst of late rejections halves the cap once, not a hundred times.

Releases are idempotent: only a text holding a slot changes anything, so a
duplicate receipt, or a receipt after the slot was dropped as overdue, is a
no-op. A slot held longer than the receipts' timeout plus a margin lost its
release (a crash in between) and is dropped, as overdue, whenever room is
needed: a lost receipt never keeps a slot for ever.

State (``keys.exposure``, ``keys.exposure_cap``, ``keys.exposures``) is
``lua/exposure.lua``'s; every call here is one round trip.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript, Script

from worker import keys, lua
from worker.exposure_settings import DEFAULT_IDLE_RESTART_S, ExposureSettings
from worker.models import Category, Status

# The record field naming the carrier x campaign whose slot the text took (written
# with its attempt), so its release goes to that slot even if a receipt moves the
# text's carrier, and a text that never took one costs its receipt no Redis call.
EXPOSURE_FIELD = "exposure"
# The record's held_for while it waits for a slot (stats count held texts by it).
HELD_FOR_EXPOSURE = "exposure"
# The receipts' timeout's default (receipts.timeout_s) plus the margin's.
DEFAULT_STALE_AFTER_MS = 660_000
# A held text granted a slot but still on the hold list this long after: the keeper
# releasing it was lost, and the grant may be given again.
DEFAULT_REGRANT_MS = 10_000
# The hold keeper looks at most this many held texts per name per tick.
DEFAULT_GRANT_BATCH = 500


class Release(StrEnum):
    """What became of a text holding a slot, and what that does to the cap."""

    DELIVERED = "delivered"  # a final receipt: delivered; the cap grows
    REJECTED = "rejected"  # the carrier refused it; the cap shrinks
    OVERDUE = "overdue"  # no final receipt in time; the cap shrinks
    NOT_SENT = "not_sent"  # the attempt sent nothing; the slot just returns
    ENDED = "ended"  # final, and says nothing of the carrier (a bad number, ...)


def hold_name(name: str) -> str:
    """The hold list (``keys.hold``'s name) of the texts waiting for a slot of ``name``."""
    return f"exposure:{name}"


def answer_release(category: Category) -> Release | None:
    """What a send answer does to the text's slot; None: it keeps it (the text may be
    out: accepted, or unconfirmed), until its receipt or its overdue time."""
    if category in (Category.OK, Category.AMBIGUOUS, Category.UNCERTAIN):
        return None
    if category is Category.CARRIER_BLOCK:
        return Release.REJECTED
    if category in (Category.TRANSIENT, Category.THROTTLED):
        return Release.NOT_SENT
    return Release.ENDED


def receipt_release(status: str, category: Category) -> Release | None:
    """What a receipt does to the text's slot; None for one that is not final.

    Only a carrier block shrinks the cap, as only a block counts as a full failure
    on the carrier's breaker (worker.verdicts); an ambiguous code is left to it.
    """
    if status == Status.DELIVERED:
        return Release.DELIVERED
    if status != Status.UNDELIVERED:
        return None
    return Release.REJECTED if category is Category.CARRIER_BLOCK else Release.ENDED


@dataclass(frozen=True, slots=True)
class ExposurePolicy:
    """The limit as ``lua/exposure.lua`` applies it; see ``ExposureSettings``."""

    max_unconfirmed: int | None = None
    adaptive: bool = False
    start: int = 10
    floor: int = 1
    growth: float = 1.0
    shrink: float = 0.5
    stale_after_ms: int = DEFAULT_STALE_AFTER_MS
    idle_restart_ms: int = int(DEFAULT_IDLE_RESTART_S * 1000)
    regrant_ms: int = DEFAULT_REGRANT_MS

    @property
    def enabled(self) -> bool:
        return self.max_unconfirmed is not None

    def argv(self) -> str:
        ceiling = self.max_unconfirmed or 0
        return " ".join(
            str(v)
            for v in (
                ceiling,
                int(self.adaptive),
                min(self.start, ceiling) if self.adaptive else ceiling,
                self.floor,
                self.growth,
                self.shrink,
                self.stale_after_ms,
                self.idle_restart_ms,
                self.regrant_ms,
            )
        )


def policy_from_settings(cfg: ExposureSettings, receipt_timeout_s: float) -> ExposurePolicy:
    """The policy of ``[limits.carrier]``, with the receipts' own timeout."""
    return ExposurePolicy(
        max_unconfirmed=cfg.max_unconfirmed,
        adaptive=cfg.adaptive,
        start=cfg.start,
        floor=cfg.floor,
        growth=cfg.growth,
        shrink=cfg.shrink,
        stale_after_ms=int((receipt_timeout_s + cfg.overdue_margin_s) * 1000),
        idle_restart_ms=int(cfg.idle_restart_s * 1000),
    )


@dataclass(frozen=True, slots=True)
class Admission:
    """An acquire's answer: taken or not, with the texts out, the cap and who waits."""

    taken: bool
    outstanding: int
    cap: int
    waiting: int

    def __bool__(self) -> bool:
        return self.taken


@dataclass(frozen=True, slots=True)
class ExposureStatus:
    name: str
    outstanding: int
    cap: int
    # Slots dropped as overdue by this call (a sweep); 0 for a status.
    dropped: int = 0
    # When the oldest slot out was taken, epoch ms (0: none out).
    oldest_ms: int = 0

    @property
    def room(self) -> int:
        return max(0, self.cap - self.outstanding)


def _args(
    command: str, name: str, policy: ExposurePolicy, ns: str, now_ms: int | None, *extra: str
) -> tuple[list[str], list[str]]:
    script_keys = [
        keys.exposure(name, ns),
        keys.exposure_cap(name, ns),
        keys.exposures(ns),
        keys.hold(hold_name(name), ns),
    ]
    clock = "" if now_ms is None else str(now_ms)
    return script_keys, [command, clock, name, policy.argv(), *extra]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _status(name: str, raw: Sequence[Any]) -> ExposureStatus:
    out, cap, dropped, oldest = (int(v) for v in raw)
    return ExposureStatus(name, out, cap, dropped, oldest)


def _disabled() -> ValueError:
    return ValueError("the exposure limit is off (limits.carrier.max_unconfirmed is not set)")


class AsyncExposure:
    """The workers' and the webhooks' side. Off (no ``max_unconfirmed``), the send
    path does not call it; calls that would change state refuse with a reason."""

    def __init__(
        self, client: aioredis.Redis, policy: ExposurePolicy, ns: str = keys.DEFAULT_NAMESPACE
    ) -> None:
        self.client = client
        self.policy = policy
        self.ns = ns
        self._script: AsyncScript = client.register_script(lua.source("exposure"))

    @property
    def enabled(self) -> bool:
        return self.policy.enabled

    async def _run(
        self, command: str, name: str, now_ms: int | None, *extra: str, records: Sequence[str] = ()
    ) -> list[Any]:
        if not self.enabled:
            raise _disabled()
        k, a = _args(command, name, self.policy, self.ns, now_ms, *extra)
        return await cast(Awaitable[list[Any]], self._script(keys=[*k, *records], args=a))

    async def acquire(
        self, name: str, msg_id: str, now_ms: int | None = None, *, force: bool = False
    ) -> Admission:
        """Take a slot of ``name`` for ``msg_id``, or say why not (truthy when taken).

        The same id again keeps its one slot. ``force``: a breaker's probe goes
        even when the cap is full. ``now_ms`` is for tests: left None, every call
        reads the Redis server's clock, so times taken and compared by different
        workers agree (a slot's age, a round's start).
        """
        raw = await self._run("acquire", name, now_ms, msg_id, "1" if force else "0")
        taken, out, cap, waiting = (int(v) for v in raw)
        return Admission(bool(taken), out, cap, waiting)

    async def release(
        self, name: str, msg_id: str, outcome: Release, now_ms: int | None = None
    ) -> bool:
        """Give back ``msg_id``'s slot; False if it held none (a duplicate, or dropped)."""
        raw = await self._run("release", name, now_ms, msg_id, outcome.value)
        return bool(int(raw[0]))

    async def release_record(
        self, msg_id: str, record: Mapping[str, str], outcome: Release
    ) -> bool:
        """Give back the slot the record says the text took; no Redis call when it
        took none (or the limit is off now: its slots no longer matter)."""
        name = record.get(EXPOSURE_FIELD)
        if not name or not self.enabled:
            return False
        return await self.release(name, msg_id, outcome)

    async def release_records(
        self, texts: Sequence[tuple[str, Mapping[str, str]]], outcome: Release
    ) -> int:
        """``release_record`` for many texts (a sweep's), in one round trip; how many
        slots were given back."""
        named = [(msg_id, r.get(EXPOSURE_FIELD)) for msg_id, r in texts]
        due = [(msg_id, name) for msg_id, name in named if name]
        if not due or not self.enabled:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for msg_id, name in due:
            k, a = _args("release", name, self.policy, self.ns, None, msg_id, outcome.value)
            await self._script(keys=k, args=a, client=pipe)
        return sum(int(raw[0]) for raw in await pipe.execute())

    async def grant(
        self, name: str, now_ms: int | None = None, *, batch: int = DEFAULT_GRANT_BATCH
    ) -> list[str]:
        """Slots for the oldest texts held for room, as many as there is: their ids.

        Granted texts always lead the hold list, so releasing that many from its
        head (``AsyncHolds.release``) releases granted texts only, whichever
        workers' keepers do it at once; at the gate their acquire finds the slot
        theirs. Two round trips: the list, then the script.
        """
        hold_key = keys.hold(hold_name(name), self.ns)
        ids = [
            _s(i)
            for i in await cast(Awaitable[list[Any]], self.client.lrange(hold_key, 0, batch - 1))
        ]
        if not ids:
            return []
        records = [keys.message(i, self.ns) for i in ids]
        raw = await self._run("grant", name, now_ms, HELD_FOR_EXPOSURE, *ids, records=records)
        return [_s(i) for i in raw]

    async def reset(self, name: str, *, forget: bool = False) -> ExposureStatus:
        """Start over at ``start`` (slow start), as after an operator's resume;
        ``forget`` also drops the texts out from the count."""
        return _status(name, await self._run("reset", name, None, "1" if forget else "0"))

    async def status(self, name: str) -> ExposureStatus:
        return _status(name, await self._run("status", name, None))

    async def sweep(self, name: str, now_ms: int | None = None) -> ExposureStatus:
        """Drop the slots held past the overdue time, as overdue."""
        return _status(name, await self._run("sweep", name, now_ms))

    async def names(self) -> list[str]:
        raw = await cast(Awaitable[set[Any]], self.client.smembers(keys.exposures(self.ns)))
        return sorted(_s(n) for n in raw)


class Exposure:
    """The operators' side, synchronous: status, reset after a resume, sweep."""

    def __init__(
        self, client: redis.Redis, policy: ExposurePolicy, ns: str = keys.DEFAULT_NAMESPACE
    ) -> None:
        self.client = client
        self.policy = policy
        self.ns = ns
        self._script: Script = client.register_script(lua.source("exposure"))

    @property
    def enabled(self) -> bool:
        return self.policy.enabled

    def _run(self, command: str, name: str, *extra: str) -> ExposureStatus:
        if not self.enabled:
            raise _disabled()
        k, a = _args(command, name, self.policy, self.ns, None, *extra)
        return _status(name, cast(list[Any], self._script(keys=k, args=a)))

    def status(self, name: str) -> ExposureStatus:
        return self._run("status", name)

    def statuses(self) -> list[ExposureStatus]:
        return [self.status(name) for name in self.names()]

    def reset(self, name: str, *, forget: bool = False) -> ExposureStatus:
        return self._run("reset", name, "1" if forget else "0")

    def sweep(self, name: str) -> ExposureStatus:
        return self._run("sweep", name)

    def names(self) -> list[str]:
        raw = cast(set[Any], self.client.smembers(keys.exposures(self.ns)))
        return sorted(_s(n) for n in raw)
