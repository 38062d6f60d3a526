"""The carrier breaker: a paused or open carrier's texts are held, not sent.

The text's carrier is resolved here (the override file, the cache, a lookup)
and kept on the text, so the route's limits and the answer's feedback use it.
A carrier-wide breaker (``carrier:*``) holds every campaign of the carrier.
"""

from __future__ import annotations

import structlog

from worker.breaker import AsyncBreakers, State
from worker.carriers import UNKNOWN as UNKNOWN_CARRIER
from worker.carriers import CarrierResolver
from worker.holds import ALL_CAMPAIGNS, breaker_name
from worker.models import HELD_FOR_CARRIER, HELD_FOR_FIELD
from worker.sendpath.gates.base import GO, Verdict, hold
from worker.sendpath.parts import Parts
from worker.sendpath.text import Text

READS = ("carrier", "breaker")  # keys.carrier (cache), keys.breaker (name and wide)
WRITES = ("breaker", "breaker_names", "audit", "hold")  # admit's probes and transitions

log = structlog.get_logger("sendq.delivery")


class CarrierGate:
    name = "carrier"

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.carriers: CarrierResolver = parts.carriers
        self.breakers: AsyncBreakers = parts.carrier_breakers

    async def check(self, text: Text) -> Verdict:
        if text.carrier == UNKNOWN_CARRIER:
            text.carrier = await self.carriers.carrier_of(text.to)
        structlog.contextvars.bind_contextvars(carrier=text.carrier)
        name = breaker_name(text.carrier, text.campaign)
        decision = await self.breakers.admit(name, wider=breaker_name(text.carrier, ALL_CAMPAIGNS))
        self.parts.announce(self.breakers, name, decision)
        if decision.allowed:
            text.probe = decision.state is State.HALF_OPEN
            return GO
        return hold(
            f"carrier {name} is {decision.state}",
            hold_list=name,
            fields={"carrier": text.carrier, HELD_FOR_FIELD: HELD_FOR_CARRIER},
        )
