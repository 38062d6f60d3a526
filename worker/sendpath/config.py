"""The send path's settings, as the composition root derives them from ``Settings``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from worker.quiet import QuietPolicy
from worker.retry import Backoff
from worker.sendpath.text import DEFAULT_ROUTE
from worker.settings import LimitsSettings
from worker.store import now_ms

DEFAULT_LEASE_MS = 60_000
DEFAULT_RECEIPT_TIMEOUT_MS = 600_000
# Long enough for a late receipt (most come within seconds), short enough that
# an operator sees the question while the campaign is still running.
DEFAULT_UNCONFIRMED_WAIT_MS = 120_000
# A double text costs a program its recipients' goodwill and the carriers'
# trust; a missed one is counted and visible (see README, "Unconfirmed").
DEFAULT_ON_UNCONFIRMED = "fail"
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
    # worker.unconfirmed_wait_s and worker.on_unconfirmed (settle.py).
    unconfirmed_wait_ms: int = DEFAULT_UNCONFIRMED_WAIT_MS
    on_unconfirmed: str = DEFAULT_ON_UNCONFIRMED
    no_provider_backoff: Backoff = field(
        default_factory=lambda: Backoff(
            base_ms=DEFAULT_NO_PROVIDER_BASE_WAIT_MS, cap_ms=DEFAULT_NO_PROVIDER_MAX_WAIT_MS
        )
    )

    # Each configured campaign's organisation (its opt-out list); the rest: default_org.
    orgs: Mapping[str, str] = field(default_factory=dict)
    default_org: str = "default"
    # [campaigns.NAME] send_before, epoch ms: no text of the campaign goes after it.
    campaign_send_before_ms: Mapping[str, int] = field(default_factory=dict)
    # receipts.timeout_s: a sent text with no final receipt by then ends unconfirmed.
    receipt_timeout_ms: int = DEFAULT_RECEIPT_TIMEOUT_MS
    # [campaigns.NAME] quiet_hours, as policies; campaigns without any are not here.
    quiet: Mapping[str, QuietPolicy] = field(default_factory=dict)

    def receipt_due_ms(self) -> str:
        """When a text sent now is overdue for its final receipt (record field)."""
        return str(now_ms() + self.receipt_timeout_ms)

    def org(self, campaign: str) -> str:
        return self.orgs.get(campaign, self.default_org)

    def route(self, campaign: str) -> Sequence[str]:
        return self.routes.get(campaign) or self.routes[DEFAULT_ROUTE]
