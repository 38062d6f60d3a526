"""``[watch]``: the deliverability watch's settings (mounted in worker/settings.py).

Each signal has its own section (``[watch.replies]``, ...) with its own defaults,
so a file may change one field of one signal. What the ratios mean is the test's
(worker/watch/sequential.py): ``ok_ratio`` is how far the carrier's rate may sit
from its reference's and still be normal, ``bad_ratio`` what the test is tuned
to catch. The defaults were tuned on the simulation in tests/test_watch_sequential.py.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from worker.watch.sequential import Hypotheses

Action = Literal["pause", "alert", "off"]
# The signals whose events are good news (replies, on-time receipts): fewer is worse.
FEWER_IS_WORSE = ("receipts", "replies")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignalSettings(_Section):
    # "pause": pause the carrier x campaign breaker (who="watch"), so its texts are
    # held until an operator resumes it; "alert": alert once, until the signal clears;
    # "off": count and show it, never act.
    action: Action = "pause"
    # The carrier's rate over its reference's that is still normal (the test's H0).
    ok_ratio: float = Field(gt=0, le=1000)
    # The ratio the test is tuned to catch (H1): the farther from ok_ratio, the
    # less evidence a stark case needs, and the slower a mild one is caught.
    bad_ratio: float = Field(gt=0, le=1000)
    # Also compare the carrier with its own earlier rate (baseline_s), which
    # catches a drop on every carrier of a campaign at once.
    baseline: bool = True

    def hypotheses(self) -> Hypotheses:
        return Hypotheses(self.ok_ratio, self.bad_ratio)


class DeliverySettings(SignalSettings):
    """The undelivered share of final receipts: more is worse."""

    # 3x the others' undelivered share is still normal (carriers' lists differ).
    ok_ratio: float = Field(3.0, gt=0, le=1000)
    bad_ratio: float = Field(15.0, gt=0, le=1000)


class ReceiptsSettings(SignalSettings):
    """The share of texts past due_s with a final receipt (late ones too): fewer is
    worse (shown as the overdue share; tested this way round so a stopped stream is
    stark, and with late receipts so a slow one is not taken for it: see signals.py)."""

    # Carriers' receipts differ in speed, so a wide margin: 70% of the others' on-time
    # share is still normal (95% on time vs 66%); H1 is a stopped stream (a twentieth).
    ok_ratio: float = Field(0.7, gt=0, le=1)
    bad_ratio: float = Field(0.05, gt=0, le=1)
    # Off: receipts that stop for every carrier at once are our webhook or the
    # provider's, not a carrier's filter, and no carrier should be paused for them.
    baseline: bool = False


class RepliesSettings(SignalSettings):
    """Replies per delivered text: fewer is worse."""

    # Carriers' people answer a little differently (3.5% vs 4.5% is 0.8).
    ok_ratio: float = Field(0.75, gt=0, le=1)
    # Tuned for silence: replies at a twentieth of the others' (a filter that still
    # lets some through is caught too, more slowly, down to about a quarter).
    bad_ratio: float = Field(0.05, gt=0, le=1)
    # Off: replies that stop for every carrier at once are our inbound webhook's
    # outage or a provider's inbound configuration, not a carrier's filter, and
    # pausing every carrier of the campaign for them would stop it silently.
    # (A campaign on one carrier is then judged on delivery and receipts alone.)
    baseline: bool = False


class OptoutsSettings(SignalSettings):
    """Opt-outs per delivered text: more is worse; a spike warns of filtering to come."""

    action: Action = "alert"
    ok_ratio: float = Field(2.0, gt=0, le=1000)
    bad_ratio: float = Field(8.0, gt=0, le=1000)


class WatchSettings(_Section):
    enabled: bool = True
    # How often the watch evaluates every carrier x campaign. Each worker asks on
    # its hold keeper's tick; one round per check_s runs, on whichever worker is first.
    check_s: float = Field(2.0, ge=0.5, le=300)
    # The false-alarm rate: the chance that one test of a carrier sitting exactly
    # at ok_ratio trips within one window_s. A normal carrier sits well inside and
    # trips far less often (see the README). Smaller needs more evidence per trip.
    alpha: float = Field(0.01, gt=0, le=0.5)
    # The least evidence for any trip: the carrier's texts in the run, and its reference's.
    min_texts: int = Field(30, ge=1, le=1_000_000)
    # Counts are kept per cohort: the texts sent in the same bucket_s.
    bucket_s: int = Field(5, ge=1, le=300)
    # How far back the test looks; a run of evidence may start anywhere in it.
    window_s: int = Field(900, ge=60, le=86_400)
    # The carrier's own earlier rate, over this long before the window (0: none).
    baseline_s: int = Field(3600, ge=0, le=7 * 86_400)
    # A text with no final receipt this long after it was sent is overdue (a
    # receipt after it still settles the text, but counts as late here).
    due_s: float = Field(60.0, gt=0, le=86_400)
    # Replies and opt-outs count when they come within this long of their text
    # (later ones are not counted), so every cohort is judged alike, however old.
    reply_lag_s: float = Field(120.0, gt=0, le=86_400)
    delivery: DeliverySettings = Field(default_factory=lambda: DeliverySettings())
    receipts: ReceiptsSettings = Field(default_factory=lambda: ReceiptsSettings())
    replies: RepliesSettings = Field(default_factory=lambda: RepliesSettings())
    optouts: OptoutsSettings = Field(default_factory=lambda: OptoutsSettings())

    @model_validator(mode="after")
    def _consistent(self) -> WatchSettings:
        if self.window_s < 10 * self.bucket_s:
            raise ValueError(
                f"window_s ({self.window_s}) must be at least 10 buckets of {self.bucket_s} s"
            )
        for name, limit in (("due_s", self.due_s), ("reply_lag_s", self.reply_lag_s)):
            if limit >= self.window_s:
                raise ValueError(f"{name} ({limit:g}) must be shorter than window_s")
        for name in ("delivery", "receipts", "replies", "optouts"):
            signal: SignalSettings = getattr(self, name)
            try:
                hyp = signal.hypotheses()
            except ValueError as exc:
                raise ValueError(f"[watch.{name}] {exc}") from None
            fewer = name in FEWER_IS_WORSE
            if hyp.fewer_is_worse != fewer:
                side = "below 1 (fewer is worse)" if fewer else "1 or more"
                raise ValueError(f"[watch.{name}] ok_ratio and bad_ratio must be {side}")
        return self

    def signal(self, name: str) -> SignalSettings:
        section = getattr(self, name, None)
        if not isinstance(section, SignalSettings):
            raise KeyError(name)
        return section
