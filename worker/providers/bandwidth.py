"""Bandwidth: Messaging API v2.

Send: ``POST /api/v2/users/{accountId}/messages`` on messaging.bandwidth.com,
JSON ``{"applicationId", "to": [number], "from", "text", "tag", "expiration"}``,
HTTP Basic auth (API username, password) or an OAuth2 bearer token (below);
success is ``202 Accepted`` with the created message, whose ``id`` is
Bandwidth's message id. Failures before sending are HTTP errors with a
``{"type", "description", "fieldErrors"}`` body
(bandwidth-sdk ``MessagesApi.create_message``, ``CreateMessageRequestError``;
dev.bandwidth.com/docs/messaging/errors).

Bandwidth has no per-message callback URL: status callbacks go to the
``OutboundCallbackUrl`` of the messaging application (dev.bandwidth.com
/docs/account/applications). So sendq's message id travels in ``tag`` (at most
1024 characters; sendq's ids are far shorter), which Bandwidth echoes as
``message.tag`` in every callback for the message (/docs/messaging/createMessage).

Receipts: a JSON *array* of events ``[{"type", "time", "description", "to",
"errorCode", "carrierName", "message": {"id", "tag", ...}}]`` with ``type``
one of message-sending, message-sent, message-delivered, message-failed,
message-read (bandwidth-sdk ``StatusCallback``; /docs/messaging/webhooks).
The 4-digit ``errorCode`` of a message-failed event is what classifies the
failure (/docs/messaging/errors: 4xxx client or carrier rejection, 5xxx
service failure, 9xxx ambiguous).

OAuth2 (client credentials): Bandwidth ends HTTP Basic for its APIs on 2
December 2026. With a client id configured, sends carry ``Authorization:
Bearer <token>`` instead; the token comes from ``POST {token_url}`` with the
client id and secret as HTTP Basic (UTF-8), form body
``grant_type=client_credentials``, answer ``{"access_token", "expires_in",
...}``, and is reused until 60 s before it expires, exactly as bandwidth-sdk's
``Configuration.get_access_token`` does. ``TokenCache`` below holds it.

Webhook authentication (Bandwidth's callback Basic credentials, outbound and
inbound), the callback's event array and inbound texts (``message-received``)
are read in worker/providers/bandwidth_webhooks.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import structlog
from pydantic import field_validator

from worker.errors import InvalidWebhook, TokenRefused
from worker.models import Category, Status
from worker.providers import transport
from worker.providers.bandwidth_webhooks import (
    INBOUND_EVENT,
    any_credentials_match,
    callback_events,
    has_inbound,
    header,
    parse_received,
)
from worker.providers.bandwidth_webhooks import (  # the tests'
    basic_credentials_match as basic_credentials_match,
)
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
    http_url,
    json_object,
    retry_after_s,
)

NAME = "bandwidth"
DEFAULT_BASE_URL = "https://messaging.bandwidth.com"
DEFAULT_TOKEN_URL = "https://api.bandwidth.com/api/v1/oauth2/token"
# bandwidth-sdk reuses a token while it has more than this left to live.
DEFAULT_TOKEN_MARGIN_S = 60
TOKEN_REQUEST_BODY = b"grant_type=client_credentials"
FORM = "application/x-www-form-urlencoded"

# Every Bandwidth code sendq treats specially (dev.bandwidth.com/docs/messaging/errors).
# Other 4xxx codes are permanent ("repeating the request will produce the same
# result"); undocumented 5xxx are transient and 9xxx ambiguous, as the code schema says.
ERROR_CATEGORIES: dict[str, Category] = {
    # Filtering: the carrier (or Bandwidth on its behalf) refuses our traffic.
    "4470": Category.CARRIER_BLOCK,  # rejected-spam-detected (by Bandwidth)
    "4770": Category.CARRIER_BLOCK,  # destination-spam-detected (by the carrier)
    "4481": Category.CARRIER_BLOCK,  # rejected-from-number-in-blacklist
    "4771": Category.CARRIER_BLOCK,  # rejected-shortened-url: content filtering
    "4772": Category.CARRIER_BLOCK,  # rejected-tn-blocked on the downstream platform
    "4773": Category.CARRIER_BLOCK,  # inactive-campaign: 10DLC campaign not active there
    # The recipient's number cannot take texts.
    "4720": Category.BAD_NUMBER,  # invalid-destination-address (not in plan, landline)
    "4700": Category.BAD_NUMBER,  # invalid-service-type: handset/carrier has no SMS
    "4721": Category.BAD_NUMBER,  # destination-tn-deactivated
    "4303": Category.BAD_NUMBER,  # malformed-invalid-to-number
    "4404": Category.BAD_NUMBER,  # rejected-forbidden-to-number
    "4406": Category.BAD_NUMBER,  # rejected-unallocated-to-number
    "4482": Category.BAD_NUMBER,  # rejected-to-number-in-blacklist
    "4775": Category.OPTED_OUT,  # destination-rejected-due-to-user-opt-out
    # Volume limits: back off and retry later.
    "4780": Category.THROTTLED,  # volume-violation-tmo (10DLC brand daily limit)
    "4781": Category.THROTTLED,  # volume-violation-att (10DLC campaign rate)
    "4785": Category.THROTTLED,  # volumetric-violation ("retry after some time")
    # Carrier gave no clear reason, or the handset is momentarily unreachable.
    "4750": Category.AMBIGUOUS,  # destination-rejected-message, no reason given
    "4701": Category.AMBIGUOUS,  # destination-service-unavailable
    "4702": Category.AMBIGUOUS,  # destination-subscriber-unavailable (handset off)
    "9902": Category.AMBIGUOUS,  # delivery-receipt-expired: may well have arrived
    "9999": Category.AMBIGUOUS,  # unknown-error from downstream
    # Bandwidth or carrier service failures: a retry may succeed.
    "5100": Category.TRANSIENT,  # temporary-app-error
    "5101": Category.TRANSIENT,  # temporary-app-shutdown
    "5106": Category.TRANSIENT,  # impossible-to-route after retries
    "5111": Category.TRANSIENT,  # temporary-app-connection-closed
    "5201": Category.TRANSIENT,  # temporary-rout-error-retries-exceeded
    "5211": Category.TRANSIENT,  # temporary-app-error-app-busy
    "5220": Category.TRANSIENT,  # temporary-store-error
    "5231": Category.TRANSIENT,  # discarded-concatenation-timeout
    "5500": Category.TRANSIENT,  # message-send-failed (general)
    "5501": Category.TRANSIENT,  # message-send-failed (no destination available)
    "5600": Category.TRANSIENT,  # destination-carrier-queue-full
    "5610": Category.TRANSIENT,  # submit_sm-or-submit_multi-failed
    "5620": Category.TRANSIENT,  # destination-app-error
    "5630": Category.TRANSIENT,  # message-not-acknowledged (carrier NACK)
    "5650": Category.TRANSIENT,  # destination-failed
    "5999": Category.TRANSIENT,  # unknown-error from Bandwidth
}

# Callback event type -> sendq status. Others (message-sending, message-read)
# are progress and pass through as the raw event type.
RECEIPT_STATUSES: dict[str, Status] = {
    "message-delivered": Status.DELIVERED,
    "message-failed": Status.UNDELIVERED,
    "message-sent": Status.SENT,
}


def classify(error_code: str | None, http_status: int) -> Category:
    if http_status == 429:
        return Category.THROTTLED
    if error_code and error_code in ERROR_CATEGORIES:
        return ERROR_CATEGORIES[error_code]
    if error_code and len(error_code) == 4 and error_code.isascii() and error_code.isdigit():
        # Bandwidth's schema: the first digit says client (4), server (5) or ambiguous (9).
        if error_code[0] == "5":
            return Category.TRANSIENT
        if error_code[0] == "9":
            return Category.AMBIGUOUS
    if http_status >= 500 or http_status in (401, 403):
        return Category.TRANSIENT
    if 200 <= http_status < 300 and not error_code:
        return Category.OK
    return Category.PERMANENT


def expiration(now: datetime, validity_s: int | None) -> str | None:
    """RFC 3339 ``expiration`` for a validity window; Bandwidth requires it in the future."""
    if validity_s is None:
        return None
    expires = now.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=max(1, validity_s))
    # isoformat() of an aware UTC time, exactly as the SDK serialises a datetime.
    return expires.isoformat()


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    expires_at_s: float


class TokenCache:
    """One OAuth2 client-credentials access token: fetched on first use, shared by
    every send, fetched again ``margin_s`` before it expires or after ``drop``."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        margin_s: float = DEFAULT_TOKEN_MARGIN_S,
        now_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self._client = client
        # The SDK's header: base64 of "id:secret" in UTF-8. Never logged.
        self._credentials = transport.basic_auth_header(client_id, client_secret)
        self._margin_s = margin_s
        self._now_s = now_s
        self._lock = asyncio.Lock()
        self._token: _Token | None = None

    async def authorization(self) -> str:
        """``Bearer <token>`` for the next request; at most one fetch at a time."""
        token = self._fresh()
        if token is None:
            async with self._lock:
                token = self._fresh() or await self._fetch()
        return f"Bearer {token}"

    def drop(self, authorization: str) -> None:
        """Forget the token behind ``authorization`` (refused), unless already replaced."""
        if self._token is not None and authorization == f"Bearer {self._token.value}":
            self._token = None

    def _fresh(self) -> str | None:
        token = self._token
        if token is not None and token.expires_at_s > self._now_s() + self._margin_s:
            return token.value
        return None

    async def _fetch(self) -> str:
        # Like the SDK, the lifetime counts from before the request.
        started_s = self._now_s()
        response = await transport.request(
            self._client,
            NAME,
            "POST",
            self.token_url,
            headers={"Authorization": self._credentials, "Content-Type": FORM},
            content=TOKEN_REQUEST_BODY,
        )
        value, expires_in_s = _issued(response, self.token_url)
        self._token = _Token(value, started_s + expires_in_s)
        return value


