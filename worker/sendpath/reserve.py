"""Rate-limit slots: take the text's slot on every limiter at once, or say how long to wait.

A short wait is slept in the worker; a longer one is returned, and the text
waits for its slot as a delayed message on the timed queue. A text back for a
slot it holds sleeps until the slot and asks only the limiters that did not
hold it.

A provider counts texts as they arrive, not as they were booked. A text that
leaves late (a busy worker, a starved core) lands in the provider's next window
beside texts that left on time, and that window holds one too many. Slots are
spaced for ``limits.arrival_margin_ms`` of lateness (``Rate.margin_s``), and a
text about to leave later than that after its slot takes a fresh slot instead
(``late``), so every text that leaves does so within the margin of its slot.
"""

from __future__ import annotations

import time

from worker import store
from worker.ratelimit import Reservation, limits_for
from worker.sendpath.config import PipelineConfig
from worker.sendpath.parts import Parts
from worker.sendpath.text import Text

# A deferred text is redelivered this much before its slot and sleeps the rest,
# so it goes at its slot, not whenever dramatiq next looks at its delay queue.
SLOT_LEAD_MS = 250
# A text back later than this has lost its slot: it asks the limiters again.
SLOT_LATE_MS = 60


class Reserver:
    def __init__(self, config: PipelineConfig, parts: Parts) -> None:
        self.config = config
        self.parts = parts

    async def reserve(self, provider: str, sender: str, text: Text) -> Reservation | None:
        """Take this text's rate-limit slot; sleep a short wait, return a long one."""
        limits = limits_for(
            self.config.limits,
            provider=provider,
            sender=sender,
            carrier=text.record.get("carrier") or None,
            campaign=text.record.get("campaign", ""),
        )
        held, slot_ms = held_slot(text.record)
        if text.record.get("rl_slot_ms"):
            # A held slot is good for one attempt: a quick retry takes a slot of its own.
            spent = {"rl_slot_ms": "", "rl_held": ""}
            text.record.update(spent)
            text.pending.update(spent)
        limits = [limit for limit in limits if limit.name not in held]
        text.slot_at_s = None
        if held:
            wait_s = max(0.0, (slot_ms - store.now_ms()) / 1000)
            text.slot_at_s = time.monotonic() + wait_s
            await self.parts.sleep(wait_s)
        if not limits:
            return None
        hold_all_us = self.config.limits.short_wait_ms * 1000
        reservation = await self.parts.limiter.reserve(
            limits, int(text.record.get("segments") or 1), hold_all_us=hold_all_us
        )
        if not reservation.go_now and not (
            reservation.wait_us <= hold_all_us and reservation.reserved
        ):
            return reservation
        slot_at_s = time.monotonic() + reservation.wait_s
        text.slot_at_s = max(text.slot_at_s or 0.0, slot_at_s)
        if reservation.wait_us:
            await self.parts.sleep(reservation.wait_s)
        return None

    def late(self, text: Text) -> bool:
        """Would this text leave later than the margin after its slot?"""
        if text.slot_at_s is None:
            return False
        margin_s = self.config.limits.arrival_margin_ms / 1000
        return time.monotonic() - text.slot_at_s > margin_s


def held_slot(record: dict[str, str]) -> tuple[frozenset[str], int]:
    """The limiters holding this text's reserved slot, and the slot, if it is still good."""
    slot_ms = int(record.get("rl_slot_ms") or 0)
    now = store.now_ms()
    if not slot_ms or slot_ms > now + 2 * SLOT_LEAD_MS or slot_ms < now - SLOT_LATE_MS:
        return frozenset(), 0
    return frozenset(filter(None, record.get("rl_held", "").split(","))), slot_ms
