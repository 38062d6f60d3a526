"""The per-campaign counts as operators read them: by status, and held texts by reason.

The stats hash (``keys.stats``) holds ``{campaign}|{status}`` counts and, kept by
lua/transition.lua, ``{campaign}|held:{held_for}``: the texts held now for each
reason (``quiet_hours``, ``carrier``). ``Store.stats_and_reasons`` reads both as one
campaign -> name -> count mapping; ``split`` tells them apart, for
``sendq messages stats`` and ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from worker.models import Status

HELD_FOR_PREFIX = "held:"
QUIET_HOURS = "quiet_hours"
# Reported for every campaign, zero included, so a dashboard's series always exist.
REPORTED_STATUSES = (Status.HELD.value, Status.SUPPRESSED.value, Status.EXPIRED.value)
REPORTED_HELD_FOR = (QUIET_HOURS,)


@dataclass(frozen=True, slots=True)
class Counts:
    """``by_status``: campaign -> status -> texts; ``held_for``: campaign -> reason -> texts."""

    by_status: dict[str, dict[str, int]]
    held_for: dict[str, dict[str, int]]

    def campaigns(self) -> list[str]:
        return sorted(self.by_status.keys() | self.held_for.keys())


def split(stats: Mapping[str, Mapping[str, int]]) -> Counts:
    """Separate the held-for breakdown from the status counts of ``Store.stats_and_reasons()``."""
    by_status: dict[str, dict[str, int]] = {}
    held_for: dict[str, dict[str, int]] = {}
    for campaign, counts in stats.items():
        for name, count in counts.items():
            if name.startswith(HELD_FOR_PREFIX):
                held_for.setdefault(campaign, {})[name[len(HELD_FOR_PREFIX) :]] = count
            else:
                by_status.setdefault(campaign, {})[name] = count
    return Counts(by_status, held_for)