def _issued(response: httpx.Response, token_url: str) -> tuple[str, float]:
    """(access_token, expires_in) of a token answer; anything else is TokenRefused."""
    if not 200 <= response.status_code < 300:
        raise TokenRefused(NAME, token_url, response.status_code, response.reason_phrase)
    payload = json_object(response)
    value = payload.get("access_token")
    expires_in = payload.get("expires_in")
    if not isinstance(value, str) or not value:
        raise TokenRefused(NAME, token_url, response.status_code, "answer has no access_token")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        raise TokenRefused(NAME, token_url, response.status_code, "answer has no expires_in")
    return value, float(expires_in)


def token_refused_result(exc: TokenRefused) -> SendResult:
    """A refused token counts against Bandwidth like a refused send: an auth failure."""
    category = Category.THROTTLED if exc.status == 429 else Category.TRANSIENT
    return SendResult(category, error_code=f"oauth_http_{exc.status}", error=exc.detail[:300])


class BandwidthProvider(Provider):
    name = NAME
    batches_events = True

    def __init__(
        self,
        *,
        account_id: str,
        application_id: str,
        username: str = "",
        password: str = "",
        client_id: str = "",
        client_secret: str = "",
        token_url: str = DEFAULT_TOKEN_URL,
        callback_username: str | None = None,
        callback_password: str | None = None,
        inbound_callback_username: str | None = None,
        inbound_callback_password: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = transport.DEFAULT_TIMEOUT_S,
        max_connections: int = transport.DEFAULT_MAX_CONNECTIONS,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] | None = None,
        now_s: Callable[[], float] = time.monotonic,
    ) -> None:
        """HTTP Basic (``username``, ``password``), or OAuth2 when ``client_id`` is set.

        An injected ``client`` carries no credentials of its own for OAuth2.
        """
        if client_id and not client_secret:
            raise ValueError("Bandwidth OAuth2 needs the client secret with the client id")
        self.account_id = account_id
        self.application_id = application_id
        # Without both callback credentials every webhook is refused (fail closed).
        # The application's InboundCallbackCreds, when they differ, are accepted too.
        self._callback_credentials = [(callback_username or "", callback_password or "")]
        if inbound_callback_password:
            inbound_user = inbound_callback_username or callback_username or ""
            self._callback_credentials.append((inbound_user, inbound_callback_password))
        self._clock = clock or (lambda: datetime.now(UTC))
        self._client = client or transport.make_client(
            base_url=base_url,
            timeout_s=timeout_s,
            max_connections=max_connections,
            auth=None if client_id else (username, password),
        )
        self._tokens: TokenCache | None = None
        if client_id:
            self._tokens = TokenCache(
                self._client,
                token_url=token_url,
                client_id=client_id,
                client_secret=client_secret,
                now_s=now_s,
            )
        self._path = f"/api/v2/users/{quote(account_id, safe='')}/messages"

    def payload(self, text: OutboundText) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "applicationId": self.application_id,
            "to": [text.to],
            "from": text.sender,
            "text": text.body,
            "tag": text.message_id,
        }
        expires = expiration(self._clock(), text.validity_s)
        if expires is not None:
            fields["expiration"] = expires
        return fields

    async def send(self, text: OutboundText) -> SendResult:
        headers = {"Accept": "application/json"}
        if self._tokens is not None:
            try:
                headers["Authorization"] = await self._tokens.authorization()
            except TokenRefused as exc:
                return token_refused_result(exc)
        response = await transport.request(
            self._client, NAME, "POST", self._path, json=self.payload(text), headers=headers
        )
        if response.status_code == 401 and self._tokens is not None:
            # Revoked or expired early: the next send fetches a fresh one.
            self._tokens.drop(headers["Authorization"])
        return self.result(response)

    def result(self, response: httpx.Response) -> SendResult:
        payload = json_object(response)
        if 200 <= response.status_code < 300:
            message_id = payload.get("id")
            return SendResult(
                Category.OK, provider_message_id=message_id if isinstance(message_id, str) else None
            )
        # Send-time errors carry a ``type`` string, never a numeric code.
        kind = payload.get("type")
        code = kind if isinstance(kind, str) and kind else None
        return SendResult(
            classify(code, response.status_code),
            error_code=code or f"http_{response.status_code}",
            error=_describe(payload, response.reason_phrase)[:300],
            retry_after_s=retry_after_s(response),
        )

    def verify_signature(self, request: WebhookRequest) -> bool:
        return any_credentials_match(
            header(request.headers, "authorization"), self._callback_credentials
        )

    def is_inbound(self, request: WebhookRequest) -> bool:
        try:
            return has_inbound(callback_events(request))
        except InvalidWebhook:
            return False

    def parse_inbound(self, request: WebhookRequest) -> list[InboundEvent]:
        """Each inbound text of the batch, by its index; status events are left out."""
        return parse_received(callback_events(request))

    def parse_receipt(self, request: WebhookRequest) -> Receipt:
        """The first status event of the callback; see parse_receipts for all of them."""
        return self.parse_receipts(request)[0]

    def parse_receipts(self, request: WebhookRequest) -> list[Receipt]:
        """Every outbound status event in the callback, in order; inbound texts are skipped.

        Strict: one unreadable event makes the whole callback invalid. The
        webhook app uses parse_events, which keeps the readable ones.
        """
        receipts: list[Receipt] = []
        for _, parsed in self.parse_events(request):
            if isinstance(parsed, InvalidWebhook):
                raise parsed
            receipts.append(parsed)
        return receipts

    def parse_events(self, request: WebhookRequest) -> list[tuple[int, Receipt | InvalidWebhook]]:
        """Each outbound status event with its index in the posted array: its
        receipt, or why it cannot be read. Inbound texts are skipped.

        Bandwidth batches events of many texts in one callback and retries the
        whole callback unless it is answered 2xx, so one malformed event must
        not void (or cause a resend of) the others. Raises InvalidWebhook only
        when the callback as a whole cannot be read.
        """
        parsed: list[tuple[int, Receipt | InvalidWebhook]] = []
        for index, event in enumerate(callback_events(request)):
            if isinstance(event, dict) and event.get("type") == INBOUND_EVENT:
                continue
            try:
                if not isinstance(event, dict):
                    raise InvalidWebhook("the event is not an object")
                parsed.append((index, _receipt(event)))
            except InvalidWebhook as exc:
                parsed.append((index, exc))
        if not parsed:
            raise InvalidWebhook("the callback holds no outbound message status event")
        return parsed

    async def aclose(self) -> None:
        await self._client.aclose()


