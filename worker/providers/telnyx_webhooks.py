"""What Telnyx posts to sendq: ed25519-signed JSON callbacks, receipts and inbound texts.

The signature scheme, and how sendq's check differs from the SDK's, is in
worker/providers/telnyx.py's docstring. This module checks it, reads the
callback's ``data`` object, and reads inbound texts.

Inbound texts: ``message.received``, posted to the messaging profile's webhook
URL (not a per-message one, so receipts of texts sent without ``webhook_url``
may arrive there too). Its shape, telnyx-python 4.189's
``InboundMessageWebhookEvent`` / ``MessagingInboundMessagePayload`` and
developers.telnyx.com's "Receiving messages": ``{"data": {"record_type":
"event", "id", "event_type": "message.received", "occurred_at", "payload":
{"id", "record_type": "message", "direction": "inbound", "type": "SMS" |
"MMS", "from": {"phone_number", "carrier", "line_type"}, "to": [{"phone_number",
"status": "webhook_delivered", "carrier", "line_type"}], "text", "media",
"received_at", "messaging_profile_id", ...}}, "meta": {"attempt",
"delivered_to"}}``. ``to`` is a plain string for WhatsApp, taken too.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from worker.errors import ConfigError, InvalidWebhook
from worker.providers import inbound
from worker.providers.base import InboundEvent, InboundText, WebhookRequest

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
PUBLIC_KEY_SETTING = "providers.telnyx.public_key (env SENDQ_PROVIDERS__TELNYX__PUBLIC_KEY)"
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
# Unix seconds have had 10 digits since 2001; 12 leaves room and bounds int().
MAX_TIMESTAMP_DIGITS = 12
INBOUND_EVENT = "message.received"


# -- signatures ----------------------------------------------------------------------


def load_public_key(encoded: str) -> Ed25519PublicKey:
    """The webhook public key from its Mission Control form: base64 of the raw 32 bytes."""
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:  # binascii.Error, or a non-ASCII character
        raise ConfigError(f"{PUBLIC_KEY_SETTING}: not base64") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ConfigError(
            f"{PUBLIC_KEY_SETTING}: an ed25519 public key is {PUBLIC_KEY_BYTES} bytes, "
            f"this is {len(raw)}"
        )
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ConfigError(f"{PUBLIC_KEY_SETTING}: not an ed25519 public key ({exc})") from None


def signed_bytes(timestamp: str, body: bytes) -> bytes:
    """What Telnyx signs: the timestamp header as sent, ``|``, and the raw body."""
    return f"{timestamp}|".encode() + body


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name in any case, from a case-insensitive mapping or a plain dict."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, item in headers.items():
        if key.lower() == name:
            return item
    return None


def _signature(raw: str | None) -> bytes | None:
    """The 64 signature bytes, from canonical base64 only."""
    if not raw or not raw.isascii():
        return None
    try:
        decoded = base64.b64decode(raw, validate=True)
    except binascii.Error:
        return None
    return decoded if len(decoded) == SIGNATURE_BYTES else None


def _fresh(raw: str | None, now: float, tolerance_s: float) -> bool:
    # isascii() first: str.isdigit() also says yes to other scripts' digits.
    if not raw or not raw.isascii() or not raw.isdigit() or len(raw) > MAX_TIMESTAMP_DIGITS:
        return False
    return abs(now - int(raw)) <= tolerance_s


def verify(
    public_key: Ed25519PublicKey, request: WebhookRequest, now: float, tolerance_s: float
) -> bool:
    """True only for a fresh timestamp and a valid signature of it and the body."""
    signature = _signature(_header(request.headers, SIGNATURE_HEADER))
    timestamp = _header(request.headers, TIMESTAMP_HEADER)
    if signature is None or timestamp is None:
        return False
    if not _fresh(timestamp, now, tolerance_s):
        return False
    try:
        # The SDK reads the body as UTF-8 text; a body that is not cannot be Telnyx's.
        request.body.decode("utf-8")
        public_key.verify(signature, signed_bytes(timestamp, request.body))
    except (UnicodeDecodeError, InvalidSignature):
        return False
    return True


# -- callbacks -----------------------------------------------------------------------


def callback_data(request: WebhookRequest) -> Mapping[str, Any]:
    """The callback's ``data`` object, whatever its event."""
    if "json" not in request.content_type.lower():
        raise InvalidWebhook("Telnyx webhooks are JSON")
    try:
        body = json.loads(request.body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidWebhook("body is not UTF-8") from exc
    except ValueError as exc:
        raise InvalidWebhook("body is not JSON") from exc
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise InvalidWebhook('expected an object with a "data" object')
    data: Mapping[str, Any] = body["data"]
    return data


def parse_received(data: Mapping[str, Any]) -> list[InboundEvent]:
    """The one text of a ``message.received`` callback, or why it was refused."""
    kind = data.get("event_type")
    if kind != INBOUND_EVENT:
        raise InvalidWebhook(f"event_type {kind!r} is not an inbound message ({INBOUND_EVENT})")
    return [inbound.event(0, lambda: _received(data))]


def _received(data: Mapping[str, Any]) -> InboundText:
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise InvalidWebhook("data.payload must be an object")
    sender = payload.get("from")
    if not isinstance(sender, dict):
        raise InvalidWebhook("payload.from must be an object")
    media = payload.get("media")
    return InboundText(
        provider_message_id=inbound.required(payload, "id", "payload.id"),
        sender=inbound.number(sender.get("phone_number"), "payload.from.phone_number"),
        to=inbound.number(_our_number(payload.get("to")), "payload.to[0].phone_number"),
        body=inbound.body(payload, "text", media=bool(media), label="payload.text"),
        received_ms=inbound.iso_ms(payload.get("received_at"))
        or inbound.iso_ms(data.get("occurred_at")),
        carrier=inbound.optional_text(sender.get("carrier")),
    )


def _our_number(to: object) -> object:
    """The number the text was sent to: the first recipient, or the string WhatsApp gives."""
    if isinstance(to, list) and to and isinstance(to[0], dict):
        return to[0].get("phone_number")
    return to if isinstance(to, str) else None
