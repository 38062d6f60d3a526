"""The exposure limit: a carrier x campaign with its cap of texts out unconfirmed waits.

After the carrier gate (it needs the text's carrier). A text that may go takes
a slot of its carrier x campaign (``worker.exposure``) and goes; past the cap
it is held on the limit's own hold list, with no spinning and no retry spent,
until the hold keeper lets it in as slots free, oldest first. It then passes
every gate again, and finds the slot the keeper took for it.

Limit off (no ``limits.carrier.max_unconfirmed``): every text goes, and neither
this gate nor ``ExposureSlots`` makes a Redis call.

``ExposureSlots`` is the send path's side of giving slots back: a text that a
gate stopped, or that the route sent nothing for, returns its slot at once; one
that the carrier refused at send time shrinks the cap; one that was sent, or
may have been (unconfirmed), keeps its slot until its receipt or its overdue time.
"""

from __future__ import annotations

from collections.abc import Callable

from worker.exposure import (
    EXPOSURE_FIELD,
    HELD_FOR_EXPOSURE,
    AsyncExposure,
    Release,
    answer_release,
    hold_name,
)
from worker.holds import breaker_name
from worker.models import HELD_FOR_FIELD
from worker.sendpath.gates.base import GO, Verdict, hold
from worker.sendpath.route import Routed
from worker.sendpath.text import Text

READS = ("exposure", "exposure_cap", "hold")  # the slots, the cap, who waits
WRITES = ("exposure", "exposure_cap", "exposures")  # acquire: the slot, the names

Probe = Callable[[Text], bool]


def never_a_probe(_: Text) -> bool:
    return False


class ExposureGate:
    name = "exposure"

    def __init__(self, exposure: AsyncExposure, probe: Probe = never_a_probe) -> None:
        self.exposure = exposure
        # A breaker's probe goes even when the cap is full: it is what tells the
        # breaker the carrier is back, and the breaker bounds how many go.
        self.probe = probe

    async def check(self, text: Text) -> Verdict:
        if not self.exposure.enabled:
            return GO
        name = breaker_name(text.carrier, text.campaign)
        admission = await self.exposure.acquire(name, text.id, force=self.probe(text))
        # Written with the next change: where this text's slot is to be given back.
        text.pending[EXPOSURE_FIELD] = text.record[EXPOSURE_FIELD] = name
        if admission:
            return GO
        if admission.outstanding < admission.cap:
            why = f"exposure limit of {name}: {admission.waiting} texts wait for a slot first"
        else:
            why = (
                f"exposure limit of {name}: {admission.outstanding} of {admission.cap}"
                " texts await a final receipt"
            )
        fields = {"carrier": text.carrier, HELD_FOR_FIELD: HELD_FOR_EXPOSURE}
        return hold(why, hold_list=hold_name(name), fields=fields)


class ExposureSlots:
    """Gives back the slot of a text that did not go, or whose answer settles it."""

    def __init__(self, exposure: AsyncExposure) -> None:
        self.exposure = exposure

    async def stopped(self, text: Text, verdict: Verdict) -> None:
        """A gate held or ended the text: a slot it holds (a released text's, one
        kept while unconfirmed) returns. The limit's own hold took none."""
        if verdict.fields.get(HELD_FOR_FIELD) == HELD_FOR_EXPOSURE:
            return
        await self._release(text, Release.NOT_SENT)

    async def routed(self, text: Text, routed: Routed) -> None:
        """What the route did: nothing sent (a deferral, a fault, throttling) returns
        the slot, a carrier's block at send time shrinks the cap too, a sent or
        unconfirmed text keeps it. A stale lease changes nothing: the text is
        another worker's now, and so is its slot (the same id keeps one slot)."""
        if routed.stale:
            return
        if routed.defer is not None:
            await self._release(text, Release.NOT_SENT)
        elif routed.result is not None:
            outcome = answer_release(routed.result.category)
            if outcome is not None:
                await self._release(text, outcome)

    async def _release(self, text: Text, outcome: Release) -> None:
        await self.exposure.release_record(text.id, text.record, outcome)
