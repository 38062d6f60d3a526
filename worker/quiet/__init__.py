"""Quiet hours: no text reaches a recipient in their local night (issue 13).

    window    parse_window("21:00-08:00"): a campaign's quiet window
    zones     the zones a number may be in (phonenumbers, narrowed by region)
    states    stricter state hours, as a table with their sources
    schedule  the time math: is a moment allowed, when is the next opening
    policy    QuietPolicy(...).decide(number, now_ms): the pure function the gate calls

The send-path gate is worker/sendpath/gates/quiet.py.
"""

from __future__ import annotations

from worker.quiet.policy import (
    ALLOWED,
    Decision,
    NoOpening,
    QuietPolicy,
    Rules,
    ZonePolicy,
    local_time_ok,
    policies_from_settings,
)
from worker.quiet.window import Window, parse_window

__all__ = [
    "ALLOWED",
    "Decision",
    "NoOpening",
    "QuietPolicy",
    "Rules",
    "Window",
    "ZonePolicy",
    "local_time_ok",
    "parse_window",
    "policies_from_settings",
]
