"""The send path's settings, as the composition root derives them from ``Settings``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from worker.retry import Backoff
from worker.sendpath.text import DEFAULT_ROUTE
from worker.settings import LimitsSettings

DEFAULT_LEASE_MS = 60_000
# Every provider paused by hand: no breaker says when to look again, so each text
# backs off on its own (doubling from the base, capped), rather than a whole
# backlog bouncing through the queue every second until an operator resumes one.
DEFAULT_NO_PROVIDER_BASE_WAIT_MS = 1000
DEFAULT_NO_PROVIDER_MAX_WAIT_MS = 30_000


@dataclass(slots=True)
class PipelineConfig:
    queue: str
    public_url: str
    routes: Mapping[str, Sequence[str]]
    numbers: Mapping[str, Sequence[str]]
    max_attempts: int
    backoff: Backoff
    lease_ms: int = DEFAULT_LEASE_MS
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    # worker.retry_ambiguous: false ends an ambiguous answer "failed" at once.
    retry_ambiguous: bool = True
    no_provider_backoff: Backoff = field(
        default_factory=lambda: Backoff(
            base_ms=DEFAULT_NO_PROVIDER_BASE_WAIT_MS, cap_ms=DEFAULT_NO_PROVIDER_MAX_WAIT_MS
        )
    )

    def route(self, campaign: str) -> Sequence[str]:
        return self.routes.get(campaign) or self.routes[DEFAULT_ROUTE]
