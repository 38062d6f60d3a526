"""Texts that wait past their deadline end ``expired``, promptly, and are never sent.

Every text with a ``send_before`` is in ``keys.expiry`` (id -> the deadline,
epoch ms; lua/enqueue.lua adds it). Each worker's hold keeper sweeps it every
tick: a text whose deadline has passed while it waits, ``queued`` (throttled,
deferred, retried) or ``held`` (a paused or open carrier, quiet hours), moves
to ``expired`` by a compare-and-set (lua/transition.lua), and leaves the set.

- A held text's id stays on its hold list; a release drops ids no longer
  held (worker/holds.py).
- A queued text's dramatiq message, when it comes, finds the text final and
  is skipped (worker/sendpath/claim.py).
- A ``sending`` text is the send path's: its gates and its settling decide.
  It stays in the set, looked at again ``recheck_ms`` later, so a text that
  goes back to waiting (a deferral, a retry) still ends promptly.
- Any other (final, sent, unconfirmed, gone) just leaves the set: an
  unconfirmed text's settling asks the deadline itself (sendpath/settle.py).

Several workers sweeping at once is harmless: every change is a compare-and-set.
A sweep with nothing due is one command.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
import structlog

from worker import keys, lua, store
from worker.models import Status

log = structlog.get_logger("sendq.expiry")

DEFAULT_BATCH = 500
# At most this many batches per sweep, so one tick stays short; the rest wait a tick.
DEFAULT_MAX_BATCHES = 20
# A text sending at its deadline is looked at again this much later.
DEFAULT_RECHECK_MS = 1000
EXPIRED_REASON = "past send_before while waiting"
WAITING = (Status.QUEUED, Status.HELD)


class ExpirySweeper:
    """Ends the texts waiting past their deadline, oldest deadline first."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        ns: str = keys.DEFAULT_NAMESPACE,
        batch: int = DEFAULT_BATCH,
        max_batches: int = DEFAULT_MAX_BATCHES,
        recheck_ms: int = DEFAULT_RECHECK_MS,
    ) -> None:
        self.client = client
        self.ns = ns
        self.batch = batch
        self.max_batches = max_batches
        self.recheck_ms = recheck_ms
        self._transition = client.register_script(lua.source("transition"))

    async def sweep(self, now_ms: int) -> int:
        """Expire every waiting text due by ``now_ms``; returns how many it expired."""
        return len(await self.sweep_records(now_ms))

    async def sweep_records(self, now_ms: int) -> list[dict[str, str]]:
        """As ``sweep``; the records of the texts it expired (their slots are given back)."""
        expired: list[dict[str, str]] = []
        for _ in range(self.max_batches):
            due = await self._due(now_ms)
            if not due:
                break
            expired += await self._expire(due, now_ms)
            if len(due) < self.batch:
                break
        if expired:
            log.warning("texts past their send_before while waiting expired", count=len(expired))
        return expired

    async def _due(self, now_ms: int) -> list[str]:
        raw = await self.client.zrangebyscore(
            keys.expiry(self.ns), "-inf", now_ms, start=0, num=self.batch
        )
        return [i.decode() if isinstance(i, bytes) else str(i) for i in raw]

    async def _expire(self, ids: Sequence[str], now_ms: int) -> list[dict[str, str]]:
        pipe = self.client.pipeline(transaction=False)
        for msg_id in ids:
            k, a = store.transition_args(
                msg_id,
                list(WAITING),
                Status.EXPIRED,
                reason=EXPIRED_REASON,
                return_record=True,
                ns=self.ns,
            )
            await self._transition(keys=k, args=a, client=pipe)
        results = await pipe.execute()
        outcomes = [store.decode_transition(raw) for raw in results]
        sending = [i for i, t in zip(ids, outcomes, strict=True) if t.current == Status.SENDING]
        done = [i for i, t in zip(ids, outcomes, strict=True) if t.current != Status.SENDING]
        cleanup = self.client.pipeline(transaction=False)
        if done:
            cleanup.zrem(keys.expiry(self.ns), *done)
        if sending:
            # XX: one that ended (and left the set) meanwhile is not put back.
            later = {msg_id: now_ms + self.recheck_ms for msg_id in sending}
            cleanup.zadd(keys.expiry(self.ns), later, xx=True)
        await cast(Awaitable[Any], cleanup.execute())
        return [t.record for t in outcomes if t.ok and t.record is not None]
