"""Twilio: Programmable Messaging over its REST API.

Send: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded,
HTTP Basic auth (account SID, auth token). Receipts: form-encoded status
callbacks carrying ``MessageSid``, ``MessageStatus`` and ``ErrorCode``. Incoming
texts: the form Twilio posts to the number's messaging webhook. Both are signed
with ``X-Twilio-Signature``, by the auth token or a SharedKey: see
worker/providers/twilio_webhooks.py, which reads signatures and incoming texts.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit

import httpx

from worker.errors import InvalidWebhook
from worker.models import Category, Status
from worker.providers import transport, twilio_webhooks
from worker.providers.base import (
    ASK_AGAIN,
    CANNOT_TELL,
    NOT_FOUND,
    InboundEvent,
    OutboundText,
    Provider,
    ProviderSettings,
    ProviderSpec,
    Receipt,
    Secrets,
    SendResult,
    SentQuery,
    WebhookRequest,
    classify_by_table,
    json_object,
    retry_after_s,
)
from worker.providers.twilio_webhooks import WEBHOOK_KEYS, Verifier, parse_shared_keys
from worker.providers.twilio_webhooks import signature as signature  # the tests' and drills'

NAME = "twilio"
DEFAULT_BASE_URL = "https://api.twilio.com"
SIGNATURE_HEADER = twilio_webhooks.SIGNATURE_HEADER
# Twilio accepts ValidityPeriod from 1 s to 36000 s (10 h, its default and maximum).
MAX_VALIDITY_S = 36_000

# Every Twilio code sendq treats specially; anything else in 4xx is permanent
# (twilio.com/docs/api/errors/<code>).
ERROR_CATEGORIES: dict[str, Category] = {
    # Filtering: the carrier refuses our traffic, so its breaker should hear of it.
    "30007": Category.CARRIER_BLOCK,  # message filtered by the carrier
    "30034": Category.CARRIER_BLOCK,  # US A2P 10DLC: sent from an unregistered number
    # The recipient's number cannot take texts.
    "21211": Category.BAD_NUMBER,  # invalid 'To' number
    "21214": Category.BAD_NUMBER,  # 'To' number cannot be reached
    "21612": Category.BAD_NUMBER,  # 'To' number not currently reachable by SMS
    "21614": Category.BAD_NUMBER,  # 'To' number is not a mobile number
    "30005": Category.BAD_NUMBER,  # unknown destination handset
    "30006": Category.BAD_NUMBER,  # landline or unreachable carrier
    "21610": Category.OPTED_OUT,  # recipient replied STOP
    # Too fast or too much: wait, spending no retry budget.
    "20429": Category.THROTTLED,  # too many requests
    "21611": Category.THROTTLED,  # the From number's queue holds 10 hours of texts already
    "30022": Category.THROTTLED,  # US A2P 10DLC rate limit exceeded
    "30023": Category.THROTTLED,  # US A2P 10DLC daily message cap reached
    "30027": Category.THROTTLED,  # US A2P 10DLC T-Mobile daily limit reached
    "63017": Category.THROTTLED,  # the account's 2,000 MPS exceeded
    "63038": Category.THROTTLED,  # the account's daily message limit exceeded
    "30008": Category.AMBIGUOUS,  # unknown error
    "30003": Category.AMBIGUOUS,  # unreachable destination handset
    # Faults on Twilio's side or the account's, not the text's.
    "20003": Category.TRANSIENT,  # authentication failed: a provider fault, not the text's
    "21730": Category.TRANSIENT,  # Twilio under scheduled maintenance: try again later
    "30001": Category.TRANSIENT,  # queue overflow
    "30002": Category.TRANSIENT,  # account suspended
    "30017": Category.TRANSIENT,  # carrier network congestion
}

# Twilio MessageStatus -> sendq status, for receipts.
RECEIPT_STATUSES: dict[str, Status] = {
    "delivered": Status.DELIVERED,
    "undelivered": Status.UNDELIVERED,
    "failed": Status.UNDELIVERED,
    "sent": Status.SENT,
}


def classify(error_code: str | None, http_status: int) -> Category:
    return classify_by_table(ERROR_CATEGORIES, error_code, http_status)


class TwilioProvider(Provider):
    name = NAME

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = transport.DEFAULT_TIMEOUT_S,
        max_connections: int = transport.DEFAULT_MAX_CONNECTIONS,
        client: httpx.AsyncClient | None = None,
        webhook_keys: Mapping[str, str] | None = None,
    ) -> None:
        """``webhook_keys``: SharedKey id -> secret, for webhooks Twilio signs with one."""
        self.account_sid = account_sid
        self._verifier = Verifier(auth_token, webhook_keys)
        self._client = client or transport.make_client(
            base_url=base_url,
            timeout_s=timeout_s,
            max_connections=max_connections,
            auth=(account_sid, auth_token),
        )
        self._path = f"/2010-04-01/Accounts/{account_sid}/Messages.json"

    def form(self, text: OutboundText) -> dict[str, str]:
        fields = {
            "To": text.to,
            "From": text.sender,
            "Body": text.body,
            "StatusCallback": text.status_callback_url,
        }
        if text.validity_s is not None:
            fields["ValidityPeriod"] = str(max(1, min(MAX_VALIDITY_S, text.validity_s)))
        return fields

    async def send(self, text: OutboundText) -> SendResult:
        response = await transport.request(
            self._client,
            NAME,
            "POST",
            self._path,
            data=self.form(text),
            headers={"Accept": "application/json"},
        )
        return self.result(response)

    def result(self, response: httpx.Response) -> SendResult:
        payload = json_object(response)
        code = payload.get("code") or payload.get("error_code")
        code = str(code) if code is not None else None
        category = classify(code, response.status_code)
        if category is Category.OK:
            return SendResult(Category.OK, provider_message_id=str(payload.get("sid") or ""))
        return SendResult(
            category,
            error_code=code or f"http_{response.status_code}",
            error=str(payload.get("message") or response.reason_phrase)[:300],
            retry_after_s=retry_after_s(response),
        )

    def verify_signature(self, request: WebhookRequest) -> bool:
        return self._verifier.verify(request)

    def is_inbound(self, request: WebhookRequest) -> bool:
        try:
            return twilio_webhooks.is_incoming(twilio_webhooks.form(request))
        except InvalidWebhook:
            return False

    def parse_inbound(self, request: WebhookRequest) -> list[InboundEvent]:
        return twilio_webhooks.parse_incoming(twilio_webhooks.form(request))

    def parse_receipt(self, request: WebhookRequest) -> Receipt:
        if "application/x-www-form-urlencoded" not in request.content_type.lower():
            raise InvalidWebhook("Twilio status callbacks are form-encoded")
        try:
            form: Mapping[str, str] = dict(parse_qsl(request.body.decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise InvalidWebhook("body is not UTF-8") from exc
        sid = form.get("MessageSid") or form.get("SmsSid")
        raw_status = form.get("MessageStatus") or form.get("SmsStatus")
        if not sid or not raw_status:
            raise InvalidWebhook("MessageSid and MessageStatus are required")
        query = dict(parse_qsl(urlsplit(request.url).query))
        status = RECEIPT_STATUSES.get(raw_status)
        if status is None:
            # queued/sending/accepted: progress we already know about.
            return Receipt(provider_message_id=sid, status=raw_status, message_id=query.get("mid"))
        code = form.get("ErrorCode") or None
        category = Category.OK if status is not Status.UNDELIVERED else classify(code, 400)
        return Receipt(
            provider_message_id=sid,
            status=status.value,
            message_id=query.get("mid"),
            error_code=code,
            category=category,
        )

    async def find_sent(self, query: SentQuery) -> str | object:
        """List Messages to and from the numbers, newest first: the text this attempt sent.

        The same person may have had other texts from the same number: the body and
        a creation time no earlier than the attempt (less a generous allowance for
        clock skew between this worker and Twilio) pick this one. No ``DateSent``
        filter: a text Twilio has taken but not yet sent has no date sent. "Not
        found" is said only when the page reaches back past the window.
        """
        response = await transport.request(
            self._client,
            NAME,
            "GET",
            self._path,
            params={"To": query.to, "From": query.sender, "PageSize": str(LOOKUP_PAGE_SIZE)},
            headers={"Accept": "application/json"},
        )
        if response.status_code == 429 or response.status_code >= 500:
            return ASK_AGAIN
        page = json_object(response) if response.status_code == 200 else {}
        listed = page.get("messages")
        if not isinstance(listed, list):
            return CANNOT_TELL
        since_ms = query.after_ms - LOOKUP_CLOCK_SLACK_MS
        items = [(item, _created_ms(item)) for item in listed if isinstance(item, dict)]
        for item, at_ms in items:
            if item.get("body") == query.body and at_ms is not None and at_ms >= since_ms:
                return str(item.get("sid") or "") or CANNOT_TELL
        reaches_back = any(at_ms is not None and at_ms < since_ms for _, at_ms in items)
        return NOT_FOUND if not page.get("next_page_uri") or reaches_back else CANNOT_TELL

    async def aclose(self) -> None:
        await self._client.aclose()


# Clocks differ: a text Twilio created this long before the attempt's start (by
# this worker's clock) may still be it. Generous: a false "not found" doubles a text.
LOOKUP_CLOCK_SLACK_MS = 10 * 60 * 1000
LOOKUP_PAGE_SIZE = 50


def _created_ms(item: Mapping[str, object]) -> int | None:
    try:
        created = email.utils.parsedate_to_datetime(str(item.get("date_created") or ""))
    except (TypeError, ValueError):
        return None
    return int(created.timestamp() * 1000)


# -- configuration ---------------------------------------------------------------------

AUTH_TOKEN = "twilio_auth_token"  # SENDQ_TWILIO_AUTH_TOKEN
# SharedKey secrets, "key_id=secret,key_id=secret" (twilio_webhooks.parse_shared_keys).


class TwilioSettings(ProviderSettings):
    """``[providers.twilio]``."""

    base_url: str = DEFAULT_BASE_URL
    account_sid: str = "AC00000000000000000000000000000000"


def build(config: TwilioSettings, secrets: Secrets) -> TwilioProvider:
    return TwilioProvider(
        account_sid=config.account_sid,
        auth_token=secrets.require(AUTH_TOKEN),
        base_url=config.base_url,
        timeout_s=config.timeout_s,
        max_connections=config.max_connections,
        webhook_keys=parse_shared_keys(secrets.get(WEBHOOK_KEYS)),
    )


SPEC = ProviderSpec(NAME, TwilioSettings, build, secrets=(AUTH_TOKEN, WEBHOOK_KEYS))
