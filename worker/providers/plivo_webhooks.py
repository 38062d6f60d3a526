"""Plivo's incoming texts: what Plivo posts to the application's ``message_url``.

Plivo forwards each text to one of our numbers to the message URL of the
application the number belongs to, by POST (form-encoded) or GET (the same
parameters in the query), as the application's ``message_method`` says
(plivo.com/docs/messaging/api/message/handling-incoming). The parameters:
``MessageUUID``, ``From`` (the person) and ``To`` (our number), both with the
country code and no "+" ("14155551234"), ``Type`` (sms, mms, whatsapp),
``Text`` (SMS; Plivo joins a long text's parts before it posts), ``Body``
(MMS), ``Units``, ``TotalRate``, ``TotalAmount``, ``MessageIntent`` (optout,
optin or help when Plivo matched a standard keyword; sendq matches its own),
``PowerpackUUID`` and, for MMS, ``MediaCount`` and ``Media<n>``. No
``Status``, which every delivery receipt carries. Plivo gives no time and no
carrier for them.

They are signed as receipts are: ``X-Plivo-Signature-V3`` with
``X-Plivo-Signature-V3-Nonce`` (plivo.py). For a GET the signed string is the
URL with its query sorted, then ``.`` and the nonce: what the SDK's
``validate_v3_signature("GET", ...)`` computes, and what plivo.py's
``signed_payload`` gives for an empty body.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit

from worker.errors import InvalidWebhook
from worker.providers import inbound
from worker.providers.base import InboundEvent, InboundText, WebhookRequest

FORM = "application/x-www-form-urlencoded"
# The types that carry a text for a person to read; WhatsApp is not a channel sendq sends on.
TEXT_TYPES = frozenset({"sms", "mms"})


def params(request: WebhookRequest) -> dict[str, str]:
    """The request's parameters: the form body of a POST, the query of a GET."""
    if not request.body:
        try:
            return dict(parse_qsl(urlsplit(request.url).query, keep_blank_values=True))
        except ValueError as exc:
            raise InvalidWebhook("the message URL cannot be parsed") from exc
    if FORM not in request.content_type.lower():
        raise InvalidWebhook("Plivo webhooks are form-encoded")
    try:
        return dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError as exc:
        raise InvalidWebhook("body is not UTF-8") from exc


def is_incoming(fields: Mapping[str, str]) -> bool:
    """An incoming message, not a delivery receipt (which always has a Status)."""
    return "Status" not in fields and "MessageUUID" in fields


def parse_incoming(fields: Mapping[str, str]) -> list[InboundEvent]:
    """The one text of an incoming-message callback, or why it was refused."""
    if not is_incoming(fields):
        raise InvalidWebhook("a delivery receipt, not an incoming message")
    return [inbound.event(0, lambda: _incoming(fields))]


def _incoming(fields: Mapping[str, str]) -> InboundText:
    kind = (fields.get("Type") or "sms").lower()
    if kind not in TEXT_TYPES:
        raise InvalidWebhook(f"Type {kind!r} is not a text message (sms or mms)")
    text = (
        inbound.body(fields, "Text", media=False)
        if kind == "sms"
        else inbound.body(fields, "Body", media=True)
    )
    return InboundText(
        provider_message_id=inbound.required(fields, "MessageUUID"),
        sender=inbound.number(fields.get("From"), "From", international=True),
        to=inbound.number(fields.get("To"), "To", international=True),
        body=text,
    )
