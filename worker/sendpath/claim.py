"""Claim: take a queued text for sending under a lease, or take over a dead worker's.

A claim is a compare-and-set ``queued -> sending`` with a lease end; a
redelivered duplicate finds the text already sent or final and does nothing.
A text found ``sending`` belongs to another worker until its lease runs out;
after that it is taken over, and counted (``crash_resends``): its first
worker may have sent it before dying.
"""

from __future__ import annotations

import structlog

from worker import store, wire
from worker.models import Status
from worker.sendpath.text import Text

log = structlog.get_logger("sendq.delivery")

CRASH_RESEND_COUNTER = "crash_resends"
# Look again this long after another worker's lease ends.
LEASE_GRACE_MS = 100


class Claimer:
    def __init__(self, store_: store.AsyncStore, *, queue: str, lease_ms: int) -> None:
        self.store = store_
        self.queue = queue
        self.lease_ms = lease_ms

    async def claim(self, msg_id: str) -> Text | None:
        lease = {"lease_until_ms": store.now_ms() + self.lease_ms}
        claimed = await self.store.transition(
            msg_id,
            [Status.QUEUED],
            Status.SENDING,
            reason="claimed",
            fields=lease,
            return_record=True,
        )
        if claimed.ok and claimed.record is not None:
            return Text(msg_id, claimed.record)
        if claimed.missing:
            log.error("no record for a queued text; dropping the queue entry")
            return None
        if claimed.current == Status.SENDING:
            return await self._take_over(msg_id, lease)
        # Already sent or final: a redelivered duplicate; nothing to do.
        return None

    async def _take_over(self, msg_id: str, lease: dict[str, int]) -> Text | None:
        """A text left ``sending`` by a worker that died mid-send."""
        remaining_ms = await self.store.lease_until_ms(msg_id) - store.now_ms()
        if remaining_ms > 0:
            # Its worker may still be sending: look again when the lease runs out,
            # on the timed queue: back on the main one it would wait behind the backlog.
            requeue = wire.message(
                msg_id, wire.timed_queue(self.queue), delay_ms=remaining_ms + LEASE_GRACE_MS
            )
            await self.store.transition(
                msg_id,
                [Status.SENDING],
                Status.SENDING,
                reason="waiting for lease",
                requeue=requeue,
            )
            return None
        taken = await self.store.transition(
            msg_id,
            [Status.SENDING],
            Status.SENDING,
            reason="lease expired: resending (possible double send)",
            fields=lease,
            return_record=True,
        )
        if not taken.ok or taken.record is None:
            return None
        await self.store.count(CRASH_RESEND_COUNTER)
        log.warning("taking over a text whose worker died mid-send")
        return Text(msg_id, taken.record)
