"""Expiry: a text past its ``send_before`` ends ``expired`` and is never sent.

Two deadlines apply: the record's ``send_before_ms`` (the earlier of the
text's own and its campaign's, as they were at enqueue) and the campaign's
``send_before`` as configured now, since an operator may set or move it while
texts wait. ``past_send_before`` is the rule, shared with the settler, which
asks it before an unconfirmed text is sent again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from worker import store
from worker.models import Status
from worker.sendpath.config import PipelineConfig
from worker.sendpath.gates.base import GO, Verdict, end
from worker.sendpath.text import DEFAULT_ROUTE, Text

READS: tuple[str, ...] = ()  # the claimed record and the configuration only
WRITES: tuple[str, ...] = ()

Clock = Callable[[], int]


def iso_utc(epoch_ms: int) -> str:
    """A deadline as operators write it: 2026-12-02T20:00:00Z."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def past_send_before(
    record: Mapping[str, str], campaign_send_before_ms: Mapping[str, int], now_ms: int
) -> str | None:
    """Why the text may no longer be sent at ``now_ms``, naming the deadline; None if it may.

    The campaign's deadline is named when it is the earlier (the record's own
    may be a copy of it, taken at enqueue).
    """
    own = int(record.get("send_before_ms") or 0) or None
    campaign = campaign_send_before_ms.get(record.get("campaign", DEFAULT_ROUTE))
    if campaign is not None and campaign < now_ms and (own is None or campaign <= own):
        return f"past its campaign's send_before {iso_utc(campaign)}"
    if own is not None and own < now_ms:
        return f"past send_before {iso_utc(own)}"
    return None


class ExpiryGate:
    name = "expiry"

    def __init__(self, config: PipelineConfig | None = None, clock: Clock = store.now_ms) -> None:
        # No config: only the record's own deadline (until every caller passes one).
        self.config = config
        self.clock = clock

    async def check(self, text: Text) -> Verdict:
        # Read at each check: the campaigns' deadlines are the configuration's now.
        deadlines = self.config.campaign_send_before_ms if self.config is not None else {}
        why = past_send_before(text.record, deadlines, self.clock())
        return end(Status.EXPIRED, why) if why else GO
