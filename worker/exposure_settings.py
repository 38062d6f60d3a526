"""``[limits.carrier]``: the exposure limit per carrier x campaign (worker/exposure.py).

    [limits.carrier]
    max_unconfirmed = 100   # at most 100 texts of one carrier x campaign out
                            # with no final receipt yet; unset: no limit
    adaptive = true         # AIMD below that ceiling, from `start`
    start = 10

Why a cap: when a carrier's rejections show only in receipts that come late, a
block swallows about (rate x receipt delay) texts before the breaker can know.
The cap makes that number the operator's.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The receipts' own timeout ends a sent text "unconfirmed" (worker/overdue.py) and
# frees its slot; a slot still held this much later lost its release (a crash
# between the two) and is dropped, so a lost receipt never keeps a slot for ever.
DEFAULT_OVERDUE_MARGIN_S = 60.0
# A carrier x campaign idle this long (no slot taken) starts again at `start`: what
# was learnt of the carrier an hour ago is not evidence now (TCP restarts after idle).
DEFAULT_IDLE_RESTART_S = 3600.0


MAX_SECONDS = 7 * 86_400
MAX_TEXTS = 1_000_000_000  # far past any campaign, and inside what Lua counts exactly


class ExposureSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The cap (the ceiling, when adaptive) on texts out with no final receipt, per
    # carrier x campaign. None: off, and the send path makes no Redis call for it.
    max_unconfirmed: int | None = Field(None, ge=1, le=MAX_TEXTS)
    # Adapt the cap under max_unconfirmed, as TCP's congestion window: start at
    # `start` (a campaign's first texts, and after an operator resumes the carrier),
    # grow on confirmed deliveries, shrink on carrier rejections and overdue receipts.
    adaptive: bool = False
    start: int = Field(10, ge=1, le=MAX_TEXTS)
    # The cap never shrinks below this, so a carrier's texts always trickle.
    floor: int = Field(1, ge=1, le=MAX_TEXTS)
    # Slots added per confirmed delivery: below the slow-start threshold `growth`
    # each (1.0 doubles the cap per round of receipts), above it growth / cap each
    # (about `growth` more per round).
    growth: float = Field(1.0, gt=0, le=10)
    # A rejection or an overdue receipt multiplies the cap by this, once per round:
    # the losses among texts taken before the last shrink are of that round.
    shrink: float = Field(0.5, gt=0, lt=1)
    # Bounded at a week, as Redis's PEXPIRE must hold them in milliseconds (a value
    # past that would refuse every acquire, and so every text, at run time).
    overdue_margin_s: float = Field(
        DEFAULT_OVERDUE_MARGIN_S, ge=0, le=MAX_SECONDS, allow_inf_nan=False
    )
    idle_restart_s: float = Field(DEFAULT_IDLE_RESTART_S, gt=0, le=MAX_SECONDS, allow_inf_nan=False)

    @model_validator(mode="after")
    def _consistent(self) -> ExposureSettings:
        ceiling = self.max_unconfirmed
        if ceiling is None:
            if self.adaptive:
                raise ValueError("adaptive = true needs max_unconfirmed, the cap's ceiling")
            return self
        if self.adaptive and self.start > ceiling:
            if "start" in self.model_fields_set:
                raise ValueError(f"start ({self.start}) is above max_unconfirmed ({ceiling})")
            # The default start, above a small cap the operator chose: start at the cap.
            self.start = ceiling
        if self.adaptive and self.floor > self.start:
            raise ValueError(f"floor ({self.floor}) is above start ({self.start})")
        return self
