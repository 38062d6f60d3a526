"""Expiry: a text past its ``send_before`` ends ``expired`` and is never sent."""

from __future__ import annotations

from worker.models import Status
from worker.sendpath.gates.base import GO, Verdict, end
from worker.sendpath.text import Text
from worker.store import now_ms

READS: tuple[str, ...] = ()  # the claimed record only
WRITES: tuple[str, ...] = ()


class ExpiryGate:
    name = "expiry"

    async def check(self, text: Text) -> Verdict:
        send_before = text.record.get("send_before_ms")
        if send_before and int(send_before) < now_ms():
            return end(Status.EXPIRED, "past send_before")
        return GO
