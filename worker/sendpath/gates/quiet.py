"""Quiet hours: a text that reaches the gate in its recipient's quiet hours is held.

It is held until the window opens (``until_ms``): the timed queue redelivers it
then and it passes the whole send path again, so its release goes through the
rate limiter like any text. A night's backlog all opens at the same instant; the
limiter's reservations space the sends, and each text's redelivery is also
moved by a small offset of its own (0 to ``spread_ms``, from its message id), so
the delay queue does not hand 100k messages to the workers in one instant. The
offset is never negative: nothing goes before the opening, and the texts whose
offset is 0 go at the opening exactly.

A campaign without quiet hours has no policy here and its texts go at once. A
number no moment is allowed for (quiet_hours.Decision.never) ends ``failed``
with the reason, rather than wait for ever.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

from worker.models import HELD_FOR_FIELD, HELD_FOR_QUIET_HOURS, Status
from worker.quiet import QuietPolicy
from worker.sendpath.gates.base import GO, Verdict, end, hold
from worker.sendpath.text import Text
from worker.store import now_ms

READS: tuple[str, ...] = ()  # the claimed record only; the policy is pure
WRITES: tuple[str, ...] = ()

SPREAD_MS = 5_000
HELD_FOR = {HELD_FOR_FIELD: HELD_FOR_QUIET_HOURS}


def spread_offset_ms(message_id: str, spread_ms: int = SPREAD_MS) -> int:
    """A text's own redelivery offset in [0, spread_ms): the same every time it is held."""
    if spread_ms <= 1:
        return 0
    digest = hashlib.blake2b(message_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % spread_ms


class QuietHoursGate:
    name = "quiet_hours"

    def __init__(
        self,
        policies: Mapping[str, QuietPolicy],
        clock: Callable[[], int] = now_ms,
        spread_ms: int = SPREAD_MS,
    ) -> None:
        self.policies = policies
        self.clock = clock
        self.spread_ms = spread_ms

    async def check(self, text: Text) -> Verdict:
        policy = self.policies.get(text.campaign)
        if policy is None:
            return GO
        decision = policy.decide(text.to, self.clock())
        if decision.allowed:
            return GO
        if decision.until_ms is None:  # never: no moment suits all the number's zones
            return end(Status.FAILED, decision.reason)
        until_ms = decision.until_ms + spread_offset_ms(text.id, self.spread_ms)
        return hold(decision.reason, until_ms=until_ms, fields=dict(HELD_FOR))
