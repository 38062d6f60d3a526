"""Every inbound text, as it came, linked to the text it answers.

A record is a hash at ``keys.inbound(id)``: ``from`` (the person), ``to`` (our
number it came to), ``body``, ``provider``, ``provider_message_id``,
``received_ms`` (our clock), and where known ``provider_received_ms`` and
``inbound_carrier`` (what the webhook said). ``lua/inbound.lua`` writes it in one
round trip, reading ``keys.last_outbound(our number, person)`` (which the send
path sets) and copying that text's ``message_id``, ``campaign`` and ``carrier``
into the record. A provider retrying its webhook gets the first record back
(``duplicate``), remembered per provider message id for ``SEEN_TTL_S``.

What sendq then did with the text (``kind``, ``action``, ...) is added by ``mark``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript, Script

from worker import keys, lua
from worker.errors import InvalidInput
from worker.optouts import check_number
from worker.providers.base import InboundText
from worker.store import new_message_id, now_ms

# Longer than any provider keeps retrying a webhook (hours to a day).
SEEN_TTL_S = 7 * 24 * 3600
DEFAULT_LIST_LIMIT = 50
# Written by record(); mark() may not overwrite them.
RECORDED_FIELDS = frozenset(
    {
        "id",
        "from",
        "to",
        "body",
        "provider",
        "provider_message_id",
        "received_ms",
        "provider_received_ms",
        "inbound_carrier",
        "message_id",
        "campaign",
        "carrier",
        "message_sent_ms",
        "message_carrier",
    }
)


@dataclass(frozen=True, slots=True)
class InboundRecord:
    id: str
    provider: str
    provider_message_id: str
    sender: str  # the person ("from")
    to: str  # our number it came to
    body: str
    received_ms: int
    provider_received_ms: int | None = None
    # The last text sent to the person from ``to`` before this one came, and its
    # campaign and carrier (the carrier the webhook named, where that text had none).
    message_id: str | None = None
    campaign: str | None = None
    carrier: str | None = None
    # When that text's latest attempt was made, epoch ms, and the carrier it was
    # counted under then (the watch counts the reply there too; ``carrier`` may
    # have been renamed since by a receipt).
    message_sent_ms: int | None = None
    message_carrier: str | None = None
    # What mark() added: kind, action, and anything else.
    marks: dict[str, str] = field(default_factory=dict)
    # True when this text was recorded before (the same provider message id). A
    # duplicate without a ``kind`` mark was never finished (the first delivery of
    # the webhook failed after recording it): handle it again, the opt-out calls
    # are idempotent.
    duplicate: bool = False

    @property
    def kind(self) -> str | None:
        return self.marks.get("kind")

    @property
    def action(self) -> str | None:
        return self.marks.get("action")

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "provider_message_id": self.provider_message_id,
            "from": self.sender,
            "to": self.to,
            "body": self.body,
            "received_ms": self.received_ms,
            "provider_received_ms": self.provider_received_ms,
            "message_id": self.message_id,
            "campaign": self.campaign,
            "carrier": self.carrier,
            "message_sent_ms": self.message_sent_ms,
            "message_carrier": self.message_carrier,
            **self.marks,
        }


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_record(raw: Mapping[Any, Any] | Sequence[Any], duplicate: bool = False) -> InboundRecord:
    """A record from HGETALL's mapping or a script's flat field, value list."""
    if isinstance(raw, Mapping):
        f = {_s(k): _s(v) for k, v in raw.items()}
    else:
        f = {_s(raw[i]): _s(raw[i + 1]) for i in range(0, len(raw) - 1, 2)}
    provider_ms = f.get("provider_received_ms")
    return InboundRecord(
        id=f.get("id", ""),
        provider=f.get("provider", ""),
        provider_message_id=f.get("provider_message_id", ""),
        sender=f.get("from", ""),
        to=f.get("to", ""),
        body=f.get("body", ""),
        received_ms=int(f.get("received_ms") or 0),
        provider_received_ms=int(provider_ms) if provider_ms else None,
        message_id=f.get("message_id") or None,
        campaign=f.get("campaign") or None,
        carrier=f.get("carrier") or None,
        message_sent_ms=int(f["message_sent_ms"]) if f.get("message_sent_ms") else None,
        message_carrier=f.get("message_carrier") or None,
        marks={k: v for k, v in f.items() if k not in RECORDED_FIELDS},
        duplicate=duplicate,
    )


def record_args(
    provider: str, text: InboundText, ns: str = keys.DEFAULT_NAMESPACE
) -> tuple[list[str], list[str]]:
    """KEYS and ARGV of one lua/inbound.lua call."""
    if not provider:
        raise InvalidInput("provider", "must name the provider the text came through")
    person, ours = check_number(text.sender), check_number(text.to)
    inbound_id = new_message_id()
    received = now_ms()
    pmid = text.provider_message_id or ""
    script_keys = [
        keys.inbound_seen(provider, pmid, ns),
        keys.last_outbound(ours, person, ns),
        keys.inbound(inbound_id, ns),
        keys.inbound_index(ns),
        keys.inbound_by_number(person, ns),
    ]
    fields = {
        "id": inbound_id,
        "from": person,
        "to": ours,
        "body": text.body,
        "provider": provider,
        "provider_message_id": pmid,
        "received_ms": str(received),
    }
    if text.received_ms is not None:
        fields["provider_received_ms"] = str(text.received_ms)
    if text.carrier:
        fields["inbound_carrier"] = text.carrier
    # Without a provider message id there is nothing to tell a retry by.
    ttl = str(SEEN_TTL_S if pmid else 0)
    argv = [inbound_id, str(received), ttl, keys.message("", ns)]
    for name, value in fields.items():
        argv += [name, value]
    return script_keys, argv


def decode_recorded(raw: Sequence[Any]) -> InboundRecord:
    return decode_record(raw[1], duplicate=int(raw[0]) == 0)


def mark_args(
    inbound_id: str, fields: Mapping[str, object], ns: str = keys.DEFAULT_NAMESPACE
) -> tuple[list[str], list[str]]:
    if not fields:
        raise InvalidInput("fields", "mark needs at least one field")
    taken = sorted(set(fields) & RECORDED_FIELDS)
    if taken:
        raise InvalidInput("fields", f"{', '.join(taken)} are recorded, not marked")
    argv: list[str] = []
    for name, value in fields.items():
        argv += [name, "" if value is None else str(value)]
    return [keys.inbound(inbound_id, ns)], argv


def _range_args(
    limit: int, before_ms: int | None, number: str | None, ns: str
) -> tuple[str, str, int]:
    if limit < 1:
        raise InvalidInput("limit", f"must be at least 1, not {limit}")
    key = keys.inbound_by_number(check_number(number), ns) if number else keys.inbound_index(ns)
    return key, "+inf" if before_ms is None else f"({before_ms}", limit


class InboundLog:
    """Synchronous access: the CLI."""

    def __init__(self, client: redis.Redis, ns: str = keys.DEFAULT_NAMESPACE) -> None:
        self.client = client
        self.ns = ns
        self._record: Script = client.register_script(lua.source("inbound"))
        self._mark: Script = client.register_script(lua.source("inbound_mark"))

    def record(self, provider: str, text: InboundText) -> InboundRecord:
        k, a = record_args(provider, text, self.ns)
        return decode_recorded(cast(list[Any], self._record(keys=k, args=a)))

    def mark(self, inbound_id: str, **fields: object) -> bool:
        """Add what was done with the text; False when there is no such record."""
        k, a = mark_args(inbound_id, fields, self.ns)
        return int(cast(int, self._mark(keys=k, args=a))) == 1

    def get(self, inbound_id: str) -> InboundRecord | None:
        raw = cast(dict[bytes, bytes], self.client.hgetall(keys.inbound(inbound_id, self.ns)))
        return decode_record(raw) if raw else None

    def list(
        self,
        limit: int = DEFAULT_LIST_LIMIT,
        before_ms: int | None = None,
        number: str | None = None,
    ) -> list[InboundRecord]:
        """Newest first: every text, or one person's (``number``, E.164), received
        before ``before_ms`` when given (exclusive; page on by the last one's time)."""
        key, top, count = _range_args(limit, before_ms, number, self.ns)
        ids = cast(list[bytes], self.client.zrevrangebyscore(key, top, "-inf", start=0, num=count))
        pipe = self.client.pipeline(transaction=False)
        for inbound_id in ids:
            pipe.hgetall(keys.inbound(_s(inbound_id), self.ns))
        return [decode_record(raw) for raw in pipe.execute() if raw]


class AsyncInboundLog:
    """Asynchronous access: the webhooks."""

    def __init__(self, client: aioredis.Redis, ns: str = keys.DEFAULT_NAMESPACE) -> None:
        self.client = client
        self.ns = ns
        self._record: AsyncScript = client.register_script(lua.source("inbound"))
        self._mark: AsyncScript = client.register_script(lua.source("inbound_mark"))

    async def record(self, provider: str, text: InboundText) -> InboundRecord:
        """Store the text (one round trip), or return the first record of a retry."""
        k, a = record_args(provider, text, self.ns)
        raw = await cast(Awaitable[list[Any]], self._record(keys=k, args=a))
        return decode_recorded(raw)

    async def mark(self, inbound_id: str, **fields: object) -> bool:
        k, a = mark_args(inbound_id, fields, self.ns)
        return int(await cast(Awaitable[int], self._mark(keys=k, args=a))) == 1

    async def get(self, inbound_id: str) -> InboundRecord | None:
        raw = await cast(
            Awaitable[dict[bytes, bytes]], self.client.hgetall(keys.inbound(inbound_id, self.ns))
        )
        return decode_record(raw) if raw else None
