"""When a set of local-time rules next allows a text: exact, across DST and midnight.

A constraint is weekly hours in one zone. A text may go at an instant when every
constraint allows it, judged by the wall clock of each constraint's zone at that
instant. That allowed set changes only at instants where some constraint opens:
an interval's start on the local clock (either occurrence, when the clocks go
back), or a DST change (the clock can jump into an allowed interval). So the next
opening is the earliest of those candidates that every constraint allows; there
is no scanning minute by minute. All times are whole epoch seconds: windows and
offsets are whole seconds too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from worker.quiet.window import Weekly

HOUR_S = 3600
DAY_S = 86_400
# A week of weekday rules plus a DST shift: an opening further off than this never comes.
HORIZON_S = 8 * DAY_S
# DST changes are months apart; probing the offset every 6 h cannot miss one.
_PROBE_S = 6 * HOUR_S


@dataclass(frozen=True, slots=True)
class Constraint:
    zone: ZoneInfo
    hours: Weekly
    label: str  # for reasons: "quiet hours 21:00-08:00", "Texas state hours"
    where: str = ""  # the zone as a reason names it; "" is its IANA key

    @property
    def place(self) -> str:
        return self.where or self.zone.key

    def allows(self, at_s: int) -> bool:
        local = dt.datetime.fromtimestamp(at_s, self.zone)
        return self.hours.allows(
            local.weekday(), local.hour * 3600 + local.minute * 60 + local.second
        )

    def local(self, at_s: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(at_s, self.zone)


def allows(constraints: Iterable[Constraint], at_s: int) -> bool:
    return all(c.allows(at_s) for c in constraints)


def _offset_s(zone: ZoneInfo, at_s: int) -> int:
    offset = dt.datetime.fromtimestamp(at_s, zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def transitions(zone: ZoneInfo, after_s: int, until_s: int) -> Iterator[int]:
    """Instants in (after_s, until_s] where the zone's UTC offset changes (to the second)."""
    lo, lo_offset = after_s, _offset_s(zone, after_s)
    while lo < until_s:
        hi = min(lo + _PROBE_S, until_s)
        hi_offset = _offset_s(zone, hi)
        if hi_offset != lo_offset:
            a, b = lo, hi  # offset(a) == lo_offset != offset(b): bisect to the first second
            while b - a > 1:
                mid = (a + b) // 2
                if _offset_s(zone, mid) == lo_offset:
                    a = mid
                else:
                    b = mid
            yield b
        lo, lo_offset = hi, hi_offset


def _starts(c: Constraint, after_s: int, until_s: int) -> Iterator[int]:
    """Every instant in (after_s, until_s] where one of c's intervals starts on the wall clock."""
    day = c.local(after_s).date() - dt.timedelta(days=1)
    last = c.local(until_s).date() + dt.timedelta(days=1)
    while day <= last:
        for start_s, _ in c.hours.days[day.weekday()]:
            h, rest = divmod(start_s, 3600)
            wall = dt.datetime.combine(day, dt.time(h, rest // 60, rest % 60), tzinfo=c.zone)
            for fold in (0, 1):  # both occurrences when the clocks go back
                at = int(wall.replace(fold=fold).timestamp())
                if after_s < at <= until_s:
                    yield at
        day += dt.timedelta(days=1)


def next_opening(
    constraints: Sequence[Constraint], now_s: int, horizon_s: int = HORIZON_S
) -> int | None:
    """The first instant >= now_s every constraint allows, or None if none within horizon_s."""
    if allows(constraints, now_s):
        return now_s
    until_s = now_s + horizon_s
    candidates: set[int] = set()
    zones = {c.zone for c in constraints}
    for c in constraints:
        candidates.update(_starts(c, now_s, until_s))
    for zone in zones:
        candidates.update(transitions(zone, now_s, until_s))
    for at in sorted(candidates):
        if allows(constraints, at):
            return at
    return None
