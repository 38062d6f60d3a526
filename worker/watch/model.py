"""The watch's counts and records as values: what a cohort holds, where an event goes. Pure.

See worker/watch/counters.py for how they are kept in Redis.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from worker.watch.settings import WatchSettings

BASELINE_BUCKET_S = 60
UNKNOWN_CARRIER = "unknown"  # worker.carriers.UNKNOWN (not imported: this module is pure)
CODES = {
    "sent": "s",
    "delivered": "d",
    "undelivered": "u",
    "late": "l",
    "unconfirmed": "o",
    "replies": "r",
    "optouts": "x",
}
NAMES = {code: name for name, code in CODES.items()}


@dataclass(slots=True)
class Counts:
    sent: int = 0
    delivered: int = 0
    undelivered: int = 0
    late: int = 0
    unconfirmed: int = 0
    replies: int = 0
    optouts: int = 0

    @property
    def overdue(self) -> int:
        """Texts with no final receipt within due_s (meaningful once the cohort is due),
        late receipts or not: what the receipt timeout ends, shown beside the signal."""
        return max(0, self.sent - self.delivered - self.undelivered)

    @property
    def receipted(self) -> int:
        """Texts with a final receipt so far, late ones too: the receipts signal's event.

        Late receipts count because a stream that is slow is not a stream that has
        stopped: a slow carrier's overdue cohorts fill in as its receipts come. One
        whose receipts mostly come after due_s still looks stopped when they are
        due, so due_s must sit above the slowest carrier's usual median delay.
        """
        return self.delivered + self.undelivered + self.late

    def add(self, other: Counts) -> None:
        for name in CODES:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True, slots=True)
class Layout:
    """Where an event is counted, and what is kept: the settings the counters need."""

    bucket_s: int
    window_s: int
    baseline_s: int
    due_s: float
    reply_lag_s: float

    @classmethod
    def of(cls, settings: WatchSettings) -> Layout:
        return cls(
            settings.bucket_s,
            settings.window_s,
            settings.baseline_s,
            settings.due_s,
            settings.reply_lag_s,
        )

    def window_from_s(self, now_ms: int) -> int:
        """The oldest bucket start still kept in the window hash."""
        return now_ms // 1000 - self.window_s - self.bucket_s

    def baseline_from_s(self, now_ms: int) -> int:
        return now_ms // 1000 - self.window_s - self.baseline_s - BASELINE_BUCKET_S

    def keep_ms(self) -> int:
        """How long a pair with no event is kept at all."""
        return (self.window_s + self.baseline_s + BASELINE_BUCKET_S + self.bucket_s) * 1000


@dataclass(frozen=True, slots=True)
class PairCounts:
    carrier: str
    campaign: str
    # Bucket start, epoch s -> counts: the window's cohorts, and the baseline's minutes.
    buckets: dict[int, Counts]
    baseline: dict[int, Counts]
    # Cohorts sent before this are not evidence (an operator resumed the pair then).
    since_ms: int = 0
    # The same for one signal: signal -> epoch ms (the carrier breaker's probes
    # closed it then: set the first time that signal trips after; see watch.py).
    signal_since_ms: Mapping[str, int] = field(default_factory=dict)

    def since_for(self, signal: str) -> int:
        """Cohorts of ``signal`` sent before this are not evidence, epoch ms."""
        return max(self.since_ms, self.signal_since_ms.get(signal, 0))


@dataclass(frozen=True, slots=True)
class TripRecord:
    """A signal that tripped for a pair, kept until it clears (or an operator resumes)."""

    signal: str
    action: str
    at_ms: int
    evidence: str
    reference: str
    statistic: float
    p_value: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> TripRecord:
        return cls(**json.loads(raw))


@dataclass(frozen=True, slots=True)
class Snapshot:
    now_ms: int
    pairs: tuple[PairCounts, ...]
    trips: dict[str, TripRecord]
    # Fields seen that have aged out, per key: the check round deletes them.
    stale: dict[str, list[str]] = field(default_factory=dict)

    def by_campaign(self) -> dict[str, list[PairCounts]]:
        out: dict[str, list[PairCounts]] = {}
        for pair in self.pairs:
            out.setdefault(pair.campaign, []).append(pair)
        return out


def attempt_carrier(record: Mapping[str, str], attempt: object) -> str:
    """The carrier a text's attempt was counted under when it was sent.

    A receipt (Telnyx names the carrier) or a port may rename the record's carrier
    later; every event of one attempt (sent, receipt, overdue, reply) must land in
    the same pair, or the old pair shows texts with no receipts and the new one
    receipts with no texts. Records from before the field: the record's carrier.
    """
    return record.get(f"a{attempt}:carrier") or record.get("carrier") or UNKNOWN_CARRIER


def pair_name(carrier: str, campaign: str) -> str:
    """The carrier x campaign breaker's name (worker.holds.breaker_name's form)."""
    return f"{carrier}:{campaign}"


def trip_key(carrier: str, campaign: str, signal: str) -> str:
    return f"{pair_name(carrier, campaign)}|{signal}"


def counter_for(
    layout: Layout, event: str, sent_ms: int, at_ms: int, delivered: bool = True
) -> str | None:
    """The counter an event goes to, or None when it is not counted.

    Events: sent, receipt, overdue, reply, optout. Lateness is judged from the
    text's send, so every cohort is judged alike however old it is when read.
    """
    if event == "sent":
        return "sent"
    if event == "overdue":
        return "unconfirmed"
    age_ms = at_ms - sent_ms
    if event == "receipt":
        if age_ms > layout.due_s * 1000:
            return "late"
        return "delivered" if delivered else "undelivered"
    if event in ("reply", "optout"):
        if age_ms > layout.reply_lag_s * 1000:
            return None  # too late to count
        return "replies" if event == "reply" else "optouts"
    raise ValueError(f"{event!r} is not a watch event (sent, receipt, overdue, reply, optout)")
