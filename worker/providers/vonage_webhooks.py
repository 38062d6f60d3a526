"""What Vonage posts to sendq: webhook parameters, for receipts and inbound texts.

Vonage's SMS API sends delivery receipts and inbound texts by GET (in the
query), form POST or JSON POST, as the account is set (vonage.py's docstring
has the receipts). Both are signed with the account's signature secret
(``sig``, ``timestamp``, ``nonce``; vonage.py checks them).

Inbound texts (developer.vonage.com/messaging/sms/guides/inbound-sms, and
vonage-dotnet-sdk's ``InboundSms``): ``msisdn`` (the person) and ``to`` (our
virtual number), both with the country code and no "+"; ``messageId``;
``type`` (text, unicode or binary); ``text`` and ``keyword`` for text and
unicode, ``data`` and ``udh`` for binary; ``message-timestamp`` (UTC,
"YYYY-MM-DD HH:MM:SS"); ``api-key``; and, on signed accounts, ``timestamp``,
``nonce`` and ``sig``. A text longer than one SMS comes in parts, each its own
request with ``concat=true``, ``concat-ref``, ``concat-total`` and
``concat-part``: each part is read as a text of its own here (joining them
needs state, the receiver's). A receipt has a ``status``; an inbound text never.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit

from worker.errors import InvalidWebhook
from worker.providers import inbound
from worker.providers.base import InboundEvent, InboundText, WebhookRequest

FORM = "application/x-www-form-urlencoded"
# Inbound types that carry a text; binary carries bytes (a ringtone, a vCard).
TEXT_TYPES = frozenset({"text", "unicode"})
# "2020-01-01 12:00:00", UTC.
TIMESTAMP_PATTERN = "%Y-%m-%d %H:%M:%S"


def _pairs_from_form(text: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidWebhook("parameters are not UTF-8") from exc


def _pairs_from_json(body: bytes) -> list[tuple[str, str]]:
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidWebhook("body is not JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidWebhook("a JSON webhook is an object")
    pairs = []
    for name, value in payload.items():
        # Vonage sends strings; an int is signed as its digits (the SDK's f-string).
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InvalidWebhook(f"{name!r} is not a string")
        pairs.append((name, str(value)))
    return pairs


def _body_pairs(request: WebhookRequest) -> list[tuple[str, str]]:
    if not request.body:
        return []  # a GET receipt: everything is in the query
    content_type = request.content_type.lower()
    if "application/json" in content_type:
        return _pairs_from_json(request.body)
    if FORM in content_type:
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidWebhook("body is not UTF-8") from exc
        return _pairs_from_form(text)
    raise InvalidWebhook("Vonage webhooks are form-encoded, JSON or a GET query")


def webhook_params(request: WebhookRequest) -> dict[str, str]:
    """The query's and the body's parameters together; a name given twice is refused,
    since Vonage never repeats one and a repeat could hide a forged value."""
    try:
        query = urlsplit(request.url).query
    except ValueError as exc:
        raise InvalidWebhook("the callback URL cannot be parsed") from exc
    params: dict[str, str] = {}
    for name, value in [*_pairs_from_form(query), *_body_pairs(request)]:
        if name in params:
            raise InvalidWebhook(f"parameter {name!r} given twice")
        params[name] = value
    return params


def is_inbound(params: Mapping[str, str]) -> bool:
    """An inbound text, not a receipt: no ``status``, and an inbound text's fields."""
    return "status" not in params and "msisdn" in params and ("text" in params or "type" in params)


def parse_inbound(params: Mapping[str, str]) -> list[InboundEvent]:
    """The one text of an inbound-message webhook, or why it was refused."""
    if not is_inbound(params):
        raise InvalidWebhook("a delivery receipt, not an inbound message")
    return [inbound.event(0, lambda: _inbound(params))]


def _inbound(params: Mapping[str, str]) -> InboundText:
    kind = params.get("type") or "text"
    if kind not in TEXT_TYPES:
        raise InvalidWebhook(f"type {kind!r} is not a text message (text or unicode)")
    return InboundText(
        provider_message_id=inbound.required(params, "messageId"),
        sender=inbound.number(params.get("msisdn"), "msisdn", international=True),
        to=inbound.number(params.get("to"), "to", international=True),
        body=inbound.body(params, "text", media=False),
        received_ms=inbound.utc_ms(params.get("message-timestamp"), TIMESTAMP_PATTERN),
    )
