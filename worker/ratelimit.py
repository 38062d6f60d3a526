"""Global rate limits by reservation: GCRA over several keys in one Redis script.

A text takes ``segments`` on every limiter that applies to it at once: its
provider account, its sending number, its carrier x campaign, and optionally
a daily cap. ``lua/ratelimit.lua`` either admits it now or *reserves* the
earliest slot on all of them and says when that is; the text then waits for
exactly that long (a short wait asleep in the worker, a long one as a
delayed dramatiq message) and is sent without asking again. Nothing spins,
nothing is retried, and no retry budget is spent. The clock is the Redis
server's, so every worker on every host shares it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript, Script

from worker import keys, lua
from worker.settings import LimitsSettings

US_PER_S = 1_000_000
# Waits up to this long are held on every limiter (the worker sleeps them);
# longer ones only on the limiters that cause them.
DEFAULT_HOLD_ALL_US = 250_000


@dataclass(frozen=True, slots=True)
class Rate:
    """``rate`` segments per ``period_s``, with bursts of up to ``burst`` segments.

    ``margin_s``: slots are spaced as if the period were this much longer. A text
    leaves a little after its slot (the worker's own scheduling); one that leaves
    late lands in the provider's next window beside texts that left on time, and
    the window the provider counts then holds one too many. Spacing slots by the
    measured lateness keeps every window within the limit as the provider counts.
    """

    name: str
    rate: float
    period_s: float = 1.0
    burst: int = 1
    margin_s: float = 0.0

    @property
    def interval_us(self) -> int:
        return int((self.period_s + self.margin_s) * US_PER_S / self.rate)

    def argv(self) -> list[str]:
        return ["gcra", str(self.interval_us), str(self.interval_us * self.burst)]


@dataclass(frozen=True, slots=True)
class DailyCap:
    """At most ``cap`` segments per calendar day in ``tz`` (T-Mobile: midnight Pacific)."""

    name: str
    cap: int
    tz: str = "America/Los_Angeles"

    def reset_us(self, now_us: int) -> int:
        zone = ZoneInfo(self.tz)
        local = datetime.fromtimestamp(now_us / US_PER_S, zone)
        midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        # Rebuild through the zone so a DST change that night lands on the real midnight.
        midnight = datetime(midnight.year, midnight.month, midnight.day, tzinfo=zone)
        return int(midnight.timestamp() * US_PER_S)

    def key_suffix(self, now_us: int) -> str:
        day = datetime.fromtimestamp(now_us / US_PER_S, ZoneInfo(self.tz)).date()
        return f"{self.name}:{day.isoformat()}"

    def argv(self, now_us: int) -> list[str]:
        return ["cap", str(self.cap), str(self.reset_us(now_us))]


Limit = Rate | DailyCap


@dataclass(frozen=True, slots=True)
class Reservation:
    """``wait_us == 0``: go now. Otherwise go at now + wait; ``reserved`` says the slot is held.

    ``held`` names the limiters holding the slot: at the slot, ask the others again.
    """

    wait_us: int
    reserved: bool
    binding: str | None
    held: tuple[str, ...] = ()

    @property
    def go_now(self) -> bool:
        return self.wait_us <= 0

    @property
    def wait_s(self) -> float:
        return max(0, self.wait_us) / US_PER_S


def _args(
    limits: Sequence[Limit], segments: int, ns: str, now_us: int | None, hold_all_us: int
) -> tuple[list[str], list[str]]:
    import time

    clock_us = now_us if now_us is not None else time.time_ns() // 1000
    script_keys, argv = [], ["" if now_us is None else str(now_us), str(segments)]
    argv.append(str(hold_all_us))
    for limit in limits:
        if isinstance(limit, DailyCap):
            script_keys.append(keys.limiter(f"cap:{limit.key_suffix(clock_us)}", ns))
            argv += limit.argv(clock_us)
        else:
            script_keys.append(keys.limiter(limit.name, ns))
            argv += limit.argv()
    script_keys += [keys.limiter_use(limit.name, ns) for limit in limits]
    return script_keys, argv


def _decode(raw: Sequence[Any], limits: Sequence[Limit]) -> Reservation:
    wait_us, reserved, index = (int(x) for x in raw[:3])
    flags = raw[3].decode() if isinstance(raw[3], bytes) else str(raw[3])
    binding = limits[index - 1].name if index else None
    held = tuple(limit.name for limit, flag in zip(limits, flags, strict=True) if flag == "1")
    return Reservation(wait_us, bool(reserved), binding, held if reserved else ())


class AsyncLimiter:
    def __init__(self, client: aioredis.Redis, ns: str = keys.DEFAULT_NAMESPACE) -> None:
        self.ns = ns
        self._script: AsyncScript = client.register_script(lua.source("ratelimit"))

    async def reserve(
        self,
        limits: Sequence[Limit],
        segments: int = 1,
        *,
        now_us: int | None = None,
        hold_all_us: int = DEFAULT_HOLD_ALL_US,
    ) -> Reservation:
        """Reserve; ``hold_all_us=-1`` only asks, changing nothing."""
        if not limits:
            return Reservation(0, False, None)
        k, a = _args(limits, segments, self.ns, now_us, hold_all_us)
        raw = await cast(Awaitable[list[Any]], self._script(keys=k, args=a))
        return _decode(raw, limits)


class Limiter:
    """The same, synchronous: for tests, tools and benchmarks."""

    def __init__(self, client: redis.Redis, ns: str = keys.DEFAULT_NAMESPACE) -> None:
        self.client = client
        self.ns = ns
        self._script: Script = client.register_script(lua.source("ratelimit"))

    def reserve(
        self,
        limits: Sequence[Limit],
        segments: int = 1,
        *,
        now_us: int | None = None,
        hold_all_us: int = DEFAULT_HOLD_ALL_US,
    ) -> Reservation:
        """Reserve; ``hold_all_us=-1`` only asks, changing nothing."""
        if not limits:
            return Reservation(0, False, None)
        k, a = _args(limits, segments, self.ns, now_us, hold_all_us)
        return _decode(cast(list[Any], self._script(keys=k, args=a)), limits)

    def recent_use(self, name: str, minutes: int = 5) -> dict[str, int]:
        """Segments charged to limiter ``name`` in each of the last ``minutes`` minutes."""
        return recent_use(self.client, name, minutes, self.ns)

    def booked_ahead_s(self, limit: Rate) -> float:
        """How far ahead of now this limiter's slots are already taken."""
        return booked_ahead_s(self.client, limit, self.ns)


def limits_for(
    cfg: LimitsSettings, *, provider: str, sender: str, carrier: str | None, campaign: str
) -> list[Limit]:
    """Every limit one text is subject to, from configuration."""
    out: list[Limit] = []
    margin_s = cfg.arrival_margin_ms / 1000
    account = cfg.providers.get(provider)
    if account:
        name = f"provider:{provider}"
        out.append(Rate(name, account.rate, account.period_s, account.burst, margin_s))
    number = cfg.number_rate(sender)
    if number:
        name = f"number:{sender}"
        out.append(Rate(name, number.rate, number.period_s, number.burst, margin_s))
    per_carrier = cfg.carriers.get(carrier) if carrier else None
    if per_carrier and per_carrier.rate:
        name = f"carrier:{carrier}:{campaign}"
        rate, period_s, burst = per_carrier.rate, per_carrier.period_s, per_carrier.burst
        out.append(Rate(name, rate, period_s, burst, margin_s))
    if per_carrier and per_carrier.daily_cap:
        out.append(DailyCap(f"{carrier}:{campaign}", per_carrier.daily_cap, per_carrier.tz))
    return out


def recent_use(
    client: redis.Redis,
    name: str,
    minutes: int = 5,
    ns: str = keys.DEFAULT_NAMESPACE,
    now_us: int | None = None,
) -> dict[str, int]:
    """Segments charged to a limiter in each of the last ``minutes`` minutes (newest first)."""
    import time

    now_minute = (now_us or time.time_ns() // 1000) // 60_000_000
    raw = cast(dict[bytes, bytes], client.hgetall(keys.limiter_use(name, ns)))
    used = {int(k): int(v) for k, v in raw.items()}
    return {f"-{i}m": used.get(now_minute - i, 0) for i in range(minutes)}


def booked_ahead_s(client: redis.Redis, limit: Rate, ns: str = keys.DEFAULT_NAMESPACE) -> float:
    """How far ahead of now this limiter's slots are already taken."""
    import time

    tat = client.get(keys.limiter(limit.name, ns))
    if tat is None:
        return 0.0
    return max(0.0, (int(tat) - time.time_ns() // 1000) / US_PER_S)
