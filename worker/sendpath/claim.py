"""Claim: take a text for sending under a fresh lease.

- ``queued``: a compare-and-set to ``sending``, with a new lease id and end.
  So is a text held until a time (quiet hours) whose message has come: a
  carrier's held texts leave only by release, so their stray messages do not.
- ``sending``: another worker's, until its lease runs out (look again then).
  After that it is taken over. If that worker had an HTTP attempt open, the
  text may have gone: it goes to ``unconfirmed`` and waits for evidence. If
  not, nothing can have been sent and it is simply sent.
- ``unconfirmed`` and due to be settled: the settler decides (``settle``).
- anything else: a redelivered duplicate; nothing to do.
"""

from __future__ import annotations

import secrets

import structlog

from worker import store, wire
from worker.models import HELD_FOR_QUIET_HOURS, Status
from worker.sendpath.config import PipelineConfig
from worker.sendpath.ledger import ATTEMPT_OPEN_FIELD
from worker.sendpath.settle import Settler
from worker.sendpath.text import Text

log = structlog.get_logger("sendq.delivery")

TAKEOVER_COUNTER = "takeovers"
# Look again this long after another worker's lease ends.
LEASE_GRACE_MS = 100
# A message this early for its text's time is a duplicate (a deferred text's own
# comes SLOT_LEAD_MS early by design).
EARLY_TOLERANCE_MS = 1000
# A hold that ends at a time, not by release: its own message takes the text back.
TIMED_HOLD = f"{Status.HELD}:{HELD_FOR_QUIET_HOURS}"


def new_lease(lease_ms: int) -> dict[str, str]:
    return {"lease_id": secrets.token_hex(6), "lease_until_ms": str(store.now_ms() + lease_ms)}


class Claimer:
    def __init__(self, store_: store.AsyncStore, config: PipelineConfig, settler: Settler) -> None:
        self.store = store_
        self.config = config
        self.settler = settler

    async def claim(self, msg_id: str) -> Text | None:
        lease = new_lease(self.config.lease_ms)
        claimed = await self.store.transition(
            msg_id,
            [Status.QUEUED, TIMED_HOLD],
            Status.SENDING,
            reason="claimed",
            fields=lease,
            return_record=True,
        )
        if claimed.ok and claimed.record is not None:
            text = Text(msg_id, claimed.record, lease["lease_id"])
            return None if await self._early(text) else text
        if claimed.missing:
            log.error("no record for a queued text; dropping the queue entry")
            return None
        if claimed.current == Status.SENDING:
            return await self._take_over(msg_id, lease)
        if claimed.current == Status.UNCONFIRMED:
            return await self.settler.settle(msg_id, lease)
        # Already sent or final: a redelivered duplicate; nothing to do.
        return None

    async def _early(self, text: Text) -> bool:
        """A message ahead of the text's retry or slot: put the text back, untouched.

        dramatiq can deliver a message twice (a heartbeat redelivery, a sweep). It
        may also be this worker's clock that is behind the one that set ``eta_ms``;
        then this message was the text's own, so one is queued for the time left
        (a duplicate of a duplicate is harmless: the claim is a compare-and-set).
        """
        early_ms = int(text.record.get("eta_ms") or 0) - store.now_ms()
        if early_ms <= EARLY_TOLERANCE_MS:
            return False
        await self.store.transition(
            text.id,
            [Status.SENDING],
            Status.QUEUED,
            reason=f"an early message: the text is due in {early_ms} ms",
            fields={"lease_id": ""},
            fence=text.lease,
            requeue=wire.message(text.id, wire.timed_queue(self.config.queue), delay_ms=early_ms),
        )
        return True

    async def _take_over(self, msg_id: str, lease: dict[str, str]) -> Text | None:
        """A text left ``sending`` by a worker that died, or was cut off, mid-send."""
        remaining_ms = await self.store.lease_until_ms(msg_id) - store.now_ms()
        if remaining_ms > 0:
            # Its worker may still be sending: look again when the lease runs out,
            # on the timed queue: back on the main one it would wait behind the backlog.
            requeue = wire.message(
                msg_id, wire.timed_queue(self.config.queue), delay_ms=remaining_ms + LEASE_GRACE_MS
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
            reason="lease expired: taken over",
            fields=lease,
            return_record=True,
        )
        if not taken.ok or taken.record is None:
            return None
        await self.store.count(TAKEOVER_COUNTER)
        text = Text(msg_id, taken.record, lease["lease_id"])
        if taken.record.get(ATTEMPT_OPEN_FIELD):
            # Its worker may have sent it before it was lost: evidence decides.
            log.warning("taking over a text whose worker was lost mid-send")
            await self.settler.wait_for_evidence(
                text, f"its worker was lost during attempt {text.attempt}"
            )
            return None
        log.warning("taking over a text whose worker was lost before sending it")
        return text
