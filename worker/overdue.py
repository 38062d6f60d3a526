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

Texts recorded ``sent`` by a version from before the set (an upgrade, or an
old process still running through a rolling one) are not in it: a slow scan,
one SCAN step per keeper tick, gives each its due time (``receipts.timeout_s``
after its last change), so no text stays ``sent`` across an upgrade either.

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
# The scan for sent texts with no due time: keys a step (one keeper tick), and how
# long after a whole pass the next starts.
DEFAULT_SCAN_COUNT = 1000
DEFAULT_RESCAN_S = 3600.0
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
        scan_count: int = DEFAULT_SCAN_COUNT,
        rescan_s: float = DEFAULT_RESCAN_S,
    ) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.scan_count = scan_count
        self.rescan_s = rescan_s
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

    async def scan_step(self, now_ms: int) -> int:
        """One step of the slow scan that gives every ``sent`` text missing from the
        awaiting set its due time; how many it added.

        Texts an older version left ``sent`` (an upgrade, or old processes still
        running through a rolling one) are in no set. Each keeper tick takes one
        SCAN step (``scan_count`` keys), the cursor kept in Redis so the scan goes
        on across ticks, keepers and restarts; a whole pass starts again
        ``rescan_s`` after the last ended. Keepers stepping at once repeat a little
        work, harmlessly: a text joins the set only if it is not in it (ZADD NX).
        """
        at = keys.awaiting_scan(self.ns)
        cursor_raw, done_raw = await self.client.hmget(at, "cursor", "done_ms")
        cursor = int(cursor_raw or 0)
        if cursor == 0 and done_raw and now_ms - int(done_raw) < self.rescan_s * 1000:
            return 0
        pattern = keys.message_pattern(self.ns)
        cursor, raw = await self.client.scan(cursor, match=pattern, count=self.scan_count)
        ids = [i for i in (keys.message_id_of(_text(r), self.ns) for r in raw) if i]
        added = await self._join(ids, now_ms)
        state: dict[str, int] = {"cursor": int(cursor)}
        if int(cursor) == 0:
            state["done_ms"] = now_ms
        await self.client.hset(at, mapping=state)  # type: ignore[arg-type]
        if added:
            log.warning("sent texts with no due time now await their receipts", count=added)
        return added

    async def _join(self, ids: Sequence[str], now_ms: int) -> int:
        if not ids:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for msg_id in ids:
            pipe.hmget(keys.message(msg_id, self.ns), "status", "updated_ms")
        rows = await pipe.execute()
        timeout_ms = int(self.timeout_s * 1000)
        pipe = self.client.pipeline(transaction=False)
        for msg_id, (status, updated_ms) in zip(ids, rows, strict=True):
            if status is not None and _text(status) == Status.SENT:
                due_ms = int(_text(updated_ms) if updated_ms else now_ms) + timeout_ms
                # NX: a text the send path added meanwhile keeps its own due time.
                pipe.zadd(keys.awaiting(self.ns), {msg_id: due_ms}, nx=True)
        return sum(int(n) for n in await pipe.execute())

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


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
