"""Message records and their history, in Redis.

A record is a hash at ``keys.message(id)``; every status change is a
compare-and-set in ``lua/transition.lua`` that also appends to the history
and moves the per-campaign counts. Functions here build script arguments and
decode answers; the sync and async clients share them.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript, Script
from redis.exceptions import NoScriptError

from worker import keys, lua, wire
from worker.models import FINAL_STATUSES, Status

DEFAULT_HISTORY_CAP = 50
# A reply weeks after the text still belongs to its campaign.
LAST_OUTBOUND_TTL_S = 30 * 24 * 3600
ANY_LIVE = " ".join(s.value for s in Status if s not in FINAL_STATUSES)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_message_id() -> str:
    """Time-ordered and unique: 12 hex digits of ms, then 10 random."""
    return f"{now_ms():012x}{secrets.token_hex(5)}"


@dataclass(frozen=True, slots=True)
class Transition:
    """The outcome of a compare-and-set."""

    ok: bool
    current: str | None
    record: dict[str, str] | None = None
    # Refused because the caller's lease is no longer the record's (see transition.lua).
    stale: bool = False

    @property
    def missing(self) -> bool:
        return not self.ok and self.current is None


@dataclass(frozen=True, slots=True)
class Hold:
    """A hold list to append the message id to, atomically with a transition."""

    breaker: str


def transition_args(
    msg_id: str,
    allowed: Sequence[str] | str,
    new: str,
    *,
    reason: str,
    fields: Mapping[str, object] | None = None,
    return_record: bool = False,
    requeue: wire.Requeue | None = None,
    hold: Hold | None = None,
    fence: str = "",
    ns: str = keys.DEFAULT_NAMESPACE,
) -> tuple[list[str], list[str]]:
    allowed_s = allowed if isinstance(allowed, str) else " ".join(allowed)
    queue = requeue.queue if requeue else "unused"
    push_list = keys.hold(hold.breaker, ns) if hold else wire.queue_key(queue)
    push = requeue.redis_message_id if requeue else msg_id if hold else ""
    script_keys = [
        keys.message(msg_id, ns),
        keys.history(msg_id, ns),
        keys.stats(ns),
        push_list,
        wire.messages_key(queue),
        keys.inflight(ns),
        keys.awaiting(ns),
    ]
    argv = [
        allowed_s,
        new,
        str(now_ms()),
        reason,
        str(DEFAULT_HISTORY_CAP),
        "1" if return_record else "0",
        push,
        requeue.encoded if requeue else "",
        fence,
    ]
    for name, value in (fields or {}).items():
        argv += [name, "" if value is None else str(value)]
    if requeue is not None:
        argv += ["eta_ms", str(requeue.eta_ms or now_ms())]
    return script_keys, argv


def decode_transition(raw: Sequence[Any]) -> Transition:
    code = int(raw[0])
    if code == -1:
        return Transition(False, None)
    if code == 0:
        return Transition(False, _s(raw[1]), stale=len(raw) > 2 and _s(raw[2]) == "stale")
    if len(raw) == 1:
        return Transition(True, None)
    record = {_s(raw[i]): _s(raw[i + 1]) for i in range(1, len(raw) - 1, 2)}
    return Transition(True, record.get("status"), record)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Store:
    """Synchronous access, for producers and the CLI."""

    def __init__(self, client: redis.Redis, ns: str = keys.DEFAULT_NAMESPACE) -> None:
        self.client = client
        self.ns = ns
        self._transition: Script = client.register_script(lua.source("transition"))
        self.enqueue_script: Script = client.register_script(lua.source("enqueue"))

    def transition(
        self, msg_id: str, allowed: Sequence[str] | str, new: str, **kw: Any
    ) -> Transition:
        k, a = transition_args(msg_id, allowed, new, ns=self.ns, **kw)
        return decode_transition(cast(list[Any], self._transition(keys=k, args=a)))

    def accept(
        self, calls: Sequence[tuple[list[str], list[str]]]
    ) -> list[tuple[str, bool, dict[str, str]]]:
        """Run lua/enqueue.lua once per (keys, args), pipelined: (message id, new,
        held) for each.

        ``new`` is false when an idempotency key already named a message; ``held``
        is then what that message's record holds (``to``, ``body``,
        ``enqueue_run``, ``enqueue_index``), so the caller can tell the same text
        sent again from another text under a used key. Empty for a new one.
        """
        pipe = self.client.pipeline(transaction=False)
        for script_keys, args in calls:
            self.enqueue_script(keys=script_keys, args=args, client=pipe)
        names = ("to", "body", "enqueue_run", "enqueue_index")
        return [_accepted(raw, names) for raw in pipe.execute()]

    def get(self, msg_id: str) -> dict[str, str] | None:
        raw = cast(dict[bytes, bytes], self.client.hgetall(keys.message(msg_id, self.ns)))
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    def fields(self, ids: Sequence[str], names: Sequence[str]) -> list[tuple[str, ...]]:
        """The named fields of many records, pipelined ("" where a record has none)."""
        pipe = self.client.pipeline(transaction=False)
        for msg_id in ids:
            pipe.hmget(keys.message(msg_id, self.ns), list(names))
        return [tuple(_s(v) if v is not None else "" for v in row) for row in pipe.execute()]

    def history(self, msg_id: str) -> list[dict[str, Any]]:
        raw = cast(list[bytes], self.client.lrange(keys.history(msg_id, self.ns), 0, -1))
        return [json.loads(entry) for entry in raw]

    def stats(self) -> dict[str, dict[str, int]]:
        """Counts by campaign, then status; zero counts are left out."""
        return {
            campaign: {s: n for s, n in counts.items() if ":" not in s}
            for campaign, counts in self.stats_and_reasons().items()
            if any(":" not in s for s in counts)
        }

    def stats_and_reasons(self) -> dict[str, dict[str, int]]:
        """``stats`` and, as ``held:{reason}``, the held texts by why they are held
        (``worker.counts.split`` tells them apart)."""
        raw = cast(dict[bytes, bytes], self.client.hgetall(keys.stats(self.ns)))
        out: dict[str, dict[str, int]] = {}
        for field, count in raw.items():
            campaign, _, status = field.decode().rpartition(keys.STATS_FIELD_SEP)
            if int(count):
                out.setdefault(campaign, {})[status] = int(count)
        return out

    def counters(self) -> dict[str, int]:
        raw = cast(dict[bytes, bytes], self.client.hgetall(keys.counters(self.ns)))
        return {k.decode(): int(v) for k, v in raw.items()}


def _accepted(raw: Sequence[Any], names: Sequence[str]) -> tuple[str, bool, dict[str, str]]:
    code = int(raw[1])
    if code == 2:  # new, and suppressed: the recipient is on the opt-out list
        return _s(raw[0]), True, {"suppressed": "1"}
    return _s(raw[0]), code == 1, dict(zip(names, map(_s, raw[2:]), strict=False))


@dataclass(frozen=True, slots=True)
class ReceiptResult:
    """What lua/receipt.lua made of a receipt."""

    applied: bool
    current: str | None
    attempt: int = 0
    record: dict[str, str] | None = None
    # Why the receipt was refused: it names no attempt of this text.
    refused: str | None = None

    @property
    def missing(self) -> bool:
        return not self.applied and self.current is None and self.refused is None


def _decode_receipt(raw: Sequence[Any]) -> ReceiptResult:
    code = int(raw[0])
    if code == -1:
        return ReceiptResult(False, None)
    if code == -2:
        return ReceiptResult(False, None, refused=_s(raw[1]))
    if code == 0:
        return ReceiptResult(False, _s(raw[1]))
    record = {_s(raw[i]): _s(raw[i + 1]) for i in range(2, len(raw) - 1, 2)}
    return ReceiptResult(True, record.get("status"), int(raw[1]), record)


class AsyncStore:
    """Asynchronous access, for workers and the webhook app."""

    def __init__(self, client: aioredis.Redis, ns: str = keys.DEFAULT_NAMESPACE) -> None:
        self.client = client
        self.ns = ns
        self._transition: AsyncScript = client.register_script(lua.source("transition"))
        self._renew: AsyncScript = client.register_script(lua.source("renew"))
        self._receipt: AsyncScript = client.register_script(lua.source("receipt"))

    async def renew(self, msg_id: str, lease_id: str, lease_until_ms: int) -> bool:
        """Extend a send lease the caller holds; False when it holds it no more."""
        script_keys = [keys.message(msg_id, self.ns), keys.inflight(self.ns)]
        raw = await cast(
            Awaitable[int], self._renew(keys=script_keys, args=[lease_id, lease_until_ms])
        )
        return int(raw) == 1

    async def apply_receipt(
        self,
        msg_id: str,
        *,
        provider: str,
        attempt: int | None,
        provider_message_id: str,
        status: str,
        reason: str,
        fields: Mapping[str, object],
    ) -> ReceiptResult:
        """Apply a receipt to the attempt it names (see lua/receipt.lua)."""
        script_keys = [
            keys.message(msg_id, self.ns),
            keys.history(msg_id, self.ns),
            keys.stats(self.ns),
            keys.inflight(self.ns),
            keys.counters(self.ns),
            keys.awaiting(self.ns),
        ]
        args: list[str] = [
            str(now_ms()),
            provider,
            "" if attempt is None else str(attempt),
            provider_message_id,
            status,
            reason,
            str(DEFAULT_HISTORY_CAP),
        ]
        for name, value in fields.items():
            args += [name, "" if value is None else str(value)]
        raw = await cast(Awaitable[list[Any]], self._receipt(keys=script_keys, args=args))
        return _decode_receipt(raw)

    async def transition(
        self, msg_id: str, allowed: Sequence[str] | str, new: str, **kw: Any
    ) -> Transition:
        k, a = transition_args(msg_id, allowed, new, ns=self.ns, **kw)
        raw = await cast(Awaitable[list[Any]], self._transition(keys=k, args=a))
        return decode_transition(raw)

    async def begin_attempt(self, msg_id: str, *, to: str, sender: str, **kw: Any) -> Transition:
        """The attempt's compare-and-set, and (in the same round trip) the link from
        (sending number, person) to this text, so that a reply finds its campaign.

        The link is written even when the change is refused (a stale lease): the
        worker that holds the lease writes it again, with the same message id.
        """
        k, a = transition_args(msg_id, [Status.SENDING], Status.SENDING, ns=self.ns, **kw)
        link = keys.last_outbound(sender, to, self.ns)
        # EVALSHA by hand: a Script in a pipeline first asks SCRIPT EXISTS, a round
        # trip of its own on every call.
        pipe = self.client.pipeline(transaction=False)
        pipe.evalsha(self._transition.sha, len(k), *k, *a)
        pipe.set(link, msg_id, ex=LAST_OUTBOUND_TTL_S)
        try:
            raw, _ = await pipe.execute()
        except NoScriptError:  # a restarted server: load it, then the same two
            raw = await self._transition(keys=k, args=a)
            await self.client.set(link, msg_id, ex=LAST_OUTBOUND_TTL_S)
        return decode_transition(raw)

    async def count(self, counter: str, by: int = 1) -> None:
        await self.client.hincrby(keys.counters(self.ns), counter, by)

    async def get(self, msg_id: str) -> dict[str, str] | None:
        raw = await cast(
            Awaitable[dict[bytes, bytes]], self.client.hgetall(keys.message(msg_id, self.ns))
        )
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    async def lease_until_ms(self, msg_id: str) -> int:
        """When the current send lease of a text runs out (0: it has none)."""
        raw = await cast(
            Awaitable[bytes | None],
            self.client.hget(keys.message(msg_id, self.ns), "lease_until_ms"),
        )
        return int(raw or 0)

    async def set_fields(self, msg_id: str, fields: Mapping[str, str]) -> None:
        """Write fields of a record without changing its status (no compare-and-set)."""
        await self.client.hset(keys.message(msg_id, self.ns), mapping=dict(fields.items()))

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def aclose(self) -> None:
        await self.client.aclose()
