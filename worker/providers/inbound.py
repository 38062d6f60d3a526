"""What the adapters share to read inbound texts: numbers, times, one event at a time.

Each provider's own shape is read in its ``<name>_webhooks`` module; these
helpers keep the rules the same across them. A field that cannot be read
refuses its event with an InvalidWebhook naming the field, never the whole
callback, so that one bad text in a batch (Bandwidth's) leaves the others.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from worker.errors import InvalidNumber, InvalidWebhook
from worker.phone import to_e164
from worker.providers.base import InboundEvent, InboundText

# A number as providers write it: E.164, or its digits alone (ASCII only).
NUMBER_RE = re.compile(r"\+?[0-9]{1,20}")


def number(raw: object, field: str, *, international: bool = False) -> str:
    """The E.164 form of a number a provider gave in ``field``, or InvalidWebhook.

    ``international``: the provider writes numbers with their country code and
    no "+" (Plivo's ``From``, Vonage's ``msisdn``), so "447700900000" is a UK
    number, not a malformed US one.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidWebhook(f"{field} is required")
    given = raw.strip()
    if not NUMBER_RE.fullmatch(given):
        # phonenumbers would dig a number out of "whatsapp:+1..." or "tel:..."; a
        # provider writes bare numbers, and anything else is not an SMS sender.
        raise InvalidWebhook(f"{field}: {given!r} is not a phone number")
    if international and not given.startswith("+"):
        given = "+" + given
    try:
        return to_e164(given)
    except InvalidNumber as exc:
        # The reason shows the number as given; logs mask it (worker/logs.py).
        raise InvalidWebhook(f"{field}: {exc.reason}") from None


def required(fields: Mapping[str, Any], name: str, label: str | None = None) -> str:
    """A non-empty string field, or InvalidWebhook naming it."""
    value = fields.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidWebhook(f"{label or name} is required")
    return value


def body(fields: Mapping[str, Any], name: str, *, media: bool, label: str | None = None) -> str:
    """The text of the message: required, except beside media (a picture alone has none)."""
    value = fields.get(name)
    label = label or name
    if isinstance(value, str):
        return value
    if value is None:
        if media:
            return ""
        raise InvalidWebhook(f"{label} is required")
    raise InvalidWebhook(f"{label} must be a string")


def optional_text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def iso_ms(raw: object) -> int | None:
    """Epoch ms of an ISO 8601 time ("2024-11-28T17:46:00.574Z"); None when unreadable.

    A provider's time is information, not a reason to refuse the text: the
    receiver stamps its own time as well.
    """
    if not isinstance(raw, str) or not raw:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return _epoch_ms(when)


def utc_ms(raw: object, pattern: str) -> int | None:
    """Epoch ms of a UTC time in ``pattern`` ("%Y-%m-%d %H:%M:%S"); None when unreadable."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return _epoch_ms(datetime.strptime(raw, pattern))
    except ValueError:
        return None


def _epoch_ms(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def event(index: int, read: Callable[[], InboundText]) -> InboundEvent:
    """One event of a callback: its text, or why it was refused, at its index."""
    try:
        return (index, read())
    except InvalidWebhook as exc:
        return (index, exc)
