"""The attempt ledger and the send lease: written before each HTTP call, kept while it runs.

Before every HTTP call the attempt goes on the record, fenced by the lease:
its number, provider, sending number and start time, and the text's carrier
(so a receipt that beats the worker's own write still feeds the right
breaker). ``attempt_open`` stays set until the attempt's outcome is recorded:
a worker that dies in between leaves the record saying an HTTP call may have
gone out, and the text that is taken over goes through ``unconfirmed``.

The lease is renewed while a text is being worked on, so a slow send never
outlives it; a worker cut off from Redis cannot renew, and once another
worker takes the text over, whatever the first one reports is fenced out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog

from worker import store
from worker.models import Status
from worker.sendpath.text import Text

log = structlog.get_logger("sendq.delivery")

# Renew when a third of the lease is left: two renewals may fail before it runs out.
RENEW_FRACTION = 3
ATTEMPT_OPEN_FIELD = "attempt_open"
POSSIBLE_DOUBLE_FIELD = "possible_double"
POSSIBLE_DOUBLE_COUNTER = "possible_doubles"
# Set by the settler on a text sent again without proof; its next attempt consumes it.
RESEND_PENDING_FIELD = "resend_pending"


def attempt_fields(n: int, provider: str, sender: str, started_ms: int) -> dict[str, str]:
    return {
        "attempt": str(n),
        f"a{n}:provider": provider,
        f"a{n}:from": sender,
        f"a{n}:at_ms": str(started_ms),
        ATTEMPT_OPEN_FIELD: "1",
    }


class Ledger:
    def __init__(self, store_: store.AsyncStore, lease_ms: int) -> None:
        self.store = store_
        self.lease_ms = lease_ms

    async def begin(self, text: Text, provider: str, sender: str) -> bool:
        """Write the next attempt before its HTTP call; False: this worker lost the lease."""
        n = text.attempt + 1
        fields = {
            **text.take_pending(),
            **attempt_fields(n, provider, sender, store.now_ms()),
            "carrier": text.carrier,
            # The watch counts every event of this attempt under this carrier.
            f"a{n}:carrier": text.carrier,
        }
        resending = text.record.get(RESEND_PENDING_FIELD) == "1"
        if resending:
            fields[POSSIBLE_DOUBLE_FIELD] = "1"
            fields[RESEND_PENDING_FIELD] = ""
        done = await self.store.begin_attempt(
            text.id,
            to=text.to,
            sender=sender,
            reason=f"attempt {n} via {provider}"
            + (" (a possible double send, counted)" if resending else ""),
            fields=fields,
            fence=text.lease,
        )
        if not done.ok:
            log.warning("the text is not ours to send any more", status=done.current)
            return False
        text.record.update(fields)
        if resending:
            await self.store.count(POSSIBLE_DOUBLE_COUNTER)
            log.warning("sending an unconfirmed text again: a possible double send")
        return True

    async def close(self, text: Text) -> None:
        """The attempt is over and sent nothing: say so now, not at the next write."""
        fields = {**text.take_pending(), ATTEMPT_OPEN_FIELD: ""}
        await self.store.transition(
            text.id,
            [Status.SENDING],
            Status.SENDING,
            reason=f"attempt {text.attempt} sent nothing: {fields.get(f'a{text.attempt}:outcome')}",
            fields=fields,
            fence=text.lease,
        )
        text.record[ATTEMPT_OPEN_FIELD] = ""

    @contextlib.asynccontextmanager
    async def kept(self, text: Text) -> AsyncIterator[None]:
        """Renew ``text``'s lease in the background while the block runs.

        Most texts are done long before a renewal is due: only a timer is armed,
        and the renewing task is started only when it fires.
        """
        tasks: list[asyncio.Task[None]] = []
        every_s = self.lease_ms / RENEW_FRACTION / 1000
        timer = asyncio.get_running_loop().call_later(
            every_s, lambda: tasks.append(asyncio.ensure_future(self._renew(text)))
        )
        try:
            yield
        finally:
            timer.cancel()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _renew(self, text: Text) -> None:
        every_s = self.lease_ms / RENEW_FRACTION / 1000
        while True:
            try:
                kept = await self.store.renew(text.id, text.lease, store.now_ms() + self.lease_ms)
            except Exception as exc:  # Redis away: the lease may run out; fencing holds.
                log.warning("could not renew the send lease", error=str(exc)[:200])
                kept = True  # try again at the next renewal, not at once
            if not kept:
                log.warning("the send lease was lost mid-send; the result will be fenced out")
                return
            await asyncio.sleep(every_s)
