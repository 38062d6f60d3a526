"""Telnyx: Messaging API v2.

Send: ``POST /v2/messages`` on api.telnyx.com, JSON ``{"from", "to", "text",
"webhook_url"}``, ``Authorization: Bearer {api_key}``: the exact request
telnyx-python 4.x's ``client.messages.send`` puts on the wire for the same
text (the tests compare them). ``webhook_url`` is per message, so sendq's
message id rides in its ``mid`` query parameter.

Validity: Telnyx's send API takes none. ``MessageSendParams`` (telnyx-python
4.189) and the API reference (developers.telnyx.com/api-reference/messages
/send-a-message) list no validity, expiry or TTL field; ``valid_until`` appears
only in Telnyx's answers, set by Telnyx, and an undocumented field is not sent
(a strict API would answer 422 to every text). So ``OutboundText.validity_s``
cannot travel: sendq's own deadline check before each attempt is what expires
a text, and what Telnyx does after taking it is bounded by its queue (a text
queued for more than an hour is rejected: "Messaging configuration and usage",
Queuing). The answer's ``wait_seconds`` says how long Telnyx will hold the
text for its rate limits; when that outlasts the text's validity the text
will leave late, and that is logged with the message id (``send`` below), so
it is seen, not silent. The SDK also offers an ``Idempotency-Key``
header; how long Telnyx keeps a key and what it answers to a repeat are not
documented, so sendq does not send one.

Success is ``200 {"data": {"record_type": "message", "id", "to":
[{"phone_number", "status": "queued", "carrier", "line_type"}], ...}}``
(SDK ``MessageSendResponse`` / ``OutboundMessagePayload``); ``to[0].carrier``
names the recipient's carrier ("T-MOBILE USA, INC."), kept raw here and
normalised by worker/carriers.py. Failures are an HTTP error with
``{"errors": [{"code": "40300", "title", "detail", "source", "meta"}]}``
(SDK ``MessagingError``; developers.telnyx.com "API error codes" and
"Messaging Error Code Reference"). A 429 carries ``x-ratelimit-reset``,
documented as the seconds until the limit resets (developers.telnyx.com,
"Rate limiting"); an epoch timestamp is accepted too, in case it is one.

Receipts: Telnyx POSTs JSON to ``webhook_url``: ``{"data": {"record_type":
"event", "id", "event_type": "message.sent" | "message.finalized" |
"message.read", "occurred_at", "payload": <the message, as above, with
"errors">}, "meta": {"attempt", "delivered_to"}}`` (SDK
``DeliveryUpdateWebhookEvent``). ``payload.to[0].status`` is one of queued,
sending, sent, expired, sending_failed, delivery_unconfirmed, delivered,
delivery_failed, read; ``payload.errors[0].code`` says why a text failed.

Webhook authentication: ed25519. ``telnyx-signature-ed25519`` is the base64
signature of ``f"{telnyx-timestamp}|"`` followed by the raw body, under the
account's public key, which Mission Control shows as base64 of the 32-byte raw
key (the form the SDK's ``public_key`` takes). ``telnyx-timestamp`` (Unix
seconds) must be within ``tolerance_s`` of now in either direction (the SDK's
300 s), so a captured receipt cannot be replayed later. This is the SDK's
``telnyx.lib.webhook_verification.verify_webhook_signature`` (what
``client.webhooks.unwrap`` runs), which the tests check ours against, with two
deliberate differences: the SDK decodes the signature with a lenient base64
decoder that skips stray characters and parses the timestamp with ``int()``
(which takes "+1700000000", " 1700000000" or "1_700_000_000"); sendq takes
only canonical base64 and plain ASCII digits. Telnyx signs what it sends, so
neither refuses a genuine receipt as far as the docs show. The SDK verifies
with PyNaCl (libsodium), sendq with ``cryptography`` (OpenSSL); both refuse
non-canonical signatures, but their edge cases for crafted keys were not
compared.

The signature covers the body, not the URL. So the ``mid`` that names sendq's
text is read only from the signed ``payload.webhook_url``: Telnyx echoes the
URL it was given in every message event (SDK ``OutboundMessagePayload.webhook_url``;
developers.telnyx.com/api-reference/callbacks/delivery-update). A receipt
whose URL's ``mid`` or ``att`` disagrees with the signed URL's is refused, and
one whose payload names no ``mid`` has no message id, whatever its URL says.

The signature check, the callback's JSON and inbound texts (``message.received``)
are read in worker/providers/telnyx_webhooks.py.

Not verified (no account, no network): whether Telnyx ever sends a timestamp
that is not plain digits; the full list of 403xx configuration codes (only
40300 could be read; the rest fall to the default rule, permanent in 4xx);
whether ``to[].carrier`` is present on every send answer (it is optional in
the SDK's model).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import structlog
from pydantic import Field

from worker.callbacks import ATTEMPT_PARAM, MESSAGE_PARAM, attempt_of
from worker.errors import ConfigError, InvalidWebhook
from worker.models import Category, Status
from worker.providers import transport
from worker.providers.base import (
    InboundEvent,
    OutboundText,
    Provider,
    ProviderSettings,
    ProviderSpec,
    Receipt,
    Secrets,
    SendResult,
    WebhookRequest,
    classify_by_table,
    json_object,
    retry_after_s,
)
from worker.providers.telnyx_webhooks import (
    INBOUND_EVENT,
    callback_data,
    load_public_key,
    parse_received,
    verify,
)
from worker.providers.telnyx_webhooks import signed_bytes as signed_bytes  # the tests'

NAME = "telnyx"
log = structlog.get_logger("sendq.providers")
DEFAULT_BASE_URL = "https://api.telnyx.com"
SEND_PATH = "/v2/messages"
JSON = "application/json"
RATELIMIT_RESET_HEADER = "x-ratelimit-reset"
# The SDK's TIMESTAMP_TOLERANCE_SECONDS.
DEFAULT_TOLERANCE_S = 300.0
# x-ratelimit-reset above this is a Unix time, not a wait (10^9 s is 31 years);
# above the second bound it is one in milliseconds.
EPOCH_S_THRESHOLD = 1_000_000_000
EPOCH_MS_THRESHOLD = 1_000_000_000_000
# sendq's own query parameters in the webhook URL; Telnyx signs them only
# inside payload.webhook_url.
SIGNED_PARAMS = (MESSAGE_PARAM, ATTEMPT_PARAM)

# Every Telnyx messaging code sendq could read a meaning for; anything else in
# 4xx is permanent. 400xx are delivery errors (receipts, sometimes the send
# answer), 10xxx general API errors at send time, 403xx configuration errors.
ERROR_CATEGORIES: dict[str, Category] = {
    # Spam filtering: pause that carrier (DESIGN.md); failing over would be snowshoeing.
    "40002": Category.CARRIER_BLOCK,  # blocked as spam, temporary: carrier filter
    "40003": Category.CARRIER_BLOCK,  # blocked as spam, permanent: sending number blocked
    # Telnyx's own filter on the carrier's behalf, as Bandwidth 4470 is treated.
    "40015": Category.CARRIER_BLOCK,  # internal spam filter
    # The recipient's number cannot take texts.
    "40001": Category.BAD_NUMBER,  # not routable: landline or non-routable wireless
    "40008": Category.BAD_NUMBER,  # undeliverable: the carrier did not accept it
    "40012": Category.BAD_NUMBER,  # invalid destination number, per the carrier
    # The recipient replied STOP; only they can undo it.
    "40300": Category.OPTED_OUT,  # blocked due to STOP message (a block rule)
    # Volume limits: back off and retry later.
    "40011": Category.THROTTLED,  # too many requests upstream (carrier throughput)
    "10011": Category.THROTTLED,  # too many requests (the API's own limit)
    # Telnyx's or a network's failure: retry, or fail over to another provider.
    "40006": Category.TRANSIENT,  # recipient's carrier server unavailable
    # Sat in Telnyx's queue past its validity: Telnyx's backlog, not the carrier's
    # answer; sendq's own deadline check decides whether a retry is still due.
    "40014": Category.TRANSIENT,  # expired in queue
    "10007": Category.TRANSIENT,  # unexpected error, "a temporary issue on our end"
    "10008": Category.TRANSIENT,  # request timeout
    "10009": Category.TRANSIENT,  # authentication failed: a provider fault, not the text's
    "10010": Category.TRANSIENT,  # authorization failed: the account's fault, not the text's
    # No clear reason: counts toward the carrier breaker at a lower weight.
    "40004": Category.AMBIGUOUS,  # rejected by destination for an unknown reason
    # Expired after leaving Telnyx, en route: the handset out of reach, or a
    # carrier sitting on it, as Twilio 30003 and Vonage's expired receipts.
    "40005": Category.AMBIGUOUS,  # message expired during transmission
    # Something about our text or account that no retry can fix.
    "40007": Category.PERMANENT,  # loop detected
    "40009": Category.PERMANENT,  # invalid message body (content the carrier refuses)
    "40013": Category.PERMANENT,  # invalid source number: ours, not the recipient's
}

# to[].status -> sendq status. Others (queued, sending, delivery_unconfirmed,
# read, anything newer) are progress: an unconfirmed text stays "sent", as a
# Twilio text without a receipt does, rather than being called undelivered.
RECEIPT_STATUSES: dict[str, Status] = {
    "delivered": Status.DELIVERED,
    "delivery_failed": Status.UNDELIVERED,
    "sending_failed": Status.UNDELIVERED,
    "expired": Status.UNDELIVERED,
    "sent": Status.SENT,
}
# A failed receipt without a code: an expired one timed out in Telnyx's queue
# (as 40014); a failed one gives no reason to retry.
NO_CODE_CATEGORIES: dict[str, Category] = {"expired": Category.TRANSIENT}
# Outbound message events; inbound texts (message.received) are not receipts.
RECEIPT_EVENTS = frozenset({"message.sent", "message.finalized", "message.read"})


def classify(error_code: str | None, http_status: int) -> Category:
    return classify_by_table(ERROR_CATEGORIES, error_code, http_status)


# -- throttling ----------------------------------------------------------------------


def ratelimit_reset_s(raw: str | None, now: float) -> float | None:
    """Seconds until ``x-ratelimit-reset``: documented as a wait in seconds; a value
    that can only be a Unix time (in s or ms) is turned into one. Never negative."""
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    if value >= EPOCH_MS_THRESHOLD:
        value = value / 1000 - now
    elif value >= EPOCH_S_THRESHOLD:
        value -= now
    return max(0.0, value)


# -- send answers ----------------------------------------------------------------------


def _first_object(items: object) -> Mapping[str, Any] | None:
    if isinstance(items, list) and items and isinstance(items[0], dict):
        return items[0]
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _code(raw: object) -> str | None:
    """An error code as Telnyx spells it ("40002"); an integer is read as its digits."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, str) and raw.strip():
        return raw.strip()
    return None


