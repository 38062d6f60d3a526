"""What Bandwidth posts to sendq: callbacks with Basic credentials, receipts and inbound texts.

Authentication: Bandwidth does not sign callbacks. It sends the credentials set
on the messaging application as HTTP Basic ``Authorization``:
``OutboundCallbackCreds`` with status callbacks (to ``OutboundCallbackUrl``)
and ``InboundCallbackCreds`` with inbound texts (to ``InboundCallbackUrl``;
dev.bandwidth.com/docs/account/applications). An application may post both to
one URL, so a callback is accepted with either pair. That proves the sender
knows a shared secret; it does not bind the URL or the body, whose integrity
rests on HTTPS. No SDK ships a validator for it, so the check is compared with
the headers the SDK's own Basic encoder (urllib3, latin-1) and httpx (UTF-8)
produce; which encoding Bandwidth uses for non-ASCII credentials is not
documented, so both are accepted.

Every callback is a JSON *array* of events (dev.bandwidth.com/docs/messaging
/webhooks). An inbound text is the event ``{"type": "message-received",
"time", "description", "to": <our number>, "carrierName"?, "message": {"id",
"owner": <our number>, "applicationId", "time", "segmentCount", "direction":
"in", "to": [numbers], "from": <the person>, "text", "media"?, "tag"?}}``
(bandwidth-sdk 23.3 ``InboundCallback`` / ``InboundCallbackMessage``). A
group message owned by several of our numbers comes as one event per number.
Other inbound event types (``suggestion-response``,
``requested-location-response``: RBM answers) are not texts and are left out,
as are status events, which ``parse_events`` reads.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

from worker.errors import InvalidWebhook
from worker.providers import inbound
from worker.providers.base import InboundEvent, InboundText, WebhookRequest

INBOUND_EVENT = "message-received"


def basic_credentials_match(authorization: str | None, username: str, password: str) -> bool:
    """True when ``authorization`` is HTTP Basic for exactly ``username:password``."""
    if not authorization or not username or not password or not authorization.isascii():
        return False
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return False
    try:
        given = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    # Compare with every encoding a sender may have used; a list, so no short-circuit.
    return any([hmac.compare_digest(given, form) for form in _encodings(f"{username}:{password}")])


def _encodings(text: str) -> list[bytes]:
    """``text`` as UTF-8 and, when it fits, as latin-1 (urllib3's Basic auth default)."""
    forms = [text.encode("utf-8")]
    with contextlib.suppress(UnicodeEncodeError):
        forms.append(text.encode("latin-1"))
    return forms


def any_credentials_match(authorization: str | None, pairs: Iterable[tuple[str, str]]) -> bool:
    """True when ``authorization`` is HTTP Basic for one of the (username, password) pairs."""
    # A list, so every pair is compared whatever the first one says.
    return any([basic_credentials_match(authorization, user, pw) for user, pw in pairs])


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header from a case-insensitive mapping, or a plain dict in either common case."""
    return headers.get(name) or headers.get(name.title())


def callback_events(request: WebhookRequest) -> list[object]:
    """The posted array of events; InvalidWebhook when the callback as a whole is unreadable."""
    if "json" not in request.content_type.lower():
        raise InvalidWebhook("Bandwidth callbacks are JSON")
    try:
        payload = json.loads(request.body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidWebhook("body is not UTF-8") from exc
    except ValueError as exc:
        raise InvalidWebhook("body is not JSON") from exc
    # Bandwidth always sends an array; a lone event object is tolerated.
    events = [payload] if isinstance(payload, dict) else payload
    if not isinstance(events, list) or not events:
        raise InvalidWebhook("expected a non-empty array of events")
    return events


def has_inbound(events: Iterable[object]) -> bool:
    return any(_is_inbound(event) for event in events)


def _is_inbound(event: object) -> bool:
    return isinstance(event, dict) and event.get("type") == INBOUND_EVENT


def parse_received(events: list[object]) -> list[InboundEvent]:
    """Each inbound text of the batch with its index in the posted array, read or
    refused on its own; the batch's other events are left out."""
    received = [
        inbound.event(index, partial(_received, event))
        for index, event in enumerate(events)
        if isinstance(event, dict) and _is_inbound(event)
    ]
    if not received:
        raise InvalidWebhook(f"the callback holds no {INBOUND_EVENT} event")
    return received


def _received(event: dict[str, Any]) -> InboundText:
    message = event.get("message")
    if not isinstance(message, dict):
        raise InvalidWebhook("an event has no message")
    media = message.get("media")
    # The event's "to" is the number that received the text; "owner" says the same.
    ours = event.get("to") if isinstance(event.get("to"), str) else message.get("owner")
    return InboundText(
        provider_message_id=inbound.required(message, "id", "message.id"),
        sender=inbound.number(message.get("from"), "message.from"),
        to=inbound.number(ours, "to"),
        body=inbound.body(message, "text", media=bool(media), label="message.text"),
        received_ms=inbound.iso_ms(message.get("time")) or inbound.iso_ms(event.get("time")),
        carrier=inbound.optional_text(event.get("carrierName")),
    )
