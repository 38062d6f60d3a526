"""Answers and receipts feed the carrier breakers: filtering often shows only in receipts.

One object for both paths, so a send answer and a receipt about the same
carrier weigh on the same breaker by the same table (``worker.verdicts``).
"""

from __future__ import annotations

from collections.abc import Mapping

from worker.alerts import Alerter
from worker.breaker import AsyncBreakers
from worker.carriers import UNKNOWN as UNKNOWN_CARRIER
from worker.carriers import CarrierResolver
from worker.holds import breaker_name
from worker.models import Category
from worker.verdicts import answer_carrier_weight, receipt_carrier_weight


class CarrierFeed:
    def __init__(
        self,
        breakers: AsyncBreakers,
        carriers: CarrierResolver,
        alerter: Alerter,
        ambiguous_weight: float = 0.3,
    ) -> None:
        self.breakers = breakers
        self.carriers = carriers
        self.alerter = alerter
        self.ambiguous_weight = ambiguous_weight

    async def learn_carrier(self, number: str, carrier: str | None) -> None:
        """A provider named the recipient's carrier: the next text to it goes under it."""
        if carrier:
            await self.carriers.remember(number, carrier)

    async def answer(self, name: str, category: Category, code: str | None) -> None:
        """A send answer about a text of breaker ``name``."""
        weight = answer_carrier_weight(category, self.ambiguous_weight)
        if weight is not None:
            await self._record(name, weight, code, source="send")

    async def receipt(
        self, record: Mapping[str, str], status: str, category: Category, code: str | None
    ) -> None:
        """A delivery receipt about the text ``record``."""
        weight = receipt_carrier_weight(status, category, self.ambiguous_weight)
        if weight is None:
            return
        carrier = record.get("carrier") or UNKNOWN_CARRIER
        name = breaker_name(carrier, record.get("campaign", ""))
        await self._record(name, weight, code, source="receipt")

    async def _record(self, name: str, weight: int, code: str | None, *, source: str) -> None:
        decision = await self.breakers.record(name, weight, code or "")
        if not decision.transition:
            return
        why = decision.why or (f"last error {code}" if code else "")
        extra = {"source": source} if source == "receipt" else {}
        self.alerter.announce("carrier", name, decision.transition, why, **extra)
