"""Per carrier: what happened to every text a provider accepted, and when.

A benchmark of the deliverability watch needs to know, per carrier, how many
texts went *into* a filter it set up ("texts into the block"), and sendq's own
counts cannot say: a silent drop looks delivered to sendq. The engine tells
this log each accepted text's carrier, acceptance time, fate and receipt:

* fate: ``reached_handset``, ``silently_dropped`` (a ``silent`` rule),
  ``undelivered_by_cut`` (a ``deliver_share`` rule) or ``filtered`` (a rule
  with an error, receipt mode);
* receipt: ``receipts_due`` (scheduled), ``receipts_suppressed`` (a
  ``receipts = false`` rule or scenario) or ``receipts_no_url`` (the send
  named no callback and the account has none); of those due, the poster later
  reports ``receipts_posted`` (answered below 400) or ``receipts_failed``.

``CarrierLog.window(carrier, after, until)`` counts the fates and receipts of
the texts accepted with ``after < at < until`` (Unix seconds), by bisecting the
acceptance times: they are appended in the order the single event loop took
the texts, each stamped with ``time.time()`` then, so they are sorted unless
the wall clock is stepped back mid-run.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Final

from worker.simulator.carriers import CARRIERS
from worker.simulator.receipts import Attempt


class Fate(IntEnum):
    """What became of an accepted text (the low two bits of its mark)."""

    HANDSET = 0
    SILENT = 1
    CUT = 2
    FILTERED = 3


class ReceiptFate(IntEnum):
    """What became of its receipt (the next bits)."""

    DUE = 0
    SUPPRESSED = 1
    NO_URL = 2


# The counters' names, by value.
FATES: Final = ("reached_handset", "silently_dropped", "undelivered_by_cut", "filtered")
RECEIPTS: Final = ("receipts_due", "receipts_suppressed", "receipts_no_url")
_RECEIPT_SHIFT = 2
_FATE_MASK = 0b11


@dataclass(slots=True)
class CarrierTally:
    accepted: int = 0
    reached_handset: int = 0
    silently_dropped: int = 0
    undelivered_by_cut: int = 0
    filtered: int = 0
    receipts_due: int = 0
    receipts_suppressed: int = 0
    receipts_no_url: int = 0
    receipts_posted: int = 0
    receipts_failed: int = 0

    def observe_receipt(self, attempt: Attempt) -> None:
        """The receipt poster's observer: count each receipt's last attempt."""
        if not attempt.final:
            return
        if attempt.status is not None and attempt.status < 400:
            self.receipts_posted += 1
        else:
            self.receipts_failed += 1

    def as_json(self) -> dict[str, int]:
        return asdict(self)


class CarrierLog:
    """Every accepted text's carrier, time, fate and receipt; counts per carrier."""

    def __init__(self) -> None:
        self._tallies: dict[str, CarrierTally] = {}
        self._times: dict[str, array[float]] = {}
        self._marks: dict[str, bytearray] = {}
        self.clear()

    def clear(self) -> None:
        """A new run. Receipts still in flight count into the old tallies, not these."""
        self._tallies = {carrier: CarrierTally() for carrier in CARRIERS}
        self._times = {carrier: array("d") for carrier in CARRIERS}
        self._marks = {carrier: bytearray() for carrier in CARRIERS}

    def tally(self, carrier: str) -> CarrierTally:
        found = self._tallies.get(carrier)
        if found is None:  # carriers.py names them all; this only guards a new one
            found = self._tallies[carrier] = CarrierTally()
            self._times[carrier], self._marks[carrier] = array("d"), bytearray()
        return found

    def record(self, carrier: str, at: float, fate: Fate, receipt: ReceiptFate) -> None:
        """One accepted text: its counts, and its mark on the carrier's timeline."""
        tally = self.tally(carrier)
        tally.accepted += 1
        if fate == Fate.HANDSET:
            tally.reached_handset += 1
        elif fate == Fate.SILENT:
            tally.silently_dropped += 1
        elif fate == Fate.CUT:
            tally.undelivered_by_cut += 1
        else:
            tally.filtered += 1
        if receipt == ReceiptFate.DUE:
            tally.receipts_due += 1
        elif receipt == ReceiptFate.SUPPRESSED:
            tally.receipts_suppressed += 1
        else:
            tally.receipts_no_url += 1
        self._times[carrier].append(at)
        self._marks[carrier].append(fate | receipt << _RECEIPT_SHIFT)

    def carriers(self) -> dict[str, dict[str, int]]:
        return {carrier: tally.as_json() for carrier, tally in self._tallies.items()}

    def window(
        self, carrier: str, after: float = -math.inf, until: float = math.inf
    ) -> dict[str, int]:
        """Counts of the carrier's texts accepted in ``after < at < until`` (Unix s)."""
        start, end = self._span(carrier, after, until)
        marks = Counter(self._marks.get(carrier, bytearray())[start:end])
        counts = {"accepted": end - start} | dict.fromkeys(FATES + RECEIPTS, 0)
        for mark, n in marks.items():
            counts[FATES[mark & _FATE_MASK]] += n
            counts[RECEIPTS[mark >> _RECEIPT_SHIFT]] += n
        return counts

    def times(self, carrier: str, after: float = -math.inf, until: float = math.inf) -> list[float]:
        """The acceptance times (Unix s) of the carrier's texts in the window."""
        start, end = self._span(carrier, after, until)
        return self._times.get(carrier, array("d"))[start:end].tolist()

    def _span(self, carrier: str, after: float, until: float) -> tuple[int, int]:
        times = self._times.get(carrier, array("d"))
        start = bisect_right(times, after)
        return start, max(start, bisect_left(times, until))
