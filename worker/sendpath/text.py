"""The text a send path is working on: its record, as claimed, and what the gates learnt."""

from __future__ import annotations

from dataclasses import dataclass

from worker.carriers import UNKNOWN as UNKNOWN_CARRIER

DEFAULT_ROUTE = "default"


@dataclass(slots=True)
class Text:
    """One claimed text. ``record`` is its Redis record as the claim returned it."""

    id: str
    record: dict[str, str]

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
