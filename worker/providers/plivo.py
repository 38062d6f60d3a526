"""Plivo: the Message API.

Send: ``POST /v1/Account/{auth_id}/Message/`` on api.plivo.com, JSON
``{"src", "dst", "text", "type": "sms", "url", "method": "POST", "log",
"trackable", "message_expiry"}``, HTTP Basic auth (auth ID, auth token): the
exact body plivo-python's ``client.messages.create`` sends (its defaults for
``type``, ``method``, ``log`` and ``trackable`` included). Success is
``202 {"api_id", "message": "message(s) queued", "message_uuid": [uuid]}``;
failures are ``{"api_id", "error": "..."}`` with an HTTP status and no
numeric code (plivo.com/docs/messaging/api/response). ``url`` is a
per-message status callback, so sendq's message id rides in its ``mid``
query parameter. ``message_expiry`` takes 5 to 10,799 seconds; Plivo's own
default is 10,800 (support.plivo.com "Message Expiry").

Receipts: Plivo calls ``url`` on every status change, form-encoded for
``method=POST``, with ``MessageUUID``, ``Status`` (queued, sent, failed,
delivered, undelivered; "rejected" in older docs) and, for failed and
undelivered texts, a Plivo ``ErrorCode`` (plivo.com/docs/messaging/api/message
/message-status-callbacks; the codes: /docs/messaging/troubleshooting/error-codes).

Webhook authentication: signature V3. ``X-Plivo-Signature-V3`` (signed with the
auth token of the account or subaccount that sent) and
``X-Plivo-Signature-Ma-V3`` (signed with the main account's token) each hold
one or more comma-separated base64(HMAC-SHA256(token, payload)), where payload
is the callback URL without its query, then ``?`` + the query's parameters
sorted as ``k=v&k=v``, then (when there is a body) ``.`` after a non-empty
query and the form parameters sorted by name as ``namevalue`` with no
separator, then ``.`` + ``X-Plivo-Signature-V3-Nonce``. This is plivo-python's
``plivo.utils.signature_v3.validate_v3_signature`` for POST, which the tests
check ours against. V3 carries no timestamp, so a captured callback can be
replayed; refusing replays needs a store of seen nonces, which is the
receiver's business, not this module's. Incoming texts are signed the same
way; worker/providers/plivo_webhooks.py reads them. Plivo's messaging pages still
describe the older V2 scheme (URL + nonce, body unsigned); it is deliberately
not accepted, because it would let anyone holding one signed callback rewrite
its body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qs, parse_qsl, urlparse, urlsplit, urlunparse

import httpx
from pydantic import Field

from worker.errors import InvalidWebhook
from worker.models import Category, Status
from worker.providers import plivo_webhooks, transport
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

NAME = "plivo"
DEFAULT_BASE_URL = "https://api.plivo.com"
# Both carry a V3 signature; the Ma- one is keyed with the main account's token.
SIGNATURE_HEADERS = ("x-plivo-signature-v3", "x-plivo-signature-ma-v3")
NONCE_HEADER = "x-plivo-signature-v3-nonce"
FORM = "application/x-www-form-urlencoded"
# Plivo accepts message_expiry from 5 s to 10,799 s; it drops what waits longer.
MIN_EXPIRY_S = 5
MAX_EXPIRY_S = 10_799

# Every Plivo SMS error code (docs/messaging/troubleshooting/error-codes, and the
# codes its support pages name); anything else in 4xx is permanent.
ERROR_CATEGORIES: dict[str, Category] = {
    # Spam filtering by the destination carrier: pause that carrier (DESIGN.md).
    "30": Category.CARRIER_BLOCK,  # spam detected by carrier-level filters
    # The recipient's number cannot take texts.
    "50": Category.BAD_NUMBER,  # invalid destination: malformed, not SMS-enabled or a landline
    "70": Category.BAD_NUMBER,  # destination permanently unavailable: number not active
    # The recipient replied STOP; only they can undo it. Plivo's send API takes such a
    # text (202) and fails it in the receipt with 200 (support.plivo.com, "Can I reply
    # to customers who have opted out?"): its only opt-out answer.
    "200": Category.OPTED_OUT,  # source number blocked by STOP from destination number
    # Plivo's or a network's own failure: retry, or fail over to another provider.
    "20": Category.TRANSIENT,  # network error at the carrier: "a temporary error, retry later"
    "90": Category.TRANSIENT,  # no route: Plivo and its fallbacks cannot route; another may
    "300": Category.TRANSIENT,  # failed to dispatch message: Plivo could not hand it on
    "420": Category.TRANSIENT,  # expired in Plivo's queue (backlog or outage); sendq's own
    # deadline check decides on the retry whether the text is still worth sending
    "900": Category.TRANSIENT,  # insufficient credit: the account's fault, not the text's
    "910": Category.TRANSIENT,  # account disabled: the account's fault, not the text's
    # No clear reason: counts toward the carrier breaker at a lower weight.
    "80": Category.AMBIGUOUS,  # destination temporarily unavailable (handset off, out of
    # coverage), the same signal as Twilio 30003, which carriers also give for filtering
    "100": Category.AMBIGUOUS,  # prohibited by carrier: documented as "network does not
    # support the message", but it is a carrier refusal all the same
    "1000": Category.AMBIGUOUS,  # unknown error, "unknown to us and to our carriers"
    # Something about our text or account that no retry can fix.
    "10": Category.PERMANENT,  # invalid message: empty, or content a carrier rejects as such
    "40": Category.PERMANENT,  # invalid source number: our sending number, not the recipient's
    "60": Category.PERMANENT,  # loop detected between the two numbers
    "110": Category.PERMANENT,  # message too long (over 1,600 GSM / 737 UCS-2 characters)
    "201": Category.PERMANENT,  # US toll-free sender to a Canadian number: never allowed
    "450": Category.PERMANENT,  # destination country barred by the account's geo permissions
}

# Plivo's send API answers with text, not codes. The failures that must not be
# read as "permanent" (which would fail every text of a campaign) are mapped to
# the code the same failure carries in receipts (support.plivo.com, "What happens
# to my outbound messages if I don't have sufficient balance").
SEND_ERROR_PHRASES: dict[str, str] = {
    "insufficient credit": "900",
}

# Plivo Status -> sendq status, for receipts; others (queued) are progress.
RECEIPT_STATUSES: dict[str, Status] = {
    "delivered": Status.DELIVERED,
    "undelivered": Status.UNDELIVERED,
    "failed": Status.UNDELIVERED,
    "rejected": Status.UNDELIVERED,
    "sent": Status.SENT,
}


def classify(error_code: str | None, http_status: int) -> Category:
    return classify_by_table(ERROR_CATEGORIES, error_code, http_status)


def message_expiry(validity_s: int | None) -> int | None:
    """``message_expiry`` for a text that may wait ``validity_s``, within Plivo's range."""
    if validity_s is None:
        return None
    return max(MIN_EXPIRY_S, min(MAX_EXPIRY_S, validity_s))


