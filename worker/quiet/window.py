"""A campaign's quiet window ("21:00-08:00") and the weekly hours texts may go in.

Times are seconds of the local day (0 to 86,400). A quiet window runs from its
start (inclusive) to its end (exclusive) and may cross midnight: "21:00-08:00"
is quiet from 21:00:00 to 07:59:59, and a text may go at 08:00:00.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DAY_S = 86_400
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# One time of day: H or HH, MM, and optionally SS (so a test can cross an edge in seconds).
_TIME = r"(\d{1,2}):(\d{2})(?::(\d{2}))?"
_WINDOW_RE = re.compile(rf"\s*{_TIME}\s*-\s*{_TIME}\s*", re.ASCII)

# [start_s, end_s) within one local day, 0 <= start_s < end_s <= DAY_S.
Interval = tuple[int, int]


def clock_time(seconds: int) -> str:
    """08:00, or 08:00:30 when the seconds matter."""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}" + (f":{s:02d}" if s else "")


@dataclass(frozen=True, slots=True)
class Weekly:
    """When texts may go, per local weekday (Monday first): intervals [start_s, end_s)."""

    days: tuple[tuple[Interval, ...], ...]

    def __post_init__(self) -> None:
        if len(self.days) != 7:
            raise ValueError(f"weekly hours need 7 days, got {len(self.days)}")
        for day in self.days:
            for start, end in day:
                if not 0 <= start < end <= DAY_S:
                    raise ValueError(f"interval {start}-{end} is not within one day")

    @classmethod
    def every_day(cls, *intervals: Interval) -> Weekly:
        return cls((tuple(intervals),) * 7)

    def allows(self, weekday: int, second: int) -> bool:
        return any(start <= second < end for start, end in self.days[weekday])


@dataclass(frozen=True, slots=True)
class Window:
    """A quiet window in local time: no text from ``start_s`` until ``end_s``."""

    start_s: int
    end_s: int

    def __str__(self) -> str:
        return f"{clock_time(self.start_s)}-{clock_time(self.end_s)}"

    def allowed_hours(self) -> Weekly:
        """The same hours every day: the complement of the quiet window."""
        if self.start_s > self.end_s:  # crosses midnight: allowed from end to start
            return Weekly.every_day((self.end_s, self.start_s))
        # Quiet within one day (e.g. 01:00-06:00): allowed before it and after it.
        parts = [(0, self.start_s), (self.end_s, DAY_S)]
        return Weekly.every_day(*(p for p in parts if p[0] < p[1]))

    def is_quiet(self, second: int) -> bool:
        if self.start_s > self.end_s:
            return second >= self.start_s or second < self.end_s
        return self.start_s <= second < self.end_s


def _seconds(text: str, h: str, m: str, s: str | None) -> int:
    hour, minute, second = int(h), int(m), int(s or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(
            f"quiet hours {text!r}: {h}:{m}{':' + s if s else ''} is not a time of day "
            "(00:00 to 23:59:59)"
        )
    return hour * 3600 + minute * 60 + second


def parse_window(text: str) -> Window:
    """Parse "21:00-08:00" (or "21:00:00-08:00:30") into a Window, or raise ValueError.

    The window may cross midnight. It is refused when it is not two times of day
    joined by "-", when a time is out of range, or when both ends are the same
    (quiet all day or never: neither is what a campaign means by a window).
    """
    if not isinstance(text, str):
        raise ValueError(f"quiet hours must be text like '21:00-08:00', not {type(text).__name__}")
    match = _WINDOW_RE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"quiet hours {text!r} is not a window: write start-end in local time, "
            "e.g. '21:00-08:00' (HH:MM or HH:MM:SS, may cross midnight)"
        )
    h1, m1, s1, h2, m2, s2 = match.groups()
    window = Window(_seconds(text, h1, m1, s1), _seconds(text, h2, m2, s2))
    if window.start_s == window.end_s:
        raise ValueError(
            f"quiet hours {text!r} starts and ends at the same time: the window would be "
            "empty or the whole day"
        )
    return window
