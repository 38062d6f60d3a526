"""Handset inboxes: what really arrived, so a run can count lost and doubled texts.

Every accepted text that no carrier filtered lands in its recipient's inbox,
noting which provider delivered it. A *double* is the same (recipient, body)
arriving more than once, through one provider or several (a failover that
resent a text the first provider had taken is a double too); tests and
benchmarks make each body unique, so any double is a duplicate send.

``copies(min_copies=2)`` lists, per (recipient, body), how many copies
arrived and through which providers: what a drill compares, text by text,
with what sendq counted (``GET /sim/copies``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from worker.simulator.carriers import CARRIERS


@dataclass(frozen=True, slots=True)
class Text:
    sid: str
    to: str
    sender: str
    body: str
    carrier: str
    at: float  # Unix time it reached the handset
    provider: str = "twilio"

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["from"] = data.pop("sender")
        return data


@dataclass(slots=True)
class CarrierCounts:
    delivered: int = 0
    filtered: int = 0
    doubled: int = 0


@dataclass(slots=True)
class ProviderCounts:
    delivered: int = 0
    filtered: int = 0
    doubled: int = 0


@dataclass(slots=True)
class Inboxes:
    _by_number: dict[str, list[Text]] = field(default_factory=dict)
    # (to, body) of every text that arrived -> copies; a second copy is a double.
    _copies: dict[tuple[str, str], int] = field(default_factory=dict)
    delivered: int = 0
    doubled: int = 0
    by_carrier: dict[str, CarrierCounts] = field(
        default_factory=lambda: {c: CarrierCounts() for c in CARRIERS}
    )
    by_provider: dict[str, ProviderCounts] = field(default_factory=dict)

    def deliver(self, text: Text) -> bool:
        """Put ``text`` in its recipient's inbox; True when it is a double."""
        self._by_number.setdefault(text.to, []).append(text)
        counts = self._counts(text.carrier)
        via = self._via(text.provider)
        self.delivered += 1
        counts.delivered += 1
        via.delivered += 1
        key = (text.to, text.body)
        copies = self._copies.get(key, 0) + 1
        self._copies[key] = copies
        if copies > 1:
            self.doubled += 1
            counts.doubled += 1
            via.doubled += 1
            return True
        return False

    def filtered(self, carrier: str, provider: str = "twilio") -> None:
        """A carrier dropped a text: it never reaches the handset, but the run counts it."""
        self._counts(carrier).filtered += 1
        self._via(provider).filtered += 1

    @property
    def unique(self) -> int:
        return len(self._copies)

    @property
    def texts_doubled(self) -> int:
        """How many distinct texts arrived more than once (``doubled`` counts extra copies)."""
        return sum(1 for n in self._copies.values() if n > 1)

    def texts(self, number: str) -> list[Text]:
        return list(self._by_number.get(number, ()))

    def numbers(self) -> list[str]:
        """Every handset that received a text."""
        return list(self._by_number)

    def copies(self, min_copies: int = 2) -> list[dict[str, Any]]:
        """Each (to, body) that arrived at least ``min_copies`` times: copies, sids, providers."""
        out = []
        for (to, body), n in self._copies.items():
            if n < min_copies:
                continue
            arrived = [t for t in self._by_number.get(to, ()) if t.body == body]
            out.append(
                {
                    "to": to,
                    "body": body,
                    "copies": n,
                    "sids": [t.sid for t in arrived],
                    "providers": [t.provider for t in arrived],
                }
            )
        return out

    def clear(self) -> None:
        self._by_number.clear()
        self._copies.clear()
        self.delivered = self.doubled = 0
        self.by_carrier = {c: CarrierCounts() for c in CARRIERS}
        self.by_provider = {}

    def _counts(self, carrier: str) -> CarrierCounts:
        counts = self.by_carrier.get(carrier)
        if counts is None:
            counts = self.by_carrier[carrier] = CarrierCounts()
        return counts

    def _via(self, provider: str) -> ProviderCounts:
        counts = self.by_provider.get(provider)
        if counts is None:
            counts = self.by_provider[provider] = ProviderCounts()
        return counts