def signed_payload(url: str, params: Iterable[tuple[str, str]], nonce: str) -> str:
    """The string Plivo's V3 signature covers, for a POST of ``params`` to ``url``."""
    # urlparse, not urlsplit: the SDK drops ;params from the path, and so must we.
    parts = urlparse(url)
    base = urlunparse((parts.scheme, parts.netloc, parts.path, "", "", ""))
    query = _sorted_pairs(parse_qs(parts.query, keep_blank_values=True).items(), "{}={}", "&")
    grouped = _grouped(params)
    if grouped:  # any field at all, even one that joins to "": the SDK counts, not joins
        base += "?" + query + ("." if query else "") + _sorted_pairs(grouped.items(), "{}{}", "")
    elif query:
        base += "?" + query
    return f"{base}.{nonce}"


def signature(url: str, params: Iterable[tuple[str, str]], nonce: str, auth_token: str) -> str:
    """One X-Plivo-Signature-V3 value (plivo-python's ``get_signature_v3``)."""
    payload = signed_payload(url, params, nonce).encode("utf-8")
    digest = hmac.new(auth_token.encode("utf-8"), payload, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _grouped(params: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in params:
        grouped.setdefault(name, []).append(value)
    return grouped


def _sorted_pairs(items: Iterable[tuple[str, list[str]]], pattern: str, sep: str) -> str:
    # Names sorted, and a repeated name's values sorted too, as the SDK does.
    return sep.join(
        pattern.format(name, value) for name, values in sorted(items) for value in sorted(values)
    )


def _candidates(headers: Mapping[str, str]) -> list[str]:
    """Every signature offered: either header, each possibly a comma-separated list."""
    found = []
    for header in SIGNATURE_HEADERS:
        for value in (headers.get(header) or "").split(","):
            value = value.strip()
            if value and value.isascii():
                found.append(value)
    return found


def _form_pairs(body: bytes) -> list[tuple[str, str]] | None:
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return None


def _error_code(raw: str | None) -> str | None:
    """A receipt's ErrorCode without padding; "000" (Plivo's "no error") is none."""
    code = (raw or "").strip()
    if code.isascii() and code.isdigit():
        return str(int(code)) if int(code) else None
    return code or None


class PlivoProvider(Provider):
    name = NAME

    def __init__(
        self,
        *,
        auth_id: str,
        auth_token: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = transport.DEFAULT_TIMEOUT_S,
        max_connections: int = transport.DEFAULT_MAX_CONNECTIONS,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        # The auth ID is a path segment: letters and digits only (MA... or SA...).
        if not (auth_id.isascii() and auth_id.isalnum()):
            raise ValueError("Plivo auth_id must be letters and digits, e.g. MA0123456789ABCDEF01")
        self.auth_id = auth_id
        self._auth_token = auth_token
        self._client = client or transport.make_client(
            base_url=base_url,
            timeout_s=timeout_s,
            max_connections=max_connections,
            auth=(auth_id, auth_token),
        )
        self._path = f"/v1/Account/{auth_id}/Message/"

    def payload(self, text: OutboundText) -> dict[str, object]:
        fields: dict[str, object] = {
            "src": text.sender,
            "dst": text.to,
            "text": text.body,
            "type": "sms",
            "url": text.status_callback_url,
            "method": "POST",
            # The SDK's defaults, sent so the request is the one it would send.
            "log": "true",
            "trackable": False,
        }
        expiry = message_expiry(text.validity_s)
        if expiry is not None:
            fields["message_expiry"] = expiry
        return fields

    async def send(self, text: OutboundText) -> SendResult:
        response = await transport.request(
            self._client,
            NAME,
            "POST",
            self._path,
            json=self.payload(text),
            headers={"Accept": "application/json"},
        )
        return self.result(response)

    def result(self, response: httpx.Response) -> SendResult:
        payload = json_object(response)
        if 200 <= response.status_code < 300:
            return SendResult(Category.OK, provider_message_id=_first_uuid(payload))
        error = _error_text(payload) or response.reason_phrase
        code = next((c for p, c in SEND_ERROR_PHRASES.items() if p in error.lower()), None)
        return SendResult(
            classify(code, response.status_code),
            error_code=code or f"http_{response.status_code}",
            error=error[:300],
            retry_after_s=retry_after_s(response),
        )

    def verify_signature(self, request: WebhookRequest) -> bool:
        nonce = request.headers.get(NONCE_HEADER)
        offered = _candidates(request.headers)
        if not nonce or not nonce.isascii() or not offered:
            return False
        params = _form_pairs(request.body)
        if params is None:
            return False
        try:
            expected = signature(request.url, params, nonce, self._auth_token)
        except ValueError:  # a URL urllib cannot parse (a bad IPv6 host) was never signed
            return False
        return any(hmac.compare_digest(expected, given) for given in offered)

    def is_inbound(self, request: WebhookRequest) -> bool:
        try:
            return plivo_webhooks.is_incoming(plivo_webhooks.params(request))
        except InvalidWebhook:
            return False

    def parse_inbound(self, request: WebhookRequest) -> list[InboundEvent]:
        return plivo_webhooks.parse_incoming(plivo_webhooks.params(request))

    def parse_receipt(self, request: WebhookRequest) -> Receipt:
        form = _receipt_form(request)
        uuid = form.get("MessageUUID")
        raw_status = form.get("Status")
        if not uuid or not raw_status:
            raise InvalidWebhook("MessageUUID and Status are required")
        mid = _mid(request.url)
        status = RECEIPT_STATUSES.get(raw_status)
        if status is None:
            # queued (or anything newer): progress we already know about.
            return Receipt(provider_message_id=uuid, status=raw_status, message_id=mid)
        if status is not Status.UNDELIVERED:
            # Plivo reports "000" as the code of a delivered text: no error.
            return Receipt(provider_message_id=uuid, status=status.value, message_id=mid)
        code = _error_code(form.get("ErrorCode"))
        return Receipt(
            provider_message_id=uuid,
            status=status.value,
            message_id=mid,
            error_code=code,
            category=classify(code, 400),
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def _receipt_form(request: WebhookRequest) -> dict[str, str]:
    if FORM not in request.content_type.lower():
        raise InvalidWebhook("Plivo status callbacks are form-encoded")
    pairs = _form_pairs(request.body)
    if pairs is None:
        raise InvalidWebhook("body is not UTF-8")
    return dict(pairs)


def _mid(url: str) -> str | None:
    """sendq's message id, from the ``mid`` query parameter of the callback URL."""
    try:
        query = urlsplit(url).query
    except ValueError as exc:
        raise InvalidWebhook("the callback URL cannot be parsed") from exc
    return dict(parse_qsl(query)).get("mid")


def _first_uuid(payload: Mapping[str, object]) -> str | None:
    """The message's UUID: one destination, so the first (only) of ``message_uuid``."""
    uuids = payload.get("message_uuid")
    if isinstance(uuids, list) and uuids and isinstance(uuids[0], str):
        return uuids[0]
    return uuids if isinstance(uuids, str) and uuids else None


def _error_text(payload: Mapping[str, object]) -> str:
    # "error" is usually a sentence, sometimes an object naming the bad fields.
    error = payload.get("error")
    if error is None or error == "":
        return ""
    return error if isinstance(error, str) else json.dumps(error, sort_keys=True)


# -- configuration ---------------------------------------------------------------------

AUTH_TOKEN = "plivo_auth_token"  # SENDQ_PLIVO_AUTH_TOKEN


class PlivoSettings(ProviderSettings):
    """``[providers.plivo]``."""

    base_url: str = DEFAULT_BASE_URL
    auth_id: str = Field("MA" + "0" * 18, pattern=r"^(MA|SA)[A-Z0-9]{18}$")


def build(config: PlivoSettings, secrets: Secrets) -> PlivoProvider:
    return PlivoProvider(
        auth_id=config.auth_id,
        auth_token=secrets.require(AUTH_TOKEN),
        base_url=config.base_url,
        timeout_s=config.timeout_s,
        max_connections=config.max_connections,
    )


SPEC = ProviderSpec(NAME, PlivoSettings, build, secrets=(AUTH_TOKEN,))
