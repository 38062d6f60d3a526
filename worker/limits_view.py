"""What ``sendq limits status`` shows: each configured limiter, its setting and its use.

The limiters are the ones a text could meet: every routed provider's account, each of
its sending numbers, and each configured carrier for each campaign seen so far. Use is
read through the ``Limiter`` (the state layer owns the keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from worker.ratelimit import DailyCap, Limit, Limiter, limits_for
from worker.settings import Settings

RECENT_MINUTES = 5
# With no campaign seen yet, carrier limits are still shown, for the default campaign.
DEFAULT_CAMPAIGN = "default"


def configured_limits(settings: Settings, campaigns: Sequence[str]) -> list[Limit]:
    """Every distinct limiter the configuration sets up, in first-met order."""
    seen: dict[str, Limit] = {}
    for provider in settings.routed_providers():
        for number in getattr(settings.providers, provider).numbers:
            # "" stands for "no carrier limits configured": provider and number limits only.
            for carrier in list(settings.limits.carriers) or [""]:
                for campaign in campaigns or [DEFAULT_CAMPAIGN]:
                    found = limits_for(
                        settings.limits,
                        provider=provider,
                        sender=number,
                        carrier=carrier or None,
                        campaign=campaign,
                    )
                    for limit in found:
                        seen.setdefault(limit.name, limit)
    return list(seen.values())


def limit_rows(
    settings: Settings, limiter: Limiter, campaigns: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per limiter: kind, setting, how far ahead it is booked, use by minute."""
    return [_row(limit, limiter) for limit in configured_limits(settings, campaigns)]


def _row(limit: Limit, limiter: Limiter) -> dict[str, Any]:
    use = limiter.recent_use(limit.name, RECENT_MINUTES)
    row: dict[str, Any] = {
        "name": limit.name,
        "used_last_5m": sum(use.values()),
        "used_by_minute": use,
    }
    if isinstance(limit, DailyCap):
        return row | {"kind": "daily_cap", "cap": limit.cap, "tz": limit.tz}
    return row | {
        "kind": "rate",
        "rate": limit.rate,
        "period_s": limit.period_s,
        "burst": limit.burst,
        "booked_ahead_s": round(limiter.booked_ahead_s(limit), 3),
    }
