"""The text a send path is working on: its record, as claimed, and what the gates learnt."""

from __future__ import annotations

from dataclasses import dataclass, field

from worker.carriers import UNKNOWN as UNKNOWN_CARRIER

DEFAULT_ROUTE = "default"


@dataclass(slots=True)
class Text:
    """One claimed text. ``record`` is its Redis record as the claim returned it.

    ``lease`` is the claim's lease id: every change this worker makes out of
    ``sending`` is fenced by it (lua/transition.lua), so a worker whose lease
    ran out changes nothing. ``pending`` holds record fields learnt since the
    last write (an attempt's outcome), written with the next change.
    """

    id: str
    record: dict[str, str]
    lease: str = ""
    pending: dict[str, str] = field(default_factory=dict)
    # When this attempt's rate-limit slot is, on this worker's monotonic clock
    # (None: no limiter applies); the send must leave within the margin of it.
    slot_at_s: float | None = None
    # Admitted as a half-open carrier breaker's probe: it goes even past the
    # exposure limit, since it is what tells the breaker the carrier is back.
    probe: bool = False
    # When the gates last said go, on this worker's monotonic clock: an attempt
    # after a wait asks them again (sendpath/route.py).
    gated_at_s: float = 0.0

    @property
    def attempt(self) -> int:
        """The number of the latest HTTP attempt (0: none yet)."""
        return int(self.record.get("attempt") or 0)

    def take_pending(self) -> dict[str, str]:
        out, self.pending = self.pending, {}
        return out

    @property
    def campaign(self) -> str:
        return self.record.get("campaign", DEFAULT_ROUTE)

    @property
    def to(self) -> str:
        return self.record["to"]

    @property
    def carrier(self) -> str:
        return self.record.get("carrier") or UNKNOWN_CARRIER

    @carrier.setter
    def carrier(self, name: str) -> None:
        self.record["carrier"] = name