def _describe(error: Mapping[str, Any] | None, fallback: str) -> str:
    if error is None:
        return fallback
    parts = [_text(error.get("title")), _text(error.get("detail"))]
    return ": ".join(p for p in parts if p) or fallback


# -- receipts ------------------------------------------------------------------------------


def _event(request: WebhookRequest) -> Mapping[str, Any]:
    """The callback's ``data`` object, for an outbound message event."""
    data = callback_data(request)
    kind = data.get("event_type")
    if kind not in RECEIPT_EVENTS:
        raise InvalidWebhook(f"event_type {kind!r} is not an outbound message event")
    if not isinstance(data.get("payload"), dict):
        raise InvalidWebhook("data.payload must be an object")
    return data


def _recipient(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    recipient = _first_object(payload.get("to"))
    if recipient is None:
        raise InvalidWebhook("payload.to must be a non-empty array of objects")
    if _text(recipient.get("status")) is None:
        raise InvalidWebhook("payload.to[0].status is required")
    return recipient


def _sendq_params(url: str) -> dict[str, str]:
    """The query parameters sendq put in a status-callback URL (``mid``, ``att``)."""
    try:
        query = urlsplit(url).query
    except ValueError as exc:
        raise InvalidWebhook("a webhook URL cannot be parsed") from exc
    params = dict(parse_qsl(query))
    return {name: params[name] for name in SIGNED_PARAMS if params.get(name)}


def _message_id(url: str, payload: Mapping[str, Any]) -> str | None:
    return _signed_params(url, payload).get(MESSAGE_PARAM)


def _attempt(url: str, payload: Mapping[str, Any]) -> int | None:
    return attempt_of(_signed_params(url, payload))


def _signed_params(url: str, payload: Mapping[str, Any]) -> dict[str, str]:
    """sendq's id and attempt, from the signed ``payload.webhook_url`` only.

    The signature covers the body, not the URL the receipt was posted to, so
    anyone holding one genuine receipt could post it to a URL naming another
    text or attempt. The URL's ``mid`` and ``att`` are therefore never read:
    each must agree with the signed URL's, or be absent (Telnyx falls back to
    the messaging profile's webhook, which carries neither).
    """
    signed_url = payload.get("webhook_url")
    if signed_url is None:
        return {}
    if not isinstance(signed_url, str):
        raise InvalidWebhook("payload.webhook_url must be a string")
    signed = _sendq_params(signed_url)
    for name, value in _sendq_params(url).items():
        if signed.get(name) != value:
            raise InvalidWebhook(f"the URL's {name} differs from the signed payload.webhook_url's")
    return signed


class TelnyxProvider(Provider):
    name = NAME

    def __init__(
        self,
        *,
        api_key: str,
        public_key: str,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = transport.DEFAULT_TIMEOUT_S,
        max_connections: int = transport.DEFAULT_MAX_CONNECTIONS,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not api_key:
            raise ValueError("Telnyx needs an API key")
        # Loaded once: a key that cannot verify anything stops start-up, not receipts.
        self._public_key = load_public_key(public_key)
        self._tolerance_s = tolerance_s
        self._clock = clock
        # Per request, so an injected client (tests, the simulator) needs no set-up.
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": JSON}
        self._client = client or transport.make_client(
            base_url=base_url, timeout_s=timeout_s, max_connections=max_connections
        )

    # -- sending ---------------------------------------------------------------------

    def payload(self, text: OutboundText) -> dict[str, str]:
        return {
            "from": text.sender,
            "to": text.to,
            "text": text.body,
            "webhook_url": text.status_callback_url,
        }

    async def send(self, text: OutboundText) -> SendResult:
        response = await transport.request(
            self._client, NAME, "POST", SEND_PATH, json=self.payload(text), headers=self._headers
        )
        result = self.result(response)
        if result.ok:
            _warn_if_queued_past_validity(text, json_object(response))
        return result

    def result(self, response: httpx.Response) -> SendResult:
        body = json_object(response)
        if response.is_success:
            return _accepted(body, response)
        error = _first_object(body.get("errors"))
        code = _code(error.get("code")) if error else None
        category = classify(code, response.status_code)
        return SendResult(
            category,
            error_code=code or f"http_{response.status_code}",
            error=_describe(error, response.reason_phrase)[:300],
            retry_after_s=self._retry_after_s(response, category),
        )

    def _retry_after_s(self, response: httpx.Response, category: Category) -> float | None:
        """Retry-After if sent; for a throttled answer, else the rate limit's reset."""
        standard = retry_after_s(response, self._clock())
        if standard is not None or category is not Category.THROTTLED:
            return standard
        return ratelimit_reset_s(response.headers.get(RATELIMIT_RESET_HEADER), self._clock())

    # -- receipts --------------------------------------------------------------------

    def verify_signature(self, request: WebhookRequest) -> bool:
        return verify(self._public_key, request, self._clock(), self._tolerance_s)

    def is_inbound(self, request: WebhookRequest) -> bool:
        try:
            return callback_data(request).get("event_type") == INBOUND_EVENT
        except InvalidWebhook:
            return False

    def parse_inbound(self, request: WebhookRequest) -> list[InboundEvent]:
        return parse_received(callback_data(request))

    def parse_receipt(self, request: WebhookRequest) -> Receipt:
        payload = _event(request)["payload"]
        telnyx_id = _text(payload.get("id"))
        if telnyx_id is None:
            raise InvalidWebhook("payload.id is required")
        recipient = _recipient(payload)
        raw_status: str = recipient["status"]
        common: dict[str, Any] = {
            "provider_message_id": telnyx_id,
            "message_id": _message_id(request.url, payload),
            "attempt": _attempt(request.url, payload),
            "carrier": _text(recipient.get("carrier")),
        }
        status = RECEIPT_STATUSES.get(raw_status)
        if status is None:
            return Receipt(status=raw_status, **common)
        if status is not Status.UNDELIVERED:
            return Receipt(status=status.value, **common)
        error = _first_object(payload.get("errors"))
        code = _code(error.get("code")) if error else None
        category = classify(code, 400) if code else NO_CODE_CATEGORIES.get(raw_status)
        return Receipt(
            status=status.value,
            error_code=code,
            category=category or Category.PERMANENT,
            **common,
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def _warn_if_queued_past_validity(text: OutboundText, body: Mapping[str, Any]) -> None:
    """Telnyx cannot be told a validity (module doc): when its own queue will
    hold a text past the text's, say so, since nothing else will."""
    data = body.get("data")
    wait_s = data.get("wait_seconds") if isinstance(data, dict) else None
    if text.validity_s is None or isinstance(wait_s, bool) or not isinstance(wait_s, int | float):
        return
    if wait_s > text.validity_s:
        log.warning(
            "telnyx will send this text after its validity",
            message_id=text.message_id,
            provider=NAME,
            queued_s=wait_s,
            validity_s=text.validity_s,
        )


def _accepted(body: Mapping[str, Any], response: httpx.Response) -> SendResult:
    """A 2xx: Telnyx took the text if the answer is its ``data`` message object,
    and may have taken it if not."""
    data = body.get("data")
    if not isinstance(data, dict):
        # Not Telnyx's usual answer, but a 2xx: Telnyx may have taken the text, so
        # failing over or resending it freely could text the person twice.
        return SendResult(
            Category.AMBIGUOUS,
            error_code=f"http_{response.status_code}",
            error=response.reason_phrase[:300],
        )
    recipient = _first_object(data.get("to"))
    return SendResult(
        Category.OK,
        provider_message_id=_text(data.get("id")),
        carrier=_text(recipient.get("carrier")) if recipient else None,
    )


# -- configuration ---------------------------------------------------------------------

API_KEY = "telnyx_api_key"  # SENDQ_TELNYX_API_KEY


class TelnyxSettings(ProviderSettings):
    """``[providers.telnyx]``."""

    base_url: str = DEFAULT_BASE_URL
    # Telnyx's webhook public key (base64 ed25519); not a secret.
    public_key: str = ""
    tolerance_s: float = Field(DEFAULT_TOLERANCE_S, gt=0)


def build(config: TelnyxSettings, secrets: Secrets) -> TelnyxProvider:
    api_key = secrets.require(API_KEY)
    if not config.public_key.strip():
        # Receipts are refused without it, so no text sent through Telnyx could complete.
        raise ConfigError(
            "providers.telnyx.public_key: empty; set it (or SENDQ_PROVIDERS__TELNYX__PUBLIC_KEY) "
            "to the base64 public key Telnyx signs webhooks with"
        )
    return TelnyxProvider(
        api_key=api_key,
        public_key=config.public_key,
        tolerance_s=config.tolerance_s,
        base_url=config.base_url,
        timeout_s=config.timeout_s,
        max_connections=config.max_connections,
    )


SPEC = ProviderSpec(NAME, TelnyxSettings, build, secrets=(API_KEY,))
