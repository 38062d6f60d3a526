"""Sent texts whose final receipt never came end ``unconfirmed``: "sent" is never final.

A change to ``sent`` (the provider accepted the text, a look-up found it, or
a receipt said it was handed on) puts the text in ``keys.awaiting`` with the
time its final receipt is overdue (``receipts.timeout_s`` later); a final
receipt takes it out (lua/transition.lua, lua/receipt.lua). Each worker's
hold keeper sweeps the set every tick: a text still ``sent`` when its time
is up moves to ``unconfirmed`` with the reason, by a compare-and-set, and is
counted (``receipts_overdue``). It was sent, so it is never sent again; a
receipt that comes later still settles it (lua/receipt.lua applies to
``unconfirmed``), and the history shows both.

The texts it ends are returned, so the deliverability watch can count an
overdue receipt against the carrier, and the exposure limit can free the slot.
Several workers sweeping at once is harmless; a sweep with nothing due is one
command.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
import structlog

from worker import keys, lua, store
from worker.models import Status

log = structlog.get_logger("sendq.receipts")

DEFAULT_BATCH = 500
DEFAULT_MAX_BATCHES = 20
OVERDUE_COUNTER = "receipts_overdue"
OVERDUE_FIELD = "unconfirmed_because"
OVERDUE_CAUSE = "receipt_timeout"


class ReceiptTimeouts:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        timeout_s: float,
        ns: str = keys.DEFAULT_NAMESPACE,
        batch: int = DEFAULT_BATCH,
        max_batches: int = DEFAULT_MAX_BATCHES,
    ) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.ns = ns
        self.batch = batch
        self.max_batches = max_batches
        self._transition = client.register_script(lua.source("transition"))

    async def sweep(self, now_ms: int) -> list[dict[str, str]]:
        """End every sent text overdue by ``now_ms``; their records, as they now are."""
        ended: list[dict[str, str]] = []
        for _ in range(self.max_batches):
            due = await self._due(now_ms)
            if not due:
                break
            ended += await self._end(due)
            if len(due) < self.batch:
                break
        if ended:
            await self.client.hincrby(keys.counters(self.ns), OVERDUE_COUNTER, len(ended))
            log.warning("sent texts with no final receipt ended unconfirmed", count=len(ended))
        return ended

    async def _due(self, now_ms: int) -> list[str]:
        raw = await self.client.zrangebyscore(
            keys.awaiting(self.ns), "-inf", now_ms, start=0, num=self.batch
        )
        return [i.decode() if isinstance(i, bytes) else str(i) for i in raw]

    async def _end(self, ids: Sequence[str]) -> list[dict[str, str]]:
        reason = f"no final receipt within {self.timeout_s:g} s (receipts.timeout_s)"
        pipe = self.client.pipeline(transaction=False)
        for msg_id in ids:
            k, a = store.transition_args(
                msg_id,
                [Status.SENT],
                Status.UNCONFIRMED,
                reason=reason,
                fields={OVERDUE_FIELD: OVERDUE_CAUSE},
                return_record=True,
                ns=self.ns,
            )
            await self._transition(keys=k, args=a, client=pipe)
        outcomes = [store.decode_transition(raw) for raw in await pipe.execute()]
        # Each has left the set: the transition takes a text out when it leaves
        # "sent"; one that was no longer sent (a receipt won) is dropped here.
        await cast(Awaitable[Any], self.client.zrem(keys.awaiting(self.ns), *ids))
        return [t.record for t in outcomes if t.ok and t.record is not None]