def _receipt(event: dict[str, Any]) -> Receipt:
    kind = event.get("type")
    message = event.get("message")
    if not isinstance(kind, str) or not kind:
        raise InvalidWebhook("an event has no type")
    if not isinstance(message, dict):
        raise InvalidWebhook("an event has no message")
    message_id = message.get("id")
    if not isinstance(message_id, str) or not message_id:
        raise InvalidWebhook("message.id is required")
    tag = message.get("tag")
    carrier = event.get("carrierName")
    common: dict[str, Any] = {
        "provider_message_id": message_id,
        "message_id": tag if isinstance(tag, str) and tag else None,
        "carrier": carrier if isinstance(carrier, str) and carrier else None,
    }
    status = RECEIPT_STATUSES.get(kind)
    if status is None:
        # message-sending / message-read: progress we need not act on.
        return Receipt(status=kind, **common)
    if status is not Status.UNDELIVERED:
        return Receipt(status=status.value, **common)
    code = _error_code(event.get("errorCode"))
    return Receipt(status=status.value, error_code=code, category=classify(code, 400), **common)


def _error_code(raw: object) -> str | None:
    """errorCode is an integer in Bandwidth's schema; accept its string form too."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, str) and raw.strip():
        return raw.strip()
    return None


def _describe(payload: dict[str, object], fallback: str) -> str:
    description = payload.get("description")
    text = description if isinstance(description, str) and description else fallback
    field_errors = payload.get("fieldErrors")
    if isinstance(field_errors, list):
        details = [
            f"{item.get('fieldName')}: {item.get('description')}"
            for item in field_errors
            if isinstance(item, dict)
        ]
        if details:
            text = f"{text} ({'; '.join(details)})"
    return text


# -- configuration ---------------------------------------------------------------------

PASSWORD = "bandwidth_password"  # SENDQ_BANDWIDTH_PASSWORD
CALLBACK_PASSWORD = "bandwidth_callback_password"  # SENDQ_BANDWIDTH_CALLBACK_PASSWORD
# The application's InboundCallbackCreds password, when it differs from the outbound one.
INBOUND_CALLBACK_PASSWORD = "bandwidth_inbound_callback_password"
CLIENT_SECRET = "bandwidth_client_secret"  # SENDQ_BANDWIDTH_CLIENT_SECRET
# Bandwidth decommissions API users (HTTP Basic) on this day; OAuth2 only after it.
BANDWIDTH_BASIC_ENDS = "2026-12-02"
log = structlog.get_logger("sendq.providers")


class BandwidthSettings(ProviderSettings):
    """``[providers.bandwidth]``."""

    base_url: str = DEFAULT_BASE_URL
    account_id: str = "0000000"
    application_id: str = "00000000-0000-0000-0000-000000000000"
    username: str = "sendq"
    callback_username: str = "sendq"
    # InboundCallbackCreds' user; its password is SENDQ_BANDWIDTH_INBOUND_CALLBACK_PASSWORD.
    # Unset, inbound texts carry the outbound credentials (callback_username).
    inbound_callback_username: str = ""
    # OAuth2 client credentials: set client_id (its secret comes from
    # SENDQ_BANDWIDTH_CLIENT_SECRET) and sends use bearer tokens from token_url
    # instead of HTTP Basic with username and password.
    client_id: str = ""
    token_url: str = DEFAULT_TOKEN_URL

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, v: str) -> str:
        return http_url(v)


def build(config: BandwidthSettings, secrets: Secrets) -> BandwidthProvider:
    # OAuth2 client credentials when a client id is set, else HTTP Basic.
    password = client_secret = ""
    if config.client_id:
        client_secret = secrets.require(CLIENT_SECRET)
    else:
        password = secrets.require(PASSWORD)
        log.warning(
            "bandwidth uses HTTP Basic auth, which Bandwidth stops accepting on "
            f"{BANDWIDTH_BASIC_ENDS}; set providers.bandwidth.client_id and "
            "SENDQ_BANDWIDTH_CLIENT_SECRET to use OAuth2",
            provider=NAME,
        )
    return BandwidthProvider(
        account_id=config.account_id,
        application_id=config.application_id,
        username=config.username,
        password=password,
        client_id=config.client_id,
        client_secret=client_secret,
        token_url=config.token_url,
        callback_username=config.callback_username,
        callback_password=secrets.require(CALLBACK_PASSWORD),
        inbound_callback_username=config.inbound_callback_username,
        inbound_callback_password=secrets.get(INBOUND_CALLBACK_PASSWORD),
        base_url=config.base_url,
        timeout_s=config.timeout_s,
        max_connections=config.max_connections,
    )


SPEC = ProviderSpec(
    NAME,
    BandwidthSettings,
    build,
    secrets=(PASSWORD, CALLBACK_PASSWORD, CLIENT_SECRET, INBOUND_CALLBACK_PASSWORD),
)
