"""Settling an unconfirmed text: evidence first, then policy.

A text whose attempt may have reached the provider (a timeout or a dropped
connection after writing, an ambiguous answer, a worker lost mid-send) goes
to ``unconfirmed`` and waits ``worker.unconfirmed_wait_s`` for evidence. A
receipt for that attempt settles it at any time (lua/receipt.lua). When the
wait is over, the settler asks the provider, where it has a look-up:

- found: the text was sent; it becomes ``sent`` with the provider's id;
- not found: most likely nothing was sent, and it is sent again; but a request
  of a lost worker or a dropped connection can still be in transit (a kernel
  retransmits for minutes) and land later, so the resend is counted as a
  possible double;
- busy (429, 5xx, a lost connection): it asks again later, with backoff, a
  few times, so a mass of look-ups at once does not decide a mass of texts;
- the provider cannot tell: ``worker.on_unconfirmed`` decides: ``fail``
  leaves it ``unconfirmed`` (final), ``resend`` sends it again and counts it
  (``possible_double`` on the record and in the counters, when it goes out).

A text that would be sent again but is past its ``send_before`` (its own or
its campaign's) ends ``expired`` instead: never resent. One that is not sent
again stays as the policy leaves it.

A settle message that comes back early (dramatiq's delay queue runs on the
clock of the worker that fetched it) is put back for the time that is left.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog

from worker import store, wire
from worker.exposure import AsyncExposure, Release
from worker.models import RECEIPT_DUE_FIELD, Status
from worker.providers.base import ASK_AGAIN, CANNOT_TELL, NOT_FOUND, Provider, SentQuery
from worker.sendpath.config import PipelineConfig
from worker.sendpath.gates.expiry import past_send_before
from worker.sendpath.ledger import ATTEMPT_OPEN_FIELD, RESEND_PENDING_FIELD
from worker.sendpath.text import Text
from worker.watch.counters import WatchCounters
from worker.watch.model import attempt_carrier

log = structlog.get_logger("sendq.delivery")

UNCONFIRMED_COUNTER = "unconfirmed"
SETTLE_AT_FIELD = "settle_at_ms"
LOOKUPS_FIELD = "lookups"
# A settle message early by this much is still due (dramatiq's delay queue is coarse).
SETTLE_EARLY_MS = 500
# A busy look-up is asked again this much later, doubling, at most this many times.
LOOKUP_RETRY_BASE_MS = 15_000
LOOKUP_TRIES = 5


class Settler:
    def __init__(
        self,
        store_: store.AsyncStore,
        config: PipelineConfig,
        providers: Mapping[str, Provider],
        clock: Callable[[], int] = store.now_ms,
        exposure: AsyncExposure | None = None,
        watch: WatchCounters | None = None,
    ) -> None:
        # A text that ends here without evidence gives its exposure slot back, as
        # overdue: its receipt never came.
        self.exposure = exposure
        # A text the look-up finds was sent: the watch counts it as the send path
        # counts an accepted one, or its receipt would land in a cohort without it.
        self.watch = watch
        self.store = store_
        self.config = config
        self.providers = providers
        self.clock = clock

    async def wait_for_evidence(
        self, text: Text, reason: str, fields: Mapping[str, object] | None = None
    ) -> str:
        """``sending -> unconfirmed``, with a message to settle it when the wait is over."""
        wait_ms = self.config.unconfirmed_wait_ms
        changes = {
            **text.take_pending(),
            **(fields or {}),
            SETTLE_AT_FIELD: store.now_ms() + wait_ms,
            ATTEMPT_OPEN_FIELD: "",
        }
        done = await self.store.transition(
            text.id,
            [Status.SENDING],
            Status.UNCONFIRMED,
            reason=f"unconfirmed: {reason}; waiting {wait_ms // 1000} s for evidence",
            fields=changes,
            fence=text.lease,
            requeue=wire.message(text.id, wire.timed_queue(self.config.queue), delay_ms=wait_ms),
        )
        if done.ok:
            await self.store.count(UNCONFIRMED_COUNTER)
            log.warning("text unconfirmed: it may have been sent", reason=reason)
        return Status.UNCONFIRMED.value

    async def settle(self, msg_id: str, lease: dict[str, str]) -> Text | None:
        """The wait is over: a Text to send again, or None (settled, or not due)."""
        record = await self.store.get(msg_id)
        due = int((record or {}).get(SETTLE_AT_FIELD) or 0)
        if record is None or not due:
            return None
        if due > store.now_ms() + SETTLE_EARLY_MS:
            await self._look_again(msg_id, due - store.now_ms(), "settle message came early")
            return None
        found = await self._look_up(record)
        if isinstance(found, str):
            await self._settle_sent(msg_id, record, found)
            return None
        if found is NOT_FOUND:
            why = "not found by the provider's look-up (an old request may still land)"
            return await self._send_again(msg_id, record, lease, why, possible_double=True)
        tries = int(record.get(LOOKUPS_FIELD) or 0) + 1
        if found is ASK_AGAIN and tries < LOOKUP_TRIES:
            wait_ms = LOOKUP_RETRY_BASE_MS * 2 ** (tries - 1)
            await self._look_again(msg_id, wait_ms, "the look-up was busy", tries)
            return None
        if self.config.on_unconfirmed == "resend":
            return await self._send_again(
                msg_id, record, lease, "no evidence", possible_double=True
            )
        await self.store.transition(
            msg_id,
            [Status.UNCONFIRMED],
            Status.UNCONFIRMED,
            reason="no evidence: not sent again (worker.on_unconfirmed = fail)",
            fields={SETTLE_AT_FIELD: ""},
        )
        await self._give_back(msg_id, record)
        return None

    async def _give_back(self, msg_id: str, record: dict[str, str]) -> None:
        if self.exposure is not None:
            await self.exposure.release_record(msg_id, record, Release.OVERDUE)

    async def _look_again(
        self, msg_id: str, wait_ms: int, why: str, tries: int | None = None
    ) -> None:
        fields: dict[str, object] = {SETTLE_AT_FIELD: store.now_ms() + wait_ms}
        if tries is not None:
            fields[LOOKUPS_FIELD] = tries
        await self.store.transition(
            msg_id,
            [Status.UNCONFIRMED],
            Status.UNCONFIRMED,
            reason=f"{why}: looking again in {wait_ms // 1000} s",
            fields=fields,
            requeue=wire.message(msg_id, wire.timed_queue(self.config.queue), delay_ms=wait_ms),
        )

    async def _look_up(self, record: dict[str, str]) -> str | object:
        n = int(record.get("attempt") or 0)
        provider = self.providers.get(record.get(f"a{n}:provider", ""))
        if n == 0 or provider is None:
            return CANNOT_TELL
        query = SentQuery(
            message_id=record["id"],
            to=record["to"],
            sender=record.get(f"a{n}:from", ""),
            body=record.get("body", ""),
            after_ms=int(record.get(f"a{n}:at_ms") or 0),
        )
        try:
            found: str | object = await provider.find_sent(query)
        except Exception as exc:  # a look-up that fails says nothing either way: later
            log.warning("provider look-up failed", error=str(exc)[:200])
            return ASK_AGAIN
        return found

    async def _settle_sent(self, msg_id: str, record: dict[str, str], pmid: str) -> None:
        n = int(record.get("attempt") or 0)
        provider = record.get(f"a{n}:provider", "")
        done = await self.store.transition(
            msg_id,
            [Status.UNCONFIRMED],
            Status.SENT,
            reason=f"found by {provider}'s look-up (attempt {n})",
            fields={
                SETTLE_AT_FIELD: "",
                "provider": provider,
                "provider_message_id": pmid,
                f"a{n}:pmid": pmid,
                RECEIPT_DUE_FIELD: self.config.receipt_due_ms(),
            },
        )
        sent_ms = int(record.get(f"a{n}:at_ms") or 0)
        if done.ok and self.watch is not None and sent_ms:
            carrier = attempt_carrier(record, n)
            campaign = record.get("campaign", "")
            await self.watch.sent_once(msg_id, n, carrier, campaign, sent_ms=sent_ms)

    async def _send_again(
        self,
        msg_id: str,
        record: dict[str, str],
        lease: dict[str, str],
        why: str,
        *,
        possible_double: bool = False,
    ) -> Text | None:
        if await self._expired(msg_id, record):
            return None
        fields: dict[str, str] = {**lease, SETTLE_AT_FIELD: ""}
        reason = f"{why}: sending again"
        if possible_double:
            # On the record, so a resend requeued before its attempt is still counted.
            fields[RESEND_PENDING_FIELD] = "1"
            reason += " (a possible double send)"
        taken = await self.store.transition(
            msg_id,
            [Status.UNCONFIRMED],
            Status.SENDING,
            reason=reason,
            fields=fields,
            return_record=True,
        )
        if not taken.ok or taken.record is None:
            return None
        # Counted when it goes out (ledger.begin), not if a gate ends it first.
        return Text(msg_id, taken.record, lease["lease_id"])

    async def _expired(self, msg_id: str, record: dict[str, str]) -> bool:
        """Past its deadline: ``unconfirmed -> expired``, and the attempt is not made again."""
        late = past_send_before(record, self.config.campaign_send_before_ms, self.clock())
        if late is None:
            return False
        done = await self.store.transition(
            msg_id,
            [Status.UNCONFIRMED],
            Status.EXPIRED,
            reason=f"{late}; the unconfirmed attempt was not sent again",
            fields={SETTLE_AT_FIELD: ""},
        )
        if done.ok:
            log.warning("unconfirmed text expired instead of being sent again", reason=late)
            await self._give_back(msg_id, record)
        return True
